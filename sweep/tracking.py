"""Experiment tracking: every trial of a sweep a run in MLflow and/or Weights & Biases.

    tracking:
      mlflow: {uri: http://mlflow.lab:5000}        # or a folder, sqlite:///file.db
      wandb: {project: cifar-vae, mode: offline}

A Tune callback on the driver (`TrackingCallback`) opens one run per trial when it
starts, with the trial's whole configuration as parameters (the grid's resolved
settings, its axis values on top), logs each report's numbers at the trial's step
(`loss_mse`, `gamma`, `fid_intermediate`, ...) and, at the end, the final metrics per
prior (`fid_gaussian`, `kid_gmm`, `precision_two_stage`, ...) with the trial's sample
grids and `metrics.json` as artifacts. The sweep is the runs' parent (MLflow) or group
(W&B). The libraries are used directly, not through Ray's callbacks: those open a new
run whenever a restored trial starts again, where a resumed sweep here reopens the run
its trial already has (keyed by the sweep's folder and the trial id, which a resume
keeps) and logs only the steps it has not logged yet.

Checked before Ray starts (`check_tracking`): the package is installed (the `tracking`
extra), an MLflow URI is well formed and a server answers at it, W&B online mode finds
its server. The backends are sweep/tracking_mlflow.py and sweep/tracking_wandb.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import tempfile
from pathlib import Path
from typing import Protocol

from ray import tune

from sweep.config import GridConfig
from sweep.folder import SAMPLES_FOLDER, copies_file, sample_grid_file
from sweep.grid_file import flat_keys
from sweep.stopping import TERMINATED
from sweep.storage import fetch, join
from vae_sweep.errors import InputError

PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}  # tracker -> the package it needs
INSTALL = 'pip install -e ".[tracking]"'
METRICS_FILE = "metrics.json"
# Tune's own bookkeeping and the trial's clock: not metrics of the model
NOT_METRICS = {
    "timestamp", "pid", "time_this_iter_s", "time_total_s", "time_since_restore",
    "iterations_since_restore", "training_iteration", "done", "finished_at",
    "timesteps_total", "episodes_total", "timesteps_since_restore",
}  # fmt: skip


def tracked(config: GridConfig) -> bool:
    return config.tracking.mlflow is not None or config.tracking.wandb is not None


def check_tracking(config: GridConfig) -> None:
    """Each tracker the grid asks for can run: one InputError naming its key if not."""
    tracking = config.tracking
    for name in ("mlflow", "wandb"):
        section = getattr(tracking, name)
        if section is None:
            continue
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise InputError(
                f"tracking.{name}: the {PACKAGES[name]} package is not installed "
                f"({INSTALL})"
            )
        if name == "mlflow":
            from sweep.tracking_mlflow import check_uri

            check_uri(section.uri)
        else:
            from sweep.tracking_wandb import check_wandb

            check_wandb(section)


class Tracker(Protocol):
    """One tracking backend: runs keyed by a stable id, reopened when it recurs."""

    def open(self, key: str, name: str, params: dict[str, str]) -> int:
        """Start or reopen the run `key`; the last step it has logged (-1: none)."""

    def log(self, key: str, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, key: str, files: list[Path], failed: bool) -> None: ...

    def close(self, interrupted: bool = False) -> None:
        """End the sweep's run or group; `interrupted`: a SIGTERM stopped the sweep
        (its unfinished trials' runs are left as stopped, for --resume to reopen)."""


def trackers(config: GridConfig, folder: str) -> list[Tracker]:
    """The backends the grid asks for, connected (their sweep run or group open)."""
    found = []
    sweep = sweep_key(folder)
    if config.tracking.mlflow is not None:
        from sweep.tracking_mlflow import MLflowTracker

        found.append(MLflowTracker(config.tracking.mlflow, config.name, sweep, folder))
    if config.tracking.wandb is not None:
        from sweep.tracking_wandb import WandbTracker

        found.append(WandbTracker(config.tracking.wandb, config.name, sweep))
    return found


def sweep_key(folder: str) -> str:
    """A sweep's identity in a tracker: its storage folder, hashed (12 hex digits)."""
    return hashlib.sha256(folder.encode()).hexdigest()[:12]


def run_params(config: GridConfig, axes: dict) -> dict[str, str]:
    """A trial's configuration as tracker parameters: every resolved grid setting by its
    dotted key, the trial's axis values over them (`n_train`, `criterion`, `seed`,
    `stage1.lr` ...); the axes' value lists and the trackers' own keys left out."""
    flat = flat_keys(config.model_dump(mode="json"))
    params = {key: value for key, value in flat.items()
              if key != "grid" and not key.startswith("tracking.")}  # fmt: skip
    params.update(axes)
    return {key: json.dumps(value) if not isinstance(value, str) else value
            for key, value in params.items()}  # fmt: skip


def numbers(result: dict) -> dict[str, float]:
    """The finite numbers of a Tune result: the model's metrics, not Tune's clock."""
    found = {}
    for key, value in result.items():
        if key in NOT_METRICS or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            found[key] = float(value)
    return found


def result_step(result: dict) -> int:
    """The step a report is logged at: the trial's own step (stage-1 gradient steps,
    resumed exactly), else Tune's iteration (the E1/E2 kinds)."""
    step = result.get("step")
    return int(step) if isinstance(step, (int, float)) else int(
        result.get("training_iteration", 0))  # fmt: skip


def final_summary(result: dict) -> dict:
    """metrics.json: the trial's final report, its learning-curve blobs left out (they
    are the sweep's history.parquet, and each logged step in the tracker)."""
    return {key: value for key, value in result.items()
            if not key.endswith("history_json") and key != "config"}  # fmt: skip


class TrackingCallback(tune.Callback):
    """Mirrors each trial into every tracker (see the module doc)."""

    def __init__(self, config: GridConfig, folder: str):
        self.config, self.folder = config, folder
        self.sweep = sweep_key(folder)
        self.backends: list[Tracker] = []  # connected in setup(), when the sweep starts
        self.last_step: dict[str, list[int]] = {}  # per trial key, per backend
        self.logged: dict[str, tuple[int, dict]] = {}  # per trial key: its last log

    def __getstate__(self):  # pickled with Tune's run configuration: no live clients
        return {**self.__dict__, "backends": [], "last_step": {}, "logged": {}}

    def setup(self, **info):
        self.backends = trackers(self.config, self.folder)

    def key(self, trial) -> str:
        return f"{self.sweep}{trial.trial_id}"

    def _open(self, trial) -> str:
        key = self.key(trial)
        if key not in self.last_step:
            axes = dict(trial.config.get("trial", trial.config))
            params = run_params(self.config, axes)
            self.last_step[key] = [backend.open(key, str(trial), params)
                                   for backend in self.backends]  # fmt: skip
        return key

    def on_trial_start(self, iteration, trials, trial, **info):
        self._open(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = self._open(trial)
        step, metrics = result_step(result), numbers(result)
        final = result.get("phase") == "final"
        before = self.logged.get(key, (None, {}))
        if final and before[0] == step:  # the last round's values are logged already
            metrics = {k: v for k, v in metrics.items() if before[1].get(k) != v}
        for index, backend in enumerate(self.backends):
            # a resumed trial re-reports the steps after its checkpoint: logged once
            if metrics and (step > self.last_step[key][index] or final):
                backend.log(key, metrics, step)
                self.last_step[key][index] = max(step, self.last_step[key][index])
        self.logged[key] = (step, metrics)

    def _finish(self, trial, failed: bool) -> None:
        key = self._open(trial)
        with tempfile.TemporaryDirectory() as scratch:
            files = self._artifacts(trial, Path(scratch))
            for backend in self.backends:
                backend.finish(key, files, failed)
        del self.last_step[key]
        self.logged.pop(key, None)

    def _artifacts(self, trial, scratch: Path) -> list[Path]:
        """The trial's sample grids (from the sweep's storage) and metrics.json."""
        files = []
        priors = self.config.priors
        for name in [*map(sample_grid_file, priors), *map(copies_file, priors)]:
            local = scratch / name
            if fetch(join(self.folder, SAMPLES_FOLDER, trial.trial_id, name), local):
                files.append(local)
        summary = final_summary(trial.last_result or {})
        metrics = scratch / METRICS_FILE
        metrics.write_text(json.dumps(summary, indent=1, sort_keys=True, default=str))
        return [*files, metrics]

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, failed=True)

    def on_experiment_end(self, trials, **info):
        # Tune ends its loop on a SIGTERM too (sweep/stopping.py), not only at the end
        interrupted = bool(TERMINATED)
        for backend in self.backends:
            backend.close(interrupted)
