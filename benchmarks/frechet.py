"""Fréchet distance at d = 2048: symmetric eigenvalues against scipy.linalg.sqrtm.

    python -m benchmarks.frechet

The baseline is the classic formula (pytorch-fid, FidHelper): sqrtm(S1 S2). Ours: one
pair from scratch (frechet_distance), and against a fixed reference whose square root is
cached (FrechetReference.distance). Covariances come from 4096 samples of features with
a decaying spectrum, like Inception features. Writes benchmarks/results/frechet.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.linalg

from benchmarks.common import timed, write_result
from fid.distance import FrechetReference, frechet_distance
from fid.stats import Statistics, statistics


def sqrtm_fid(a: Statistics, b: Statistics) -> float:
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma)
    diff = a.mu - b.mu
    return float(
        diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean.real)
    )


def synthetic_stats(rng: np.random.Generator, d: int, n: int) -> Statistics:
    scales = 1.0 / np.sqrt(1.0 + np.arange(d))  # decaying spectrum
    mixing = np.linalg.qr(rng.standard_normal((d, d)))[0]
    features = (rng.standard_normal((n, d)) * scales) @ mixing + rng.uniform(0, 1, d)
    return statistics(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    reference_stats = synthetic_stats(rng, args.dim, args.samples)
    others = [synthetic_stats(rng, args.dim, args.samples) for _ in range(args.repeats)]

    sqrtm_times, pair_times, cached_times, differences = [], [], [], []
    setup_s, reference = timed(FrechetReference, reference_stats)
    for other in others:
        t, baseline = timed(sqrtm_fid, reference_stats, other)
        sqrtm_times.append(t)
        t, pair = timed(frechet_distance, reference_stats, other)
        pair_times.append(t)
        t, cached = timed(reference.distance, other)
        cached_times.append(t)
        differences += [
            abs(pair - baseline) / baseline,
            abs(cached - baseline) / baseline,
        ]
    write_result(
        "frechet",
        {
            "benchmark": "Frechet distance: symmetric eigenvalues vs scipy sqrtm",
            "dim": args.dim,
            "repeats": args.repeats,
            "sqrtm_s": float(np.median(sqrtm_times)),
            "ours_pair_s": float(np.median(pair_times)),
            "ours_cached_reference_s": float(np.median(cached_times)),
            "reference_setup_s": setup_s,
            "speedup_pair": float(np.median(sqrtm_times) / np.median(pair_times)),
            "speedup_cached_reference": float(
                np.median(sqrtm_times) / np.median(cached_times)
            ),
            "max_relative_difference": float(max(differences)),
        },
    )


if __name__ == "__main__":
    main()
