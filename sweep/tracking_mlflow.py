"""The MLflow backend of sweep/tracking.py: a parent run per sweep, a child per trial.

`tracking.mlflow.uri` is a tracking server (http(s)://host:port), a database
(sqlite:///path.db, postgresql://...), or a plain folder: MLflow's folder store is
retired (MLflow 3 refuses it), so a folder holds `mlflow.db` (SQLite) and the
artifacts beside it; browse it with `mlflow ui --backend-store-uri
sqlite:///<folder>/mlflow.db`.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from sweep.config import MLflowSection
from vae_sweep.checks import writable_folder
from vae_sweep.errors import InputError

SERVER_SCHEMES = ("http", "https")
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
FOLDER_DATABASE = "mlflow.db"
ARTIFACTS_FOLDER = "artifacts"
TIMEOUT_S = 5.0  # a server that does not answer /health in this is unreachable
SWEEP_TAG = "vae_sweep.sweep"  # on every run of a sweep: the sweep's key
TRIAL_TAG = "vae_sweep.trial"  # on a trial's run: its key (sweep key + trial id)
ROLE_TAG = "vae_sweep.role"  # "sweep" on the parent run
BATCH = 1000  # MLflow's log_batch takes at most 1,000 metrics and 100 params
PARAM_BATCH = 100


def check_uri(uri: str) -> None:
    """A well-formed tracking URI whose server answers; InputError naming the key."""
    parsed = urlparse(uri)
    key = "tracking.mlflow.uri"
    if parsed.scheme in SERVER_SCHEMES:
        if not parsed.hostname:
            raise InputError(f"{key} = {uri!r}: a server URI needs a host "
                             f"(http://host:port)")  # fmt: skip
        try:
            port = parsed.port  # a port that is not a number raises here
        except ValueError:
            port = -1
        if port == -1:
            raise InputError(f"{key} = {uri!r}: the port is not a number")
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=TIMEOUT_S) as answer:
                answer.read(16)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise InputError(
                f"{key} = {uri!r}: no MLflow server answers there ({reason})"
            ) from None
    elif parsed.scheme in DATABASE_SCHEMES:
        if parsed.scheme == "sqlite" and not uri.startswith("sqlite:///"):
            raise InputError(f"{key} = {uri!r}: sqlite:///relative.db or "
                             f"sqlite:////absolute.db")  # fmt: skip
    elif parsed.scheme in ("", "file"):  # a folder this user can create or fill
        writable_folder(parsed.path if parsed.scheme else uri, f"{key} = {uri!r}")
    else:
        raise InputError(
            f"{key} = {uri!r}: not a tracking URI (a folder, file:///path, "
            f"sqlite:///file.db, or a server http(s)://host:port)"
        )


def store(uri: str) -> tuple[str, str | None]:
    """(tracking URI, artifact folder): a folder becomes a SQLite store inside it."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return uri, None
    folder = Path(parsed.path if parsed.scheme else uri).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / FOLDER_DATABASE}", str(folder / ARTIFACTS_FOLDER)


class MLflowTracker:
    def __init__(self, section: MLflowSection, grid_name: str, sweep: str,
                 folder: str):  # fmt: skip
        # MLflow prints a "View run ... at" line per ended run to a server: not ours
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow import MlflowClient

        uri, artifacts = store(section.uri)
        self.client = MlflowClient(tracking_uri=uri)
        name = section.experiment or grid_name
        found = self.client.get_experiment_by_name(name)
        self.experiment = (found.experiment_id if found is not None else
                           self.client.create_experiment(
                               name, artifact_location=artifacts and
                               Path(artifacts, name).as_uri()))  # fmt: skip
        self.sweep = sweep
        self.parent = self._find(f"tags.`{ROLE_TAG}` = 'sweep'")
        if self.parent is None:
            self.parent = self.client.create_run(
                self.experiment, run_name=grid_name,
                tags={SWEEP_TAG: sweep, ROLE_TAG: "sweep", "folder": folder},
            ).info.run_id  # fmt: skip
        else:
            self.client.update_run(self.parent, status="RUNNING")
        self.runs: dict[str, str] = {}

    def _find(self, condition: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment], f"tags.`{SWEEP_TAG}` = '{self.sweep}' and {condition}",
            max_results=1)  # fmt: skip
        return runs[0].info.run_id if runs else None

    def open(self, key: str, name: str, params: dict[str, str]) -> int:
        from mlflow.entities import Param

        run = self._find(f"tags.`{TRIAL_TAG}` = '{key}'")
        if run is not None:  # a resumed trial: its run goes on
            self.client.update_run(run, status="RUNNING")
            self.runs[key] = run
            steps = [m.step for m in self.client.get_metric_history(run, "step")]
            return max(steps, default=-1)
        run = self.client.create_run(
            self.experiment, run_name=name,
            tags={SWEEP_TAG: self.sweep, TRIAL_TAG: key,
                  "mlflow.parentRunId": self.parent},
        ).info.run_id  # fmt: skip
        self.runs[key] = run
        items = [Param(k, v[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), PARAM_BATCH):
            self.client.log_batch(run, params=items[start:start + PARAM_BATCH])
        return -1

    def log(self, key: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in sorted(metrics.items())]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.runs[key], metrics=items[start:start + BATCH])

    def finish(self, key: str, files: list[Path], failed: bool) -> None:
        run = self.runs.pop(key)
        for path in files:
            self.client.log_artifact(run, str(path))
        self.client.set_terminated(run, "FAILED" if failed else "FINISHED")

    def close(self, interrupted: bool = False) -> None:
        for run in self.runs.values():  # trials the sweep stopped before their end
            self.client.set_terminated(run, "KILLED")
        self.runs.clear()
        self.client.set_terminated(self.parent, "KILLED" if interrupted else "FINISHED")
