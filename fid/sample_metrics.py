"""Metrics that separate sample size from quality, from the same Inception features.

FID is biased by the number of samples (DESIGN section 4: only comparable at equal n).
Two standard remedies, both computed from features the engine already extracts:

* KID (Binkowski et al., "Demystifying MMD GANs", ICLR 2018): the unbiased estimate
  of the squared maximum mean discrepancy with the cubic polynomial kernel
  k(x, y) = (x . y / d + 1)^3, averaged over random subsets of both sets (as their
  reference code and torch-fidelity do: 100 subsets of 1,000), with its standard
  deviation over the subsets. Unbiased, so its expectation does not depend on n.
* FID-infinity (Chong & Forsyth, "Effectively Unbiased FID and Inception Score and
  where to find them", CVPR 2020): FID on random subsets of several sizes n, a line
  fitted to FID against 1/n, and its intercept: the FID of infinitely many samples.

    from fid.sample_metrics import kid, fid_infinity
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fid.distance import FrechetReference
from fid.stats import statistics
from vae_sweep.errors import InputError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
FID_INF_POINTS = 15
# FID's bias is linear in 1/n only for large n: Chong & Forsyth fit from 5,000 samples
# up (of 50,000). Here the subsets run from max(5,000, a fifth) to all of at least
# 10,000 samples; below that FID-infinity is refused, not extrapolated from a range
# where the law does not hold
FID_INF_SMALLEST = 5_000
FID_INF_MIN_SAMPLES = 10_000


@dataclass(frozen=True)
class KID:
    mean: float
    std: float  # over the subsets (ddof 0, as the reference code)
    subsets: int
    subset_size: int


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for every pair of rows: (m, d), (n, d) -> (m, n)."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between the rows of x (m, d) and y (n, d), m, n >= 2."""
    m, n = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        - 2.0 * k_xy.mean()
    )


def kid(
    features: np.ndarray,
    reference: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> KID:
    """KID of (n, d) features against (m, d) reference features; subsets larger than
    either set shrink to the smaller set's size."""
    size = min(subset_size, len(features), len(reference))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {size}")
    rng = np.random.default_rng(seed)
    x64 = np.asarray(features, dtype=np.float64)
    y64 = np.asarray(reference, dtype=np.float64)
    values = np.array([
        mmd2_unbiased(
            x64[rng.choice(len(x64), size, replace=False)],
            y64[rng.choice(len(y64), size, replace=False)],
        )
        for _ in range(subsets)
    ])  # fmt: skip
    return KID(float(values.mean()), float(values.std()), subsets, size)


@dataclass(frozen=True)
class FIDInfinity:
    value: float  # the intercept at 1/n = 0
    slope: float  # FID per unit of 1/n: the sample-size bias
    sizes: tuple[int, ...]
    fids: tuple[float, ...]


def fid_infinity(
    features: np.ndarray,
    reference: FrechetReference,
    *,
    points: int = FID_INF_POINTS,
    smallest: int | None = None,
    seed: int = 0,
    minimum: int = FID_INF_MIN_SAMPLES,
) -> FIDInfinity:
    """FID extrapolated to infinitely many samples from subsets of `features`.

    Subset sizes run evenly from `smallest` (default: a fifth of the set, and at
    least FID_INF_SMALLEST or half the set) to all of them; each FID uses a fresh
    random subset. Fewer than `minimum` samples: InputError (tests of the fit itself
    lower it).
    """
    n = len(features)
    if n < minimum:
        raise InputError(f"FID-infinity needs at least {minimum:,} samples (its 1/n "
                         f"law holds from about {FID_INF_SMALLEST:,}), got {n:,}")
    smallest = smallest or max(2, n // 5, min(FID_INF_SMALLEST, n // 2))
    if not 2 <= smallest < n or points < 2:
        raise ValueError(
            f"FID-infinity needs 2 <= smallest < n and 2 points, got smallest="
            f"{smallest}, n={n}, points={points}"
        )
    sizes = np.unique(np.linspace(smallest, n, points).astype(int))
    rng = np.random.default_rng(seed)
    x64 = np.asarray(features, dtype=np.float64)
    fids = np.array([
        reference.distance(statistics(x64[rng.permutation(n)[:size]]))
        for size in sizes
    ])  # fmt: skip
    slope, intercept = np.polyfit(1.0 / sizes, fids, 1)
    return FIDInfinity(
        float(intercept),
        float(slope),
        tuple(int(s) for s in sizes),
        tuple(float(f) for f in fids),
    )
