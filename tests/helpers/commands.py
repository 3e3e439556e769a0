"""Commands run in-process, as `python -m <module>` would run them but without a new
interpreter (importing torch and Ray again costs seconds per call): for the tests of
what a command prints and its exit code. A few tests keep a real process, where
the process itself is the point (tests/test_cli.py, the sweeps, Ctrl-C)."""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
import sys
from dataclasses import dataclass

from vae_sweep.errors import run_cli

# the module whose `main` a `python -m` name runs, where it is not the name itself
MAINS = {"fid": "fid.__main__"}


@dataclass
class Finished:
    """What a finished command left: as subprocess.CompletedProcess has it."""

    returncode: int
    stdout: str
    stderr: str


def run_command(module: str, *argv: str, check_rc: int | None = None) -> Finished:
    """`python -m module *argv` in this process: see run_main."""
    main = importlib.import_module(MAINS.get(module, module)).main
    return run_main(main, list(argv), check_rc=check_rc)


def run_main(main, argv: list[str], check_rc: int | None = None) -> Finished:
    """run_cli(main, argv) in this process, with its exit code and what it printed.
    An exception other than SystemExit propagates (a traceback, as a real run would
    print)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_cli(main, argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    finished = Finished(code, out.getvalue(), err.getvalue())
    if check_rc is not None:
        assert finished.returncode == check_rc, finished.stderr
    return finished


def ray_started() -> bool:
    """Whether this process has started or joined a Ray cluster."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def assert_one_line_error(result: Finished | subprocess.CompletedProcess, needle: str):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
