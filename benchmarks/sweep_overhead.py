"""Ray Tune's overhead in this sweep, and its trial throughput on a trivial trainable.

    python -m benchmarks.sweep_overhead --data ../shared/data/cifar10-jpeg

(a) Runs the smoke grid (`python -m sweep.run grids/smoke.yaml`, real FID network) and
compares the wall time of `Tuner.fit()` with the sum of the trials' own times
(`time_total_s`); with one trial at a time (2 CPUs: one for the FID actor, one for a
trial) the difference is Tune's per-trial cost: worker start-up, scheduling, result
and checkpoint handling. The whole command's wall time (Ray start, data, x_test
statistics, the reference VAE) is reported beside it.
(b) Trials per minute of a trainable that reports once, against the same function as
plain Ray tasks (the floor any Ray-based scheduler pays), on the same local Ray.
Writes benchmarks/results/sweep_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import write_result
from sweep.folder import RESULTS_FILE, TIMINGS_FILE

ROOT = Path(__file__).resolve().parent.parent


def max_overlap(table: pd.DataFrame) -> int:
    """Most trials running at once. Tune's timestamps are whole seconds, so each
    interval is trimmed by one second at its end before counting."""
    trials = table.drop_duplicates("trial_id")
    ends = trials["finished_at"] - pd.Timedelta(seconds=1)
    events = sorted([(t, 1) for t in trials["started_at"]] + [(t, -1) for t in ends])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def smoke(grid: str, data: str | None, extra: list[str]) -> dict:
    storage = tempfile.mkdtemp(prefix="sweep-bench-")
    env = {**os.environ, **({"VAE_SWEEP_DATA": data} if data else {})}
    started = time.perf_counter()
    command = [sys.executable, "-m", "sweep.run", grid, "--set", f"storage={storage}"]
    subprocess.run(
        [*command, *extra], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )
    command = time.perf_counter() - started
    name = next(p for p in Path(storage).iterdir() if p.is_dir())
    timings = json.loads((name / TIMINGS_FILE).read_text())
    table = pd.read_parquet(name / RESULTS_FILE)
    fit = timings["runs"][-1]["driver_seconds"]["tune_fit"]
    trials = timings["trial_seconds_sum"]
    return {
        "grid": grid,
        "overrides": extra,
        "command_seconds": command,
        "driver_seconds": timings["runs"][-1]["driver_seconds"],
        "tune_fit_seconds": fit,
        "trial_seconds_sum": trials,
        "trials": timings["trials"],
        "trials_at_once": max_overlap(table),
        "tune_overhead": fit / trials - 1,
        "statuses": table.drop_duplicates("trial_id")["status"]
        .value_counts()
        .to_dict(),
    }


def trivial(count: int) -> dict:
    import ray
    from ray import tune

    from sweep.cluster import start_local

    def report_once(config):
        tune.report({"value": config["i"]})

    def task(i):
        return i

    start_local(num_cpus=2, include_dashboard=False, log_to_driver=False)  # on loopback
    remote = ray.remote(num_cpus=1)(task)
    ray.get(remote.remote(0))  # workers warm
    started = time.perf_counter()
    ray.get([remote.remote(i) for i in range(count)])
    tasks = time.perf_counter() - started
    storage = tempfile.mkdtemp(prefix="tune-bench-")
    tuner = tune.Tuner(
        tune.with_resources(report_once, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(count)))},
        run_config=tune.RunConfig(storage_path=storage, name="trivial", verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    fit = time.perf_counter() - started
    ray.shutdown()
    assert len(results) == count and not results.errors
    return {
        "trials": count,
        "tune_seconds": fit,
        "tune_trials_per_minute": count / fit * 60,
        "ray_task_seconds": tasks,
        "ray_tasks_per_minute": count / tasks * 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--grid", default="grids/smoke.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--trivial-trials", type=int, default=40)
    args = parser.parse_args()
    extra = [item for o in args.overrides for item in ("--set", o)]
    result = {
        "smoke": smoke(args.grid, args.data, extra),
        "trivial": trivial(args.trivial_trials),
    }
    write_result("sweep_overhead", result)


if __name__ == "__main__":
    main()
