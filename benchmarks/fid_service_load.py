"""The FID service under load: simulated trials calling 1 or 2 replicas, before/after.

    python -m benchmarks.fid_service_load [--trials 6] [--ms-per-image 1]

Each simulated trial (a Ray task) "trains" for a second between evaluations, makes
an intermediate FID call of 100 images after each of 5 evaluation rounds, and ends
with 4 final calls of 1,000 images (one per prior); trials start 0.2 s apart. The
network is the stand-in run at a fixed speed (`--ms-per-image`, like a GPU), so the
benchmark measures how calls queue, not this CPU.

* before: what the sweep did: the replica chosen by crc32(trial id) % replicas, calls
  served in arrival order, each call whole;
* after: `fid.client.FIDClient` (least-loaded live replica), intermediate calls ahead
  of final ones, large calls in turns of 100 images.

Reports, for 1 and 2 replicas: p50/p95/max latency of intermediate and final calls,
and throughput (all images / the time from the first call to the last answer).
Writes benchmarks/results/fid_service_load.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from functools import partial

import numpy as np
import ray

from benchmarks.common import write_result
from fid.client import FIDClient
from fid.priority_lock import FINAL, INTERACTIVE
from fid.service import start_fid_service
from fid.standin import StandInExtractor
from sweep.cluster import start_local

NAMESPACE = "fid-load-bench"
ROUNDS, INTERMEDIATE, PRIORS, FINAL_IMAGES = 5, 100, 4, 1000
TRAIN_SECONDS, STAGGER = 1.0, 0.2


@ray.remote(num_cpus=0.01)
def simulated_trial(index: int, trial_id: str, mode: str, names: list[str]):
    rng = np.random.default_rng(index)
    small = rng.integers(0, 256, (INTERMEDIATE, 32, 32, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (FINAL_IMAGES, 32, 32, 3), dtype=np.uint8)
    client = FIDClient(names, NAMESPACE)
    # before: one replica for the whole trial, by a hash of its id
    fixed = ray.get_actor(names[zlib.crc32(trial_id.encode()) % len(names)], NAMESPACE)

    def call(images, priority) -> float:
        started = time.perf_counter()
        if mode == "after":
            client.fid(images, priority=priority)
        else:
            ray.get(fixed.fid.remote(images, priority=FINAL))  # arrival order
        return time.perf_counter() - started

    time.sleep(index * STAGGER)
    calls = []
    for _ in range(ROUNDS):
        time.sleep(TRAIN_SECONDS)
        calls.append(("intermediate", time.time(), call(small, INTERACTIVE)))
    for _ in range(PRIORS):
        calls.append(("final", time.time(), call(large, FINAL)))
    return calls


def run(mode: str, replicas: int, trials: int, seconds_per_image: float) -> dict:
    names = [f"{mode}-{replicas}-{i}" for i in range(replicas)]
    chunk = INTERMEDIATE if mode == "after" else 10**9
    reference = np.random.default_rng(99).integers(0, 256, (100, 32, 32, 3), np.uint8)
    actors = [
        start_fid_service(
            {"test": reference}, name=name, namespace=NAMESPACE, num_cpus=0.01,
            chunk=chunk,
            extractor_factory=partial(StandInExtractor, seconds_per_image),
        )
        for name in names
    ]  # fmt: skip
    ray.get([actor.reference_stats.remote("test") for actor in actors])
    ids = [f"{zlib.crc32(str(i).encode()):08x}" for i in range(trials)]  # Tune-like
    started = time.time()
    results = ray.get(
        [simulated_trial.remote(i, ids[i], mode, names) for i in range(trials)]
    )
    calls = [call for trial in results for call in trial]
    ended = max(at + latency for _, at, latency in calls)
    for actor in actors:
        ray.kill(actor)
    images = trials * (ROUNDS * INTERMEDIATE + PRIORS * FINAL_IMAGES)
    report = {"images_per_s": round(images / (ended - started), 1)}
    for kind in ("intermediate", "final"):
        latencies = np.array([lat for k, _, lat in calls if k == kind])
        report[kind] = {
            "calls": len(latencies),
            "p50_s": round(float(np.percentile(latencies, 50)), 3),
            "p95_s": round(float(np.percentile(latencies, 95)), 3),
            "max_s": round(float(latencies.max()), 3),
        }
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="simulated trials")
    parser.add_argument("--ms-per-image", type=float, default=1.0)
    args = parser.parse_args(argv)
    start_local(num_cpus=2, include_dashboard=False, log_to_driver=False)  # on loopback
    results = {}
    try:
        for replicas in (1, 2):
            for mode in ("before", "after"):
                key = f"{replicas}_replica{'s' if replicas > 1 else ''}_{mode}"
                results[key] = run(mode, replicas, args.trials, args.ms_per_image / 1e3)
                print(key, results[key])
    finally:
        ray.shutdown()
    write_result(
        "fid_service_load",
        {
            "command": "python -m benchmarks.fid_service_load "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "trials": args.trials,
            "ms_per_image": args.ms_per_image,
            "per_trial": f"{ROUNDS} x {INTERMEDIATE}-image intermediate calls, "
            f"{PRIORS} x {FINAL_IMAGES}-image final calls",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
