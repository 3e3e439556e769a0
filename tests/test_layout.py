"""The layout, read from the code's own imports (those inside functions too): packages
in layers that import one way, downwards, and no import cycle between modules.

LAYERS is the one place the order is written; the README's "Layout" section explains
it. A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A layer is a package, or a sub-package that stands apart from the rest
# of its package (experiments/protocols/ sits below sweep/, the analysis above it).
LAYERS = (
    "vae_sweep",  # plumbing: errors, the CLI parser, checks, files, devices
    "selection",  # datasets as uint8 arrays, subset criteria
    "fid",  # the FID engine, its actor and client, the Mahalanobis scores
    "vae",  # models, training, priors, the recon scores, python -m vae.train
    "experiments.protocols",  # the E1/E2 protocols, pure functions
    "sweep",  # the grid, the driver, the trials, the results, a sweep folder
    "experiments",  # the E1/E2 commands, the analysis, early stopping
    "benchmarks",  # measurements against peers
)


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The index of the longest layer name that is `module` or a parent of it."""
    matches = [i for i, name in enumerate(layers)
               if module == name or module.startswith(name + ".")]  # fmt: skip
    return max(matches, key=lambda i: len(layers[i])) if matches else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path, layers=LAYERS) -> dict[str, Path]:
    packages = {name.split(".")[0] for name in layers}
    return {module_name(path, root): path
            for package in sorted(packages) if (root / package).is_dir()
            for path in sorted((root / package).rglob("*.py"))}  # fmt: skip


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in it (an `import a.b` or a
    `from a.b import c` names a.b, or a.b.c where that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"
            # `from pkg import module` imports that module; `from m import name`, m
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if n in modules else node.module for n in names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # a name defined in a module
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph(root: Path, layers=LAYERS) -> dict[str, set[str]]:
    modules = project_modules(root, layers)
    return {name: imports(path, modules) - {name} for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer_of(b, layers) > layer_of(a, layers))  # fmt: skip


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    homeless = [m for m in import_graph(ROOT) if layer_of(m) is None]
    assert not homeless


def test_packages_import_only_their_own_layer_and_those_below():
    assert upward_imports(import_graph(ROOT)) == []


def test_no_import_cycle_between_modules():
    assert cycles(import_graph(ROOT)) == []


def test_the_plumbing_imports_nothing_of_the_project():
    graph = import_graph(ROOT)
    leaf = {b for a, targets in graph.items() if a.startswith("vae_sweep")
            for b in targets}  # fmt: skip
    assert all(b.startswith("vae_sweep") for b in leaf), leaf


@pytest.fixture
def planted(tmp_path) -> Path:
    """A small tree laid out like the project's, to plant faults in."""
    for name, text in {
        "low/__init__.py": "",
        "low/a.py": "import os\n",
        "low/b.py": "from low.a import thing\n",
        "high/__init__.py": "",
        "high/c.py": "def f():\n    from low import b\n",
    }.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checks_find_a_planted_upward_import_and_cycle(planted):
    layers = ("low", "high")
    graph = import_graph(planted, layers)
    assert graph["high.c"] == {"low.b"}  # inside a function, and `from pkg import m`
    assert upward_imports(graph, layers) == [] and cycles(graph) == []
    # an upward import inside a function, and a circle through it
    (planted / "low" / "a.py").write_text("def g():\n    import high.c\n")
    (planted / "high" / "c.py").write_text("from low.b import x\nimport low.a\n")
    graph = import_graph(planted, layers)
    assert upward_imports(graph, layers) == ["low.a -> high.c"]
    assert cycles(graph) == [["high.c", "low.a", "low.b"]]  # c -> b -> a -> c
