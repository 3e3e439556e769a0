"""Bootstrap intervals of one model's FID, KID and precision/recall/density/coverage
(fid.bootstrap) against the slow way: each resample built as an array, its FID from
scipy's sqrtm, its KID from a double loop over pairs, its fidelity from the prdc
package."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import sqrtm

from fid.bootstrap import (
    bootstrap_fidelity,
    bootstrap_fids,
    bootstrap_intervals,
    bootstrap_kids,
    percentile_interval,
    recentred_interval,
    resample_counts,
)
from fid.distance import FrechetReference
from fid.fidelity import knn_radii
from fid.stats import statistics


def _fid_by_sqrtm(a: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    mean, cov = a.mean(axis=0), np.cov(a, rowvar=False)
    root = sqrtm(sigma @ cov).real
    return float(((mean - mu) ** 2).sum() + np.trace(sigma + cov - 2 * root))


def _reference(rng, d: int) -> FrechetReference:
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return FrechetReference(statistics(rng.standard_normal((400, d)) @ mixing))


@pytest.mark.parametrize("n, d", [(12, 20), (60, 8)])  # fewer samples than dims, more
def test_each_resamples_fid_is_the_fid_of_that_resample(rng, n, d):
    reference = _reference(rng, d)
    features = rng.standard_normal((n, d)) + 0.2
    counts = resample_counts(n, 4, seed=3)
    assert (counts.sum(axis=1) == n).all()
    expected = [_fid_by_sqrtm(np.repeat(features, w, axis=0), reference.stats.mu,
                              reference.stats.sigma) for w in counts]  # fmt: skip
    np.testing.assert_allclose(bootstrap_fids(features, reference, counts), expected,
                               rtol=1e-7)  # fmt: skip


def _kernel(a, b):
    return (a @ b / len(a) + 1.0) ** 3


def _mmd2_by_loop(x: np.ndarray, y: np.ndarray) -> float:
    m, k = len(x), len(y)
    xx = sum(_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(_kernel(y[i], y[j]) for i in range(k) for j in range(k) if i != j)
    xy = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(k))
    return xx / (m * (m - 1)) + yy / (k * (k - 1)) - 2 * xy / (m * k)


def test_each_resamples_kid_is_the_mean_mmd_over_its_reference_subsets(rng):
    features = rng.standard_normal((9, 4))
    reference = rng.standard_normal((30, 4)) + 0.3
    counts = resample_counts(9, 2, seed=5)
    kids = bootstrap_kids(features, reference, counts, seed=7, subsets=3,
                          subset_size=6)  # fmt: skip
    # the same draws, in the same order: the reference subsets, then per resample
    # and subset the resample's members taken
    draws = np.random.default_rng(7)
    pools = [draws.choice(30, 6, replace=False) for _ in range(3)]
    for b, w in enumerate(counts):
        resample = np.repeat(np.arange(9), w)
        values = []
        for pool in pools:
            picked = resample[draws.permutation(9)[:6]]
            values.append(_mmd2_by_loop(features[picked], reference[pool]))
        assert kids[b] == pytest.approx(np.mean(values), rel=1e-9)


def test_intervals_are_percentiles_and_seeded(rng):
    assert percentile_interval(np.arange(101.0)).low == pytest.approx(2.5)
    assert percentile_interval(np.arange(101.0)).high == pytest.approx(97.5)
    reference = _reference(rng, 6)
    reference_features = rng.standard_normal((200, 6))
    features = rng.standard_normal((50, 6)) + 0.5
    first = bootstrap_intervals(features, reference, reference_features,
                                resamples=20, seed=1)  # fmt: skip
    again = bootstrap_intervals(features, reference, reference_features,
                                resamples=20, seed=1)  # fmt: skip
    assert first == again and set(first) == {"fid_ci_low", "fid_ci_high",
                                             "kid_ci_low", "kid_ci_high"}
    assert first["fid_ci_low"] < first["fid_ci_high"]
    assert first["kid_ci_low"] < first["kid_ci_high"]
    # more samples of the same model: a narrower interval
    many = rng.standard_normal((800, 6)) + 0.5
    wide = first["fid_ci_high"] - first["fid_ci_low"]
    narrow = bootstrap_intervals(many, reference, None, resamples=20, seed=1)
    assert narrow["fid_ci_high"] - narrow["fid_ci_low"] < wide / 2
    assert "kid_ci_low" not in narrow  # no reference features: no KID interval


def test_each_resamples_fidelity_is_prdc_on_that_resample(rng):
    """The prdc package on each resample built as an array: precision, density and
    coverage with the copies (weights), recall on the distinct samples drawn (a copy
    at distance 0 would make a generated ball empty)."""
    prdc = pytest.importorskip("prdc")
    real = rng.standard_normal((150, 5))
    fake = rng.standard_normal((40, 5)) * 1.2 + 0.3
    counts = resample_counts(len(fake), 6, seed=3)
    values = bootstrap_fidelity(real, fake, counts)
    for b, w in enumerate(counts):
        copies = np.repeat(fake, w, axis=0)
        distinct = fake[w > 0]
        pr = prdc.compute_prdc(real, copies, nearest_k=3)
        dc = prdc.compute_prdc(real, copies, nearest_k=5)
        assert values["precision"][b] == pytest.approx(pr["precision"], abs=1e-12)
        assert values["density"][b] == pytest.approx(dc["density"], abs=1e-12)
        assert values["coverage"][b] == pytest.approx(dc["coverage"], abs=1e-12)
        recall = prdc.compute_prdc(real, distinct, nearest_k=3)["recall"]
        assert values["recall"][b] == pytest.approx(recall, abs=1e-12)
    # the intervals: percentiles of these, beside FID's, from the same resamples
    reference = FrechetReference(statistics(real))
    radii = (knn_radii(real, 3), knn_radii(real, 5))
    out = bootstrap_intervals(fake, reference, real, resamples=6, seed=3, kid=False,
                              fidelity_radii=radii)  # fmt: skip
    assert "kid_ci_low" not in out
    for name in ("precision", "recall", "density", "coverage"):
        expected = percentile_interval(values[name])
        assert (out[f"{name}_ci_low"], out[f"{name}_ci_high"]) == (
            expected.low, expected.high)  # fmt: skip


def test_a_recentred_interval_is_the_percentiles_less_the_resamples_bias():
    values = np.arange(101.0)  # mean 50; percentiles 2.5 and 97.5
    by_hand = recentred_interval(values, point=40.0)  # bias 10
    assert (by_hand.low, by_hand.high) == pytest.approx((-7.5, 87.5))
    clipped = recentred_interval(values, point=40.0, bounds=(0.0, 80.0))
    assert (clipped.low, clipped.high) == (0.0, 80.0)


def test_a_models_fid_interval_holds_its_fid_once_recentred(rng):
    """Duplicates in a resample shrink its distinct samples and raise its FID: the
    plain percentile interval of a model's resampled FIDs lies above the model's
    FID; re-centred on that FID (each resample's FID by scipy's sqrtm, the bias
    their mean less it) it holds it."""
    d, n = 32, 40  # as many samples as dimensions, as 1,000 are beside Inception's
    reference = _reference(rng, d)
    features = rng.standard_normal((n, d)) * 1.1 + 0.3
    point = _fid_by_sqrtm(features, reference.stats.mu, reference.stats.sigma)
    counts = resample_counts(n, 200, seed=2)
    slow = np.array([_fid_by_sqrtm(np.repeat(features, w, axis=0), reference.stats.mu,
                                   reference.stats.sigma) for w in counts])  # fmt: skip
    plain = np.percentile(slow, [2.5, 97.5])
    assert plain[0] > point  # the bias this corrects, seen the slow way
    out = bootstrap_intervals(features, reference, None, resamples=200, seed=2,
                              points={"fid": point})  # fmt: skip
    expected = np.clip(plain - (slow.mean() - point), 0, None)
    got = (out["fid_ci_low"], out["fid_ci_high"])
    assert got == pytest.approx(tuple(expected), rel=1e-7)
    assert out["fid_ci_low"] < point < out["fid_ci_high"]
    # without the score: the plain percentiles, as before
    plain_out = bootstrap_intervals(features, reference, None, resamples=200, seed=2)
    assert (plain_out["fid_ci_low"], plain_out["fid_ci_high"]) == pytest.approx(
        tuple(plain), rel=1e-7)  # fmt: skip
