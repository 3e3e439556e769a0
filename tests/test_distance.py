"""Fréchet distance and statistics against closed forms and scipy.linalg.sqrtm."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from fid.distance import FrechetReference, frechet_distance, sqrtm_psd
from fid.stats import Statistics, StatsAccumulator, statistics, weighted_statistics


def _random_spd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def _sqrtm_fid(a: Statistics, b: Statistics) -> float:
    """The classic pytorch-fid formula, with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma)
    diff = a.mu - b.mu
    return float(
        diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean.real)
    )


def test_equal_covariances_give_squared_mean_difference(rng):
    sigma = _random_spd(rng, 6)
    a = Statistics(np.array([1.0, 2, 3, 4, 5, 6]), sigma, 100)
    b = Statistics(np.array([1.0, 2, 3, 4, 5, 8]), sigma, 100)
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=1e-9)


def test_commuting_gaussians_match_closed_form(rng):
    # S1 = Q diag(s1) Q^T, S2 = Q diag(s2) Q^T commute, so
    # FID = |mu1 - mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
    d = 10
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1, s2 = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    a = Statistics(mu1, q @ np.diag(s1) @ q.T, 10)
    b = Statistics(mu2, q @ np.diag(s2) @ q.T, 10)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)
    # hand-checkable one-dimensional case: N(0, 4) vs N(3, 1) -> 9 + (2 - 1)^2 = 10
    one = frechet_distance(
        Statistics(np.zeros(1), np.array([[4.0]]), 2),
        Statistics(np.array([3.0]), np.array([[1.0]]), 2),
    )
    assert one == pytest.approx(10.0)


@pytest.mark.parametrize("d,rank", [(32, None), (128, None), (64, 40)])
def test_eigenvalue_form_matches_sqrtm(rng, d, rank):
    for _ in range(3):
        a = Statistics(rng.standard_normal(d), _random_spd(rng, d, rank), 100)
        b = Statistics(rng.standard_normal(d), _random_spd(rng, d), 100)
        assert frechet_distance(a, b) == pytest.approx(_sqrtm_fid(a, b), rel=1e-8)


def test_cached_reference_gives_the_same_distance(rng):
    ref = Statistics(rng.standard_normal(20), _random_spd(rng, 20), 50)
    reference = FrechetReference(ref)
    for _ in range(3):
        other = Statistics(rng.standard_normal(20), _random_spd(rng, 20), 50)
        assert reference.distance(other) == pytest.approx(
            frechet_distance(ref, other), rel=1e-12
        )
        # symmetric in its arguments
        assert frechet_distance(other, ref) == pytest.approx(
            reference.distance(other), rel=1e-9
        )


def test_sqrtm_psd_squares_back(rng):
    sigma = _random_spd(rng, 16)
    root = sqrtm_psd(sigma)
    np.testing.assert_allclose(root @ root, sigma, atol=1e-12)
    np.testing.assert_allclose(root, root.T)


def test_non_finite_statistics_are_refused(rng):
    good = Statistics(np.zeros(3), np.eye(3), 10)
    bad = Statistics(np.array([0.0, np.nan, 0]), np.eye(3), 10)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(good, bad)


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_streaming_statistics_match_numpy(rng, batch):
    x = rng.standard_normal((300, 5)) * [1, 10, 100, 0.1, 3] + 50
    accumulator = StatsAccumulator(5)
    for start in range(0, len(x), batch):
        accumulator.update(x[start : start + batch])
    stats = accumulator.result()
    np.testing.assert_allclose(stats.mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), rtol=1e-10)
    assert stats.n == 300


def test_count_weighted_statistics_equal_repeated_set(rng):
    features = rng.standard_normal((7, 4)).astype(np.float32)
    counts = np.array([1, 5, 0, 3, 2, 1, 8])
    weighted = weighted_statistics(features, counts)
    explicit = statistics(np.repeat(features, counts, axis=0))
    np.testing.assert_allclose(weighted.mu, explicit.mu, rtol=1e-12)
    np.testing.assert_allclose(weighted.sigma, explicit.sigma, rtol=1e-10, atol=1e-14)
    assert weighted.n == explicit.n == counts.sum()


def test_statistics_file_round_trip(tmp_path, rng):
    stats = Statistics(rng.standard_normal(3), _random_spd(rng, 3), 42)
    stats.save(tmp_path / "s.npz")
    loaded = Statistics.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.n == 42
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary left
