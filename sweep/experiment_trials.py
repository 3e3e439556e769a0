"""The FID-only kinds through the sweep's entry point: one trial per E1 size or E2
tile count (and seed), each reporting one result per repetition, then a summary.

The maths lives in experiments/ (E1: count-weighted statistics of distinct images'
features; E2: streamed statistics of scrambled tiles); here it is spread over Ray.
"""

from __future__ import annotations

import numpy as np
import ray
from ray import tune

from experiments.protocols.repeated import distinct_indices, fids_from_features, plan
from experiments.protocols.scrambled import level_rng, scrambled_batches
from experiments.protocols.summary import sample_variance
from fid.client import FIDClient
from fid.distance import FrechetReference
from fid.priority_lock import FINAL
from fid.stats import StatsAccumulator
from sweep.config import GridConfig
from sweep.trainable import SweepData, fid_service

FEATURE_BATCH = 500  # images per call to the FID actor


def _finish(fids: list[float], samples: int, service: FIDClient) -> None:
    tune.report({
        "phase": "final", "outcome": "completed", "repetitions": len(fids),
        "fid_mean": float(np.mean(fids)),
        "fid_variance_ddof1": sample_variance(fids),
        "fid_samples": samples, "fid_busy_seconds": service.busy_seconds,
    })  # fmt: skip


def repeated_trial(config: dict, *, grid: GridConfig, data: SweepData) -> None:
    """E1 at one size: FID of sets of e1.count images built from `size` distinct."""
    params = config["trial"]
    service = fid_service(data)
    reference = FrechetReference(service.reference_stats("test"))
    features = ray.get(data.train_features)  # (N, d), read-only, zero-copy
    draws = plan(len(features), [params["size"]], grid.e1.repetitions,
                 grid.e1.count, params["seed"])  # fmt: skip
    distinct = distinct_indices(draws)
    table = fids_from_features(draws, distinct, features[distinct], reference)
    for row in table.itertuples():
        tune.report(
            {
                "phase": "repetition",
                "repetition": int(row.repetition),
                "fid": float(row.fid),
                "fid_samples": int(row.sample_count),
            }
        )
    _finish(table["fid"].tolist(), grid.e1.count, service)


def scrambled_trial(config: dict, *, grid: GridConfig, data: SweepData) -> None:
    """E2 at one tile count: FID of e2.count training images, tiles shuffled."""
    params = config["trial"]
    tiles, seed = params["tiles"], params["seed"]
    service = fid_service(data)
    train = ray.get(data.train)  # read-only, zero-copy
    chosen = np.sort(np.random.default_rng(seed).permutation(len(train))
                     [: grid.e2.count])  # fmt: skip
    images = train.images[chosen]  # (count, 32, 32, 3) uint8
    fids = []
    for repetition in range(grid.e2.repetitions):
        accumulator = None
        batches = scrambled_batches(images, tiles, level_rng(seed, tiles, repetition),
                                    FEATURE_BATCH)  # fmt: skip
        for batch in batches:
            features = service.features(batch, priority=FINAL)
            accumulator = accumulator or StatsAccumulator(features.shape[1])
            accumulator.update(features)
        stats = accumulator.result()
        fid = service.fid_of_stats(stats, "test")
        fids.append(fid)
        tune.report({"phase": "repetition", "repetition": repetition, "fid": fid,
                     "fid_samples": int(stats.n)})  # fmt: skip
    _finish(fids, len(images), service)
