"""A grid file to a validated GridConfig: defaults <- the file <- each --set, then the
rules across sections that no one field's validator can see. Every refusal is one
line naming the file, the key path, the value and what is allowed (InputError).

    python -m sweep.run grids/smoke.yaml --set stage1.epochs=2 --dry-run
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from fid.sample_metrics import FID_INF_MIN_SAMPLES, FID_INF_SMALLEST
from sweep.budget import budget_unit
from sweep.config import GridConfig
from vae_sweep.errors import InputError


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {where}"
    if first["type"] == "missing":
        return f"{source}: {where} is required"
    if not first["loc"]:  # a whole-grid check: its message names key and value
        return f"{source}: {message}"
    if where == "grid" and first["type"] == "value_error":
        return f"{source}: grid.{message}"  # the axis validator names axis and value
    return f"{source}: {where} = {first.get('input')!r}: {message}"


def apply_override(raw: dict, assignment: str) -> None:
    """`key.path=value` (value parsed as YAML) into the raw grid dict."""
    path, sep, text = assignment.partition("=")
    if not sep or not path:
        raise InputError(f"--set {assignment!r}: expected key.path=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(f"--set {assignment!r}: the value is not valid YAML") from None
    keys = path.split(".")
    if keys[0] == "grid":
        # grid axes have dots in their own names: grid.stage1.lr=[...]
        keys = ["grid", ".".join(keys[1:])]
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise InputError(f"--set {path}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{path}: no such grid file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise InputError(
            f"{path}: a grid file is a mapping of keys, got {type(raw).__name__}"
        )
    return raw


def load_grid(path: str | os.PathLike, overrides: list[str] = ()) -> GridConfig:
    """Defaults <- the file <- each --set, validated; InputError on anything bad."""
    path = Path(path)
    raw = _read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        config = GridConfig.model_validate(raw)
    except ValidationError as error:
        raise InputError(_one_line(error, str(path))) from None
    check_consistency(config, str(path))
    return config


def check_consistency(config: GridConfig, source: str) -> None:
    """Rules across sections, which one field's validator cannot see."""
    _check_covariances(config, source)
    if "fid_inf" in config.fid.metrics and config.fid.samples < FID_INF_MIN_SAMPLES:
        raise InputError(
            f"{source}: fid.metrics has fid_inf, which needs fid.samples >= "
            f"{FID_INF_MIN_SAMPLES:,} (its 1/n law holds from about "
            f"{FID_INF_SMALLEST:,}), got fid.samples = {config.fid.samples}"
        )
    for stage in ("stage1", "stage2"):
        _check_budget(config, stage, source)
    unit = budget_unit(config)
    if config.scheduler.name != "none" and config.eval.every == 0:
        raise InputError(
            f"{source}: scheduler.name = {config.scheduler.name!r} acts on the "
            f"intermediate FID: set eval.every to a number of {unit}s > 0"
        )
    budget = "steps" if unit == "step" else "epochs"
    smallest = min(config.grid.get(f"stage1.{budget}",
                                   [getattr(config.stage1, budget)]))  # fmt: skip
    if config.eval.every > smallest:
        raise InputError(
            f"{source}: eval.every = {config.eval.every} is more than the "
            f"{smallest} stage-1 {budget}: no intermediate FID would ever run"
        )
    if unit == "step":
        _check_rounds(config, source)


def _check_budget(config: GridConfig, stage: str, source: str) -> None:
    """One budget per stage, epochs or steps, in one unit across the grid."""
    section = getattr(config, stage)
    given = {name for name in ("epochs", "steps")
             if (name in section.model_fields_set
                 and getattr(section, name) is not None)
             or f"{stage}.{name}" in config.grid}  # fmt: skip
    if given == {"epochs", "steps"}:
        raise InputError(
            f"{source}: {stage}.epochs = {section.epochs} and {stage}.steps = "
            f"{section.steps}: give one budget (--set {stage}.epochs=null trains "
            f"by steps)"
        )
    if stage == "stage1" and not given and section.epochs is None:
        raise InputError(f"{source}: stage1.epochs and stage1.steps are both null: "
                         f"give one budget")  # fmt: skip
    if f"{stage}.round_steps" in config.grid:
        raise InputError(
            f"{source}: grid.{stage}.round_steps: one round length per sweep (the "
            f"schedulers compare trials at the same steps)"
        )


def _check_rounds(config: GridConfig, source: str) -> None:
    """Under a step budget, what is counted in steps falls on rounds' ends."""
    rounds = config.stage1.round_steps
    for key, value in (("eval.every", config.eval.every),
                       ("checkpoint_every", config.checkpoint_every),
                       ("scheduler.grace_period",
                        config.scheduler.grace_period)):  # fmt: skip
        if value and value % rounds:
            raise InputError(
                f"{source}: {key} = {value} steps is no multiple of "
                f"stage1.round_steps = {rounds}: reports come at rounds' ends"
            )


def _check_covariances(config: GridConfig, source: str) -> None:
    """A Mahalanobis ridge goes with the ridge covariance, which needs one, in every
    combination of the two that the grid's axes make."""
    methods = config.grid.get("selection.mahalanobis_covariance",
                              [config.selection.mahalanobis_covariance])  # fmt: skip
    ridges = config.grid.get("selection.mahalanobis_ridge",
                             [config.selection.mahalanobis_ridge])  # fmt: skip
    for method in methods:
        for ridge in ridges:
            if (method == "ridge") != (ridge > 0):
                raise InputError(
                    f"{source}: selection.mahalanobis_ridge = {ridge} goes with "
                    f"selection.mahalanobis_covariance: ridge, which needs it above "
                    f"0 (mahalanobis_covariance is {method})"
                )


# sections a resumed sweep may change: where it is logged, not what it runs
NOT_THE_EXPERIMENT = ("tracking",)


def changed_keys(saved: str, config: GridConfig) -> list[str]:
    """The keys in which a sweep's saved grid (its resolved YAML) and `config` differ.
    The saved grid is read by today's schema first, so a key added since it was
    written takes its default on both sides (a new key's default keeps what the
    code did before); a value that differs, or a saved key today's schema no
    longer knows, is a change."""
    try:
        then = GridConfig.model_validate(yaml.safe_load(saved))
    except (ValidationError, yaml.YAMLError):
        return ["(the saved grid no longer loads)"]
    old, new = (flat_keys(c.model_dump(mode="json")) for c in (then, config))
    return sorted(key for key in old.keys() | new.keys()
                  if old.get(key) != new.get(key)
                  and key.split(".")[0] not in NOT_THE_EXPERIMENT)  # fmt: skip


def flat_keys(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "grid":  # the axes: one value
            flat.update(flat_keys(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
