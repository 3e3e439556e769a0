"""Where a sweep's time goes: the driver's phases, and the GPU time of everything that
holds a GPU (trials, FID replicas, prerequisite tasks), written to `timings.json`.

GPU-seconds are reserved time: a process holding a share g of a GPU for s seconds
costs g * s, whether it computes or waits. So

* trials: wall seconds x `resources.gpu`, from Tune's cumulative `time_total_s` (work
  lost after a trial's last checkpoint is not in it);
* FID replicas: `replicas` x `fid_service.gpu` x their lifetime in this run;
* prerequisites: each task's seconds x the GPUs it held (the reference VAE holds the
  trial resources; the Mahalanobis task's features are computed by the FID replicas).

A resumed sweep adds a run to `timings.json`; the sweep total sums the replicas and
prerequisites of every run and the trials once. A run that stops early (SIGTERM,
Ctrl-C, an error) writes its own record too, marked `stopped`: its replicas' lifetime
and its finished prerequisites count in the total of the run that finishes the
sweep, and its `driver_seconds` say how long it ran. Until a run finishes, the
trials' totals are unknown (null): Tune's cumulative times come with its results.
A trial's `fid_gpu_seconds` column (the FID network time spent on it x
`fid_service.gpu`) attributes part of the replicas' time to it: it is inside the
FID replicas' total, not added to it.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd

from sweep import stopping
from sweep.config import GridConfig
from sweep.folder import TIMINGS_FILE
from sweep.storage import join, read_text, write_bytes


class Accounting:
    def __init__(self, config: GridConfig, folder: str, clock=time.perf_counter):
        self.config = config
        self.clock = clock
        self.path = join(folder, TIMINGS_FILE)
        self.previous_runs: list[dict] = _earlier_runs(self.path)
        self.driver_seconds: dict[str, float] = {}
        self.started_at = pd.Timestamp.now(tz="UTC").isoformat()
        self._last = clock()
        self._service_start: float | None = None
        self.replicas = 0
        self.replica_places: list[dict] = []
        self.run_gpu = {"fid_service": 0.0, "prerequisites": 0.0}
        self.prerequisites: dict[str, dict | None] = {}
        self.trials = 0
        self.trial_seconds = 0.0
        self.trial_gpu_seconds = 0.0

    def lap(self, phase: str) -> None:
        now = self.clock()
        self.driver_seconds[phase] = (
            self.driver_seconds.get(phase, 0.0) + now - self._last
        )
        self._last = now

    def services_started(self, replicas: list[dict]) -> None:
        """The replicas' `info()`: where each runs, for the record."""
        self.replicas = len(replicas)
        self.replica_places = [
            {key: info.get(key) for key in ("node", "device", "pid")}
            for info in replicas
        ]
        self._service_start = self.clock()

    def services_stopped(self) -> None:
        if self._service_start is not None:
            lifetime = self.clock() - self._service_start
            share = self.replicas * self.config.fid_service.gpu
            self.run_gpu["fid_service"] = lifetime * share

    def add_prerequisites(self, prerequisites) -> None:
        self.prerequisites = prerequisites.spans()
        self.run_gpu["prerequisites"] = prerequisites.gpu_seconds()

    def add_trials(self, results) -> None:
        walls = [float((r.metrics or {}).get("time_total_s") or 0) for r in results]
        self.trials = len(walls)
        self.trial_seconds = sum(walls)
        self.trial_gpu_seconds = self.trial_seconds * self.config.resources.gpu

    def _runs_gpu(self, key: str) -> float:
        earlier = sum(run["gpu_seconds"][key] for run in self.previous_runs)
        return earlier + self.run_gpu[key]

    def sweep_gpu_seconds(self) -> float:
        return (
            self.trial_gpu_seconds
            + self._runs_gpu("fid_service")
            + self._runs_gpu("prerequisites")
        )

    def summary(self, stopped: str | None = None) -> dict:
        """The record with this run added; `stopped`: why it ended early (then the
        trials' totals are null)."""
        run = {
            "started_at": self.started_at,
            "stopped": stopped,
            "driver_seconds": self.driver_seconds,
            "fid_replicas": self.replica_places,
            # per kind: when its task ran (unix times) and for how long; null when
            # its scores came from the cache
            "prerequisites": self.prerequisites,
            "gpu_seconds": dict(self.run_gpu),
        }
        totals = {
            "trials": None if stopped else self.trial_gpu_seconds,
            "fid_service": self._runs_gpu("fid_service"),
            "prerequisites": self._runs_gpu("prerequisites"),
        }
        total = None if stopped else sum(totals.values())
        return {
            "runs": [*self.previous_runs, run],
            "trials": None if stopped else self.trials,
            "trial_seconds_sum": None if stopped else self.trial_seconds,
            "gpu_seconds": {**totals, "total": total},
            "gpu_hours": None if stopped else total / 3600,
        }

    def write(self, stopped: str | None = None) -> None:
        summary = self.summary(stopped)
        write_bytes(self.path, json.dumps(summary, indent=2).encode())

    def write_stopped(self, stop: BaseException, prerequisites, phase: str) -> None:
        """The record of a run that `stop` ended in `phase`, before its record: the
        replicas' lifetime so far, the prerequisites that finished, how long it ran
        (the phase's seconds up to the stop)."""
        self.lap(phase)
        self.services_stopped()
        self.add_prerequisites(prerequisites)
        self.write(stopped=stop_reason(stop))


def _earlier_runs(path: str) -> list[dict]:
    """The runs timings.json holds; none, with a line saying so, when it cannot be
    read as such (an empty or cut file: its runs are lost to the totals either way,
    and a resume goes on)."""
    saved = read_text(path)
    if saved is None:
        return []
    try:
        return list(json.loads(saved)["runs"])
    except (ValueError, KeyError, TypeError) as error:
        print(f"timings.json: unreadable ({type(error).__name__}); the runs before "
              f"this one are not counted", file=sys.stderr)  # fmt: skip
        return []


def stop_reason(stop: BaseException) -> str:
    """"terminated" (SIGTERM), "interrupted" (Ctrl-C) or the error's type."""
    if stopping.stopped_by_sigterm(stop):
        return "terminated"
    if isinstance(stop, KeyboardInterrupt):
        return "interrupted"
    return f"error: {type(stop).__name__}"
