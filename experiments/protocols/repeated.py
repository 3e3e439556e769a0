"""E1: sets of `count` images made of `n` distinct training images, repeated.

For each n and repetition, n distinct images are drawn from x_train and repeated to
`count` images (each count // n times, the remainder going to randomly chosen images).
Features are extracted once per distinct image over the whole protocol; each set's
statistics are the count-weighted statistics of its distinct images
(fid.stats.weighted_statistics), equal to those of the repeated set itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.stats import weighted_statistics
from vae_sweep.errors import InputError

DEFAULT_SIZES = (10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10000)


DEFAULT_TOTAL = 10_000


@dataclass(frozen=True)
class RepeatedSet:
    size: int  # distinct images
    repetition: int
    indices: np.ndarray  # (size,) sorted indices into the training pool
    counts: np.ndarray  # (size,) how often each appears; sums to the set's total


def draw_repeated_set(
    pool_size: int, size: int, total: int, *, seed: int, repetition: int
) -> RepeatedSet:
    """One seeded draw; the generator depends only on (seed, size, repetition)."""
    rng = np.random.default_rng([seed, size, repetition])
    indices = np.sort(rng.choice(pool_size, size, replace=False))
    counts = np.full(size, total // size, dtype=np.int64)
    counts[rng.choice(size, total % size, replace=False)] += 1
    return RepeatedSet(size, repetition, indices, counts)


def plan(
    pool_size: int, sizes, repetitions: int, total: int, seed: int
) -> list[RepeatedSet]:
    for size in sizes:
        if size < 1 or size > min(total, pool_size):
            raise InputError(
                f"--sizes: {size} distinct images must be between 1 and "
                f"min(--count {total}, training pool {pool_size})"
            )
    return [
        draw_repeated_set(pool_size, size, total, seed=seed, repetition=r)
        for size in sizes
        for r in range(repetitions)
    ]


def distinct_indices(draws: list[RepeatedSet]) -> np.ndarray:
    """Sorted indices of every training image any draw uses: the images to extract."""
    return np.unique(np.concatenate([d.indices for d in draws]))


def fids_from_features(
    draws: list[RepeatedSet],
    distinct: np.ndarray,
    features: np.ndarray,
    reference: FrechetReference,
) -> pd.DataFrame:
    """Each draw's FID from the features of `distinct`; a row per (size, repetition)."""
    rows = []
    for draw in draws:
        rows_of_draw = np.searchsorted(distinct, draw.indices)
        stats = weighted_statistics(features[rows_of_draw], draw.counts)
        rows.append(
            {
                "size": draw.size,
                "repetition": draw.repetition,
                "fid": reference.distance(stats),
                "sample_count": stats.n,
            }
        )
    return pd.DataFrame(rows)


def run_protocol(
    train_images: np.ndarray,
    draws: list[RepeatedSet],
    engine: FIDEngine,
    reference: FrechetReference,
) -> pd.DataFrame:
    """Extract each distinct image once (cached), then every draw's FID."""
    distinct = distinct_indices(draws)
    features = engine.features(np.asarray(train_images[distinct]), desc="E1 distinct")
    return fids_from_features(draws, distinct, features, reference)
