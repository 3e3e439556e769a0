"""Selection criteria: determinism, each rule, Mahalanobis against scipy, the cache."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from selection.criteria import (
    CRITERIA,
    CovarianceEstimate,
    ScoreBook,
    mahalanobis_distances,
    oas_covariance,
    select,
)
from selection.datasets import ImageSet, pixels_sha256
from vae_sweep.errors import InputError

PINV = CovarianceEstimate("pinv")


def _set(rng, n=40, classes=4) -> ImageSet:
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % classes
    names = tuple(f"c{i}" for i in range(classes))
    return ImageSet(images, labels, names, pixels_sha256(images), "memory")


def _book(scores: dict[str, np.ndarray], tmp_path) -> ScoreBook:
    providers = {k: (f"test-{k}", lambda v=v: v) for k, v in scores.items()}
    return ScoreBook(providers, cache_dir=tmp_path)


def test_random_is_seeded_sorted_and_uniform(rng):
    train = _set(rng)
    a = select("random", train, 10, seed=1)
    assert np.array_equal(a.indices, select("random", train, 10, seed=1).indices)
    assert not np.array_equal(a.indices, select("random", train, 10, seed=2).indices)
    assert np.all(np.diff(a.indices) > 0) and len(a.indices) == 10
    # the chosen are exactly the ten lowest seeded keys
    assert set(a.indices) == set(np.argsort(a.scores)[:10])
    # every image equally likely: inclusion frequency over many seeds
    counts = np.zeros(len(train))
    for seed in range(2000):
        counts[select("random", train, 10, seed=seed).indices] += 1
    assert np.allclose(counts / 2000, 10 / 40, atol=0.05)


def test_class_balanced_quotas(rng):
    train = _set(rng, n=40, classes=4)
    chosen = select("class_balanced", train, 10, seed=0)
    per_class = np.bincount(train.labels[chosen.indices], minlength=4)
    assert sorted(per_class.tolist()) == [2, 2, 3, 3]  # 10 = 4 * 2 + 2 extra
    with pytest.raises(InputError, match="needs class labels"):
        unlabeled = ImageSet(train.images, np.full(40, -1), (), train.sha256, "flat")
        select("class_balanced", unlabeled, 10)
    lopsided = ImageSet(
        train.images,
        (np.arange(40) >= 30).astype(int),
        ("a", "b"),
        train.sha256,
        "memory",
    )  # 30 of class 0, 10 of class 1
    with pytest.raises(InputError, match="needs 15 images of class 1, which has 10"):
        select("class_balanced", lopsided, 30)


@pytest.mark.parametrize("kind", ["recon", "mahalanobis"])
def test_lowest_and_highest_by_score_break_ties_by_index(rng, tmp_path, kind):
    train = _set(rng, n=6)
    scores = np.array([0.5, 0.1, 0.9, 0.1, 0.7, 0.3])
    book = _book({kind: scores}, tmp_path)
    low = select(f"lowest_{kind}", train, 3, scores=book)
    high = select(f"highest_{kind}", train, 3, scores=book)
    assert low.indices.tolist() == [1, 3, 5]
    assert high.indices.tolist() == [0, 2, 4]
    assert np.array_equal(low.scores, scores)
    tie = select(f"lowest_{kind}", train, 1, scores=book)
    assert tie.indices.tolist() == [1]  # 1 and 3 tie; the lower index wins


def test_whole_set_is_the_same_trial_for_every_criterion(rng):
    train = _set(rng, n=12)
    for name in CRITERIA:
        chosen = select(name, train, 12)  # no scores needed, none computed
        assert chosen.indices.tolist() == list(range(12)) and chosen.scores is None


def test_bad_requests_list_the_choices(rng):
    train = _set(rng, n=12)
    with pytest.raises(InputError, match="choose one of: all, random, class_balanced"):
        select("nearest", train, 5)
    with pytest.raises(
        InputError, match="n_train = 13: must be between 1 and .* \\(12\\)"
    ):
        select("random", train, 13)
    with pytest.raises(InputError, match="'all' takes the whole set"):
        select("all", train, 5)
    with pytest.raises(InputError, match="no score source"):
        select("lowest_recon", train, 5)


def test_mahalanobis_matches_scipy_on_full_rank_data(rng):
    reference = rng.standard_normal((50, 5)) @ rng.standard_normal((5, 5))
    mean, cov = reference.mean(axis=0), np.cov(reference, rowvar=False)
    features = rng.standard_normal((7, 5)) * 2
    inverse = np.linalg.inv(cov)
    expected = [mahalanobis(f, mean, inverse) for f in features]
    np.testing.assert_allclose(
        mahalanobis_distances(features, mean, cov, covariance=PINV), expected,
        rtol=1e-9,
    )  # fmt: skip


def test_mahalanobis_pseudo_inverse_on_rank_deficient_covariance(rng):
    # 3 samples in 5 dims: a rank-2 covariance; the pseudo-inverse skips its null space
    reference = rng.standard_normal((3, 5))
    mean, cov = reference.mean(axis=0), np.cov(reference, rowvar=False)
    features = rng.standard_normal((4, 5))
    pinv = np.linalg.pinv(cov, hermitian=True)
    expected = [mahalanobis(f, mean, pinv) for f in features]
    np.testing.assert_allclose(
        mahalanobis_distances(features, mean, cov, covariance=PINV), expected,
        rtol=1e-7,
    )  # fmt: skip


def test_mahalanobis_ridge_adds_mean_variance_to_the_diagonal(rng):
    reference = rng.standard_normal((30, 4))
    mean, cov = reference.mean(axis=0), np.cov(reference, rowvar=False)
    features = rng.standard_normal((3, 4))
    ridged = cov + 0.1 * np.trace(cov) / 4 * np.eye(4)
    expected = [mahalanobis(f, mean, np.linalg.inv(ridged)) for f in features]
    ridge = CovarianceEstimate("ridge", 0.1)
    np.testing.assert_allclose(
        mahalanobis_distances(features, mean, cov, covariance=ridge), expected,
        rtol=1e-9,
    )  # fmt: skip


@pytest.mark.parametrize("n, d", [(40, 6), (8, 20), (3000, 300)])
def test_oas_from_the_unbiased_covariance_is_scikit_learns_oas(rng, n, d):
    """From the statistics alone (the mean, the N-1 covariance and N), the shrunk
    covariance scikit-learn's OAS computes from the samples: fewer samples than
    dimensions, and many, alike."""
    from sklearn.covariance import OAS

    samples = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    expected = OAS().fit(samples).covariance_
    ours = oas_covariance(np.cov(samples, rowvar=False), n)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_mahalanobis_oas_is_the_default_and_matches_scipy_on_the_shrunk_inverse(rng):
    from sklearn.covariance import OAS

    reference = rng.standard_normal((12, 30))  # a rank-11 sample covariance
    mean, cov = reference.mean(axis=0), np.cov(reference, rowvar=False)
    features = rng.standard_normal((5, 30))
    precision = np.linalg.inv(OAS().fit(reference).covariance_)
    expected = [mahalanobis(f, mean, precision) for f in features]
    np.testing.assert_allclose(mahalanobis_distances(features, mean, cov, n=12),
                               expected, rtol=1e-8)  # fmt: skip
    with pytest.raises(ValueError, match="sample count"):
        mahalanobis_distances(features, mean, cov)


@pytest.mark.parametrize("method, ridge", [("oas", 0.1), ("pinv", 0.5), ("ridge", 0)])
def test_a_ridge_goes_with_the_ridge_covariance_only(method, ridge):
    with pytest.raises(InputError, match="ridge"):
        CovarianceEstimate(method, ridge)


def test_score_book_computes_once_and_caches_on_disk(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.array([3.0, 1.0, 2.0])

    book = ScoreBook({"recon": ("key-a", compute)}, cache_dir=tmp_path)
    first = book.get("recon")
    assert np.array_equal(book.get("recon"), first) and len(calls) == 1
    again = ScoreBook({"recon": ("key-a", compute)}, cache_dir=tmp_path)
    assert np.array_equal(again.get("recon"), first) and len(calls) == 1
    assert again.computed == [] and book.computed == ["recon"]
    other_key = ScoreBook({"recon": ("key-b", compute)}, cache_dir=tmp_path)
    other_key.get("recon")
    assert len(calls) == 2
    with pytest.raises(InputError, match="no 'mahalanobis' scores"):
        book.get("mahalanobis")


def test_pixel_space_mahalanobis_matches_scipy(rng):
    from scipy.spatial.distance import mahalanobis

    from fid.mahalanobis_scores import pixel_mahalanobis_scores

    # 4x4 RGB images: 48-d pixel vectors; 200 test images give a full-rank covariance
    test = rng.integers(0, 256, (200, 4, 4, 3), dtype=np.uint8)
    train = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    flat = test.reshape(200, -1).astype(np.float64)
    inverse = np.linalg.inv(np.cov(flat, rowvar=False))
    expected = [mahalanobis(x, flat.mean(axis=0), inverse)
                for x in train.reshape(7, -1).astype(np.float64)]  # fmt: skip
    np.testing.assert_allclose(pixel_mahalanobis_scores(train, test, covariance=PINV),
                               expected, rtol=1e-8)  # fmt: skip
    # the scale of the pixels does not matter: scipy on [0, 1] pixels agrees
    scaled = flat / 255
    inverse = np.linalg.inv(np.cov(scaled, rowvar=False))
    expected = [mahalanobis(x / 255, scaled.mean(axis=0), inverse)
                for x in train.reshape(7, -1).astype(np.float64)]  # fmt: skip
    np.testing.assert_allclose(pixel_mahalanobis_scores(train, test, covariance=PINV),
                               expected, rtol=1e-8)  # fmt: skip
