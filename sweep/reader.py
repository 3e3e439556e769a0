"""A sweep's results as the analysis reads them: `results.parquet`, `history.parquet`
and the resolved `grid.yaml` of one sweep folder, checked, and marked partial when the
sweep has not finished (still running, killed, or resumed after its tables).

A sweep writes its tables when its driver finishes. While it runs, or after a resume
started, Tune's experiment state is newer than the tables: the tables are then rebuilt
from that state (the trials' own reports), and trials that have not ended are counted
as `unfinished`, never averaged in.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from sweep.config import GridConfig
from sweep.folder import GRID_FILE, HISTORY_FILE, RESULTS_FILE
from sweep.trials import expand
from vae_sweep.errors import InputError

# what may differ between sweeps analysed together: where and how they ran, and which
# axis values and scheduler they used; everything else decides what a FID means
RUN_ONLY_KEYS = {
    "name",
    "storage",
    "storage_shared",
    "storage_endpoint",
    "grid",
    "scheduler",
    "resources",
    "fid_service",
    "max_failures",
    "checkpoint_every",
    "estimate",
    "eval",
}


@dataclass
class Sweep:
    folder: Path
    grid: GridConfig
    results: pd.DataFrame  # a row per (trial, prior); E1/E2: per (trial, repetition)
    history: pd.DataFrame  # a row per (trial, phase, epoch)
    expected_trials: int  # the grid's trials, equivalent ones once
    rebuilt: bool = False  # tables rebuilt from Tune's state: the sweep has not ended
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.grid.name

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial (the first prior's or repetition's row)."""
        return self.results.drop_duplicates("trial_id")

    @property
    def partial(self) -> bool:
        finished = self.trials["status"] != "unfinished"
        return self.rebuilt or int(finished.sum()) < self.expected_trials


def _state_time(folder: Path) -> float:
    states = glob.glob(str(folder / "experiment_state-*.json"))
    return max((os.path.getmtime(s) for s in states), default=0.0)


def _read_grid(folder: Path) -> GridConfig:
    path = folder / GRID_FILE
    if not path.is_file():
        raise InputError(f"{folder}: no {GRID_FILE}, not a sweep folder")
    try:
        return GridConfig.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as error:
        first = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise InputError(f"{path}: not a resolved grid ({first})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise InputError(f"{path}: cannot read it ({first})") from None


@dataclass
class _Reported:
    """What `sweep.results.build_tables` reads of a Tune Result, for a trial known
    only from the experiment state and its own result log."""

    metrics: dict
    config: dict
    error: str | None
    path: str
    metrics_dataframe: pd.DataFrame | None


def _reported(trial, frame: pd.DataFrame | None) -> _Reported:
    last = {}
    if frame is not None and len(frame):
        last = {k: v for k, v in frame.iloc[-1].items() if not _missing(v)}
    error = None
    if trial.status == "ERROR":
        error = f"error (see {trial.path}/error.txt)"
    return _Reported(last or dict(trial.last_result or {}), trial.config, error,
                     trial.path, frame)  # fmt: skip


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _rebuild(folder: Path, grid: GridConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables from Tune's experiment state and the trials' own result logs, for
    a sweep that has not ended. The state lags the logs by seconds: a trial whose log
    ends with its final report has finished, whatever the state says."""
    from ray.tune import ExperimentAnalysis  # noqa: PLC0415 (slow import)

    from sweep.results import build_tables  # noqa: PLC0415

    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # trials not started yet
    try:
        analysis = ExperimentAnalysis(str(folder.resolve()))
    except (OSError, ValueError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise InputError(
            f"{folder}: cannot read Tune's experiment state ({first})"
        ) from None
    frames = analysis.trial_dataframes
    reported = [_reported(t, frames.get(t.trial_id)) for t in analysis.trials]
    table, history = build_tables(reported, grid, meta={})
    if not table.empty:
        ended = {r.metrics.get("trial_id") or Path(r.path).name for r in reported
                 if r.error or r.metrics.get("phase") == "final"}  # fmt: skip
        table.loc[~table["trial_id"].isin(ended), ["status", "stop_reason"]] = (
            "unfinished"
        )
    return table, history


def load_sweep(path: str | os.PathLike) -> Sweep:
    """One sweep folder, checked; InputError (one line) when it cannot be analysed."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    grid = _read_grid(folder)
    expected = len(expand(grid))
    results_path, history_path = folder / RESULTS_FILE, folder / HISTORY_FILE
    state_time = _state_time(folder)
    tables_time = os.path.getmtime(results_path) if results_path.is_file() else 0.0
    if tables_time and tables_time >= state_time:
        results = _read_parquet(results_path)
        history = _read_parquet(history_path) if history_path.is_file() else None
        sweep = Sweep(folder, grid, results, history, expected)
    elif state_time:
        results, history = _rebuild(folder, grid)
        sweep = Sweep(folder, grid, results, history, expected, rebuilt=True)
        sweep.notes.append(
            f"{folder.name}: Tune's experiment state is newer than the tables "
            "(a sweep running, killed or resumed): rebuilt from the trials' reports"
        )
    else:
        raise InputError(f"{folder}: no {RESULTS_FILE} and no Tune experiment state")
    if sweep.results.empty:
        raise InputError(f"{folder}: no trial has reported yet")
    if sweep.history is None:
        sweep.history = pd.DataFrame()
    elif len(sweep.history) and "phase" not in sweep.history:
        sweep.history["phase"] = "stage1"  # written before stage 2 had a history
    _check_columns(sweep, results_path)
    return sweep


REQUIRED = {
    "vae": {
        "trial_id",
        "n_train",
        "criterion",
        "seed",
        "prior",
        "fid",
        "fid_samples",
        "status",
    },
    "fid_repeated": {"trial_id", "size", "seed", "repetition", "fid", "status"},
    "fid_scrambled": {"trial_id", "tiles", "seed", "repetition", "fid", "status"},
}


def _check_columns(sweep: Sweep, path: Path) -> None:
    missing = REQUIRED[sweep.grid.kind] - set(sweep.results.columns)
    if missing:
        raise InputError(f"{path}: missing columns {', '.join(sorted(missing))}")


def comparable_key(grid: GridConfig) -> dict:
    """What must be equal for FIDs of two sweeps to be compared."""
    return {k: v for k, v in grid.model_dump().items() if k not in RUN_ONLY_KEYS}


def load_sweeps(paths) -> list[Sweep]:
    """Several sweep folders that can be analysed together (the same kind, data, model
    sizes, training and FID settings), or one line saying which key differs."""
    sweeps = [load_sweep(p) for p in paths]
    first = comparable_key(sweeps[0].grid)
    for sweep in sweeps[1:]:
        other = comparable_key(sweep.grid)
        differing = sorted(
            k for k in first.keys() | other.keys() if first.get(k) != other.get(k)
        )
        if differing:
            raise InputError(
                f"{sweep.folder}: cannot be compared with {sweeps[0].folder} "
                f"(their grids differ in {', '.join(differing)})"
            )
    return sweeps
