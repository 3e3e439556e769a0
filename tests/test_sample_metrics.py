"""KID and FID-infinity (fid.sample_metrics) against values worked out another way."""

from __future__ import annotations

import numpy as np
import pytest

from fid.distance import FrechetReference, frechet_distance
from fid.sample_metrics import FID_INF_MIN_SAMPLES, fid_infinity, kid, mmd2_unbiased
from fid.stats import Statistics
from vae_sweep.errors import InputError


def _slow_mmd2(x, y) -> float:
    """The unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, one pair at a time."""
    d = len(x[0])

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b, strict=True)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    xy = sum(k(a, b) for a in x for b in y)
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)


def test_mmd2_matches_a_direct_computation(rng):
    x = rng.standard_normal((7, 5)).tolist()
    y = (rng.standard_normal((9, 5)) + 0.5).tolist()
    assert mmd2_unbiased(np.array(x), np.array(y)) == pytest.approx(
        _slow_mmd2(x, y), rel=1e-12
    )


def test_kid_on_whole_sets_is_the_mmd_and_subsets_average_it(rng):
    x = rng.standard_normal((12, 4))
    y = rng.standard_normal((10, 4)) + 0.3
    # subsets as large as the smaller set: every subset of y is all of y, and the
    # unbiased MMD^2 of a subset of x of size 10 averages to that of all of x
    whole = kid(x[:10], y, subsets=5, subset_size=50)
    assert whole.subset_size == 10 and whole.std == pytest.approx(0, abs=1e-12)
    assert whole.mean == pytest.approx(_slow_mmd2(x[:10].tolist(), y.tolist()), 1e-12)
    sub = kid(x, y, subsets=40, subset_size=6, seed=3)
    pairs = np.random.default_rng(3)
    expected = [
        _slow_mmd2(x[pairs.choice(12, 6, replace=False)].tolist(),
                   y[pairs.choice(10, 6, replace=False)].tolist())
        for _ in range(40)
    ]  # fmt: skip
    assert sub.mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert sub.std == pytest.approx(np.std(expected), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_not_for_two(rng):
    same = kid(rng.standard_normal((600, 8)), rng.standard_normal((600, 8)),
               subsets=20, subset_size=200)  # fmt: skip
    apart = kid(rng.standard_normal((600, 8)), rng.standard_normal((600, 8)) + 0.5,
                subsets=20, subset_size=200)  # fmt: skip
    assert abs(same.mean) < 3 * same.std / np.sqrt(20) + 1e-3
    assert apart.mean > 10 * abs(same.mean)


def test_fid_infinity_recovers_the_fid_of_the_populations():
    rng = np.random.default_rng(0)
    d = 32
    a, b = rng.standard_normal((2, d, d)) / np.sqrt(d)
    reference = Statistics(np.zeros(d), a @ a.T + 0.5 * np.eye(d), -1)
    generated = Statistics(np.full(d, 0.1), b @ b.T + 0.5 * np.eye(d), -1)
    true = frechet_distance(reference, generated)  # the populations' own FID
    samples = rng.multivariate_normal(generated.mu, generated.sigma, size=5000)
    result = fid_infinity(samples, FrechetReference(reference), smallest=500, seed=1,
                          minimum=5000)  # fmt: skip
    assert result.sizes[0] == 500 and result.sizes[-1] == 5000
    assert result.fids[0] - true > 0.5  # 500 samples: visibly biased upwards
    assert abs(result.value - true) < 0.15  # the intercept: about 1% of the FID
    assert result.slope > 0


def test_fid_infinity_refuses_too_few_samples(rng):
    reference = FrechetReference(Statistics(np.zeros(2), np.eye(2), -1))
    with pytest.raises(ValueError, match="smallest < n"):
        fid_infinity(rng.standard_normal((3, 2)), reference, smallest=3, minimum=2)
    # below 10,000 samples the 1/n law is not trusted: refused, not extrapolated
    with pytest.raises(InputError, match="needs at least 10,000 samples.* got 9,999"):
        fid_infinity(rng.standard_normal((9999, 2)), reference)
    assert FID_INF_MIN_SAMPLES == 10_000


def test_fid_infinity_subsets_start_at_five_thousand_of_ten_thousand(rng):
    reference = FrechetReference(Statistics(np.zeros(2), np.eye(2), -1))
    result = fid_infinity(rng.standard_normal((10_000, 2)), reference)
    assert result.sizes[0] == 5000 and result.sizes[-1] == 10_000
