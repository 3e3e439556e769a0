"""The data-selection literature's scores (selection.feature_scores), each against a
slow implementation written here from its definition, and the criteria that select
on them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import multivariate_normal
from sklearn.cluster import KMeans

from selection.criteria import SCORE_KIND, ScoreBook, select
from selection.datasets import ImageSet, pixels_sha256
from selection.feature_scores import (
    KMEANS_N_INIT,
    class_density_scores,
    k_center_order,
    knn_density_scores,
    prototype_distances,
)
from vae_sweep.errors import InputError

FEATURE_CRITERIA = ("class_density", "knn_density", "k_center",
                    "lowest_prototype", "highest_prototype")  # fmt: skip


def _set(labels: np.ndarray, rng) -> ImageSet:
    images = rng.integers(0, 256, (len(labels), 4, 4, 3), dtype=np.uint8)
    names = tuple(f"c{i}" for i in range(labels.max() + 1))
    return ImageSet(images, labels, names, pixels_sha256(images), "memory")


def _clustered(rng, n=60, d=5, classes=3) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) float32 features, a shifted blob per class, and (n,) labels."""
    labels = rng.permutation(np.arange(n) % classes)
    centers = rng.standard_normal((classes, d)) * 3
    return (centers[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


# --- the slow oracles ---------------------------------------------------------------


def slow_class_density(features, labels, reg_covar):
    features = np.asarray(features, dtype=np.float64)
    out = np.empty(len(features))
    for cls in np.unique(labels):
        x = features[labels == cls]
        mean = x.mean(axis=0)
        # the maximum-likelihood (ddof 0) covariance, as scikit-learn's EM M-step
        cov = (x - mean).T @ (x - mean) / len(x) + reg_covar * np.eye(x.shape[1])
        out[labels == cls] = multivariate_normal(mean, cov).logpdf(x)
    return out


def slow_knn(features, k):
    distances = cdist(features.astype(np.float64), features.astype(np.float64))
    np.fill_diagonal(distances, np.inf)  # self excluded by index, not by value
    return np.sort(distances, axis=1)[:, k - 1]


def slow_greedy(features, first, n):
    """The first n centers, picked one at a time from the whole distance table."""
    features = np.asarray(features, dtype=np.float64)
    chosen = [first]
    while len(chosen) < n:
        best, best_distance = None, -1.0
        for i in range(len(features)):  # ascending: a tie keeps the lowest index
            if i in chosen:
                continue
            distance = min(np.linalg.norm(features[i] - features[c]) for c in chosen)
            if distance > best_distance:
                best, best_distance = i, distance
        chosen.append(best)
    return chosen


def covering_radius(features, centers) -> float:
    return cdist(features, features[centers]).min(axis=1).max()


# --- the scores ---------------------------------------------------------------------


@pytest.mark.parametrize("n, d, classes", [(60, 4, 3), (40, 12, 4)])
def test_class_density_is_the_per_class_gaussian_log_likelihood(rng, n, d, classes):
    # (40, 12, 4): 10 images a class in 12 dimensions, a covariance singular but for
    # reg_covar, as Inception features' classes are at 1,000 images
    features, labels = _clustered(rng, n, d, classes)
    for reg in (1e-5, 1e-2):
        expected = slow_class_density(features, labels, reg)
        ours = class_density_scores(features, labels, covariance="reg", reg_covar=reg)
        assert ours.dtype == np.float64 and ours.shape == (n,)
        np.testing.assert_allclose(ours, expected, rtol=1e-6)


@pytest.mark.parametrize("n, d", [(60, 4), (30, 50)])  # more, and fewer, than dims
def test_class_density_on_a_shrunk_covariance_is_scikit_learns_oas(rng, n, d):
    """The default: each class's Gaussian on scikit-learn's OAS covariance, well
    conditioned where the class has fewer images than dimensions."""
    from scipy.stats import multivariate_normal
    from sklearn.covariance import OAS

    features = rng.standard_normal((2 * n, d)) @ rng.standard_normal((d, d))
    labels = np.repeat([3, 7], n)
    ours = class_density_scores(features, labels)
    for cls in (3, 7):
        members = features[labels == cls]
        fit = OAS().fit(members)
        expected = multivariate_normal(fit.location_, fit.covariance_).logpdf(members)
        np.testing.assert_allclose(ours[labels == cls], expected, rtol=1e-8)
    # and the scores spread: the shrunk Gaussian ranks the images of a class
    assert np.ptp(ours[labels == 3]) > 1.0


@pytest.mark.parametrize("chunk", [7, 1000])  # fewer rows than the pool, and more
@pytest.mark.parametrize("k", [1, 5])
def test_knn_density_is_the_kth_other_neighbour(rng, chunk, k):
    features = rng.standard_normal((30, 6)).astype(np.float32)
    features[11] = features[3]  # a duplicate: its neighbour at 0, itself not counted
    ours = knn_density_scores(features, k=k, chunk=chunk)
    np.testing.assert_allclose(ours, slow_knn(features, k), rtol=1e-12)
    if k == 1:
        assert ours[3] == ours[11] == 0.0
    with pytest.raises(ValueError, match="k = 30"):
        knn_density_scores(features, k=30)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_center_order_is_the_naive_greedy(rng, seed):
    features = rng.standard_normal((25, 4)).astype(np.float32)
    order = k_center_order(features, seed=seed)
    assert order.dtype == np.float64
    assert sorted(order.tolist()) == list(range(25))  # every image, once
    picks = np.argsort(order).tolist()
    assert picks == slow_greedy(features, picks[0], 25)
    assert np.array_equal(order, k_center_order(features, seed=seed))


def test_k_center_ties_go_to_the_lowest_index():
    # a 4 x 4 lattice: many equal distances, exactly so; duplicates at the end
    lattice = np.array([(i, j) for i in range(4) for j in range(4)], dtype=float)
    features = np.concatenate([lattice, lattice[[5, 0]]])  # 16, 17 repeat 5 and 0
    for seed in range(4):
        picks = np.argsort(k_center_order(features, seed=seed)).tolist()
        assert picks == slow_greedy(features, picks[0], len(features))
        # once everything is covered, all left are at 0: in index order
        assert picks[-2:] == [16, 17]


def test_k_center_first_center_is_seeded(rng):
    features = rng.standard_normal((50, 3))
    firsts = {int(np.argmin(k_center_order(features, seed=s))) for s in range(10)}
    assert len(firsts) > 3


def test_k_center_covers_the_pool_better_than_random_subsets(rng):
    # in 2-d the greedy's margin is wide (half the best of 200 random subsets' radius
    # at n = 40); in 5-d at n = 10, picking outliers first, it can lose to a lucky one
    features = rng.standard_normal((400, 2))
    order = k_center_order(features, seed=0)
    for n in (20, 40):
        greedy = covering_radius(features, np.flatnonzero(order < n))
        randoms = [covering_radius(features, rng.choice(400, n, replace=False))
                   for _ in range(20)]  # fmt: skip
        assert greedy < min(randoms)


def test_prototype_distances_are_to_the_nearest_fitted_centroid(rng):
    features, _ = _clustered(rng, 90, 6, 4)
    for seed, clusters in [(0, 4), (3, 7)]:
        kmeans = KMeans(n_clusters=clusters, random_state=seed, n_init=KMEANS_N_INIT)
        kmeans.fit(features.astype(np.float64))
        expected = cdist(features, kmeans.cluster_centers_).min(axis=1)
        ours = prototype_distances(features, clusters=clusters, seed=seed)
        np.testing.assert_allclose(ours, expected, rtol=1e-9)
        again = prototype_distances(features, clusters=clusters, seed=seed)
        assert np.array_equal(ours, again)


# --- the criteria -------------------------------------------------------------------


@pytest.fixture
def pool(rng):
    """An ImageSet of 60 images in 3 classes and an in-memory book of every kind of
    feature score on its (60, 5) features."""
    features, labels = _clustered(rng, 60, 5, 3)
    book = ScoreBook.in_memory({
        "class_density": class_density_scores(features, labels),
        "knn_density": knn_density_scores(features),
        "k_center": k_center_order(features, seed=0),
        "prototype": prototype_distances(features, clusters=3, seed=0),
    })  # fmt: skip
    return _set(labels, rng), book, features


def test_the_criteria_read_their_kinds():
    assert {name: SCORE_KIND[name] for name in FEATURE_CRITERIA} == {
        "class_density": "class_density",
        "knn_density": "knn_density",
        "k_center": "k_center",
        "lowest_prototype": "prototype",
        "highest_prototype": "prototype",
    }


@pytest.mark.parametrize("name", FEATURE_CRITERIA)
@pytest.mark.parametrize("n", [1, 7, 31])
def test_each_criterion_selects_n_sorted_deterministically(pool, name, n):
    train, book, _ = pool
    chosen = select(name, train, n, seed=3, scores=book)
    assert len(chosen.indices) == n and len(set(chosen.indices)) == n
    assert np.all(np.diff(chosen.indices) > 0)
    again = select(name, train, n, seed=3, scores=book)
    assert np.array_equal(chosen.indices, again.indices)
    assert np.array_equal(chosen.scores, book.get(SCORE_KIND[name]))


@pytest.mark.parametrize("name, kind, sign", [
    ("knn_density", "knn_density", 1), ("k_center", "k_center", 1),
    ("lowest_prototype", "prototype", 1), ("highest_prototype", "prototype", -1),
])  # fmt: skip
def test_score_criteria_keep_the_n_extreme(pool, name, kind, sign):
    train, book, _ = pool
    values = book.get(kind)
    for n in (5, 20):
        chosen = select(name, train, n, seed=0, scores=book).indices
        expected = np.argsort(sign * values, kind="stable")[:n]
        assert chosen.tolist() == sorted(expected.tolist())


def test_k_center_selection_is_the_greedy_prefix(pool):
    train, book, features = pool
    order = book.get("k_center")
    first = int(np.argmin(order))
    for n in (2, 9, 25):
        chosen = select("k_center", train, n, seed=5, scores=book).indices
        assert chosen.tolist() == sorted(slow_greedy(features, first, n))


@pytest.mark.parametrize("n", [9, 10, 11, 29])
def test_class_density_keeps_each_class_densest_in_equal_shares(pool, n):
    train, book, _ = pool
    values = book.get("class_density")
    for seed in range(4):
        chosen = select("class_density", train, n, seed=seed, scores=book).indices
        counts = np.bincount(train.labels[chosen], minlength=3)
        assert sorted(counts.tolist()) == sorted([n // 3 + 1] * (n % 3)
                                                 + [n // 3] * (3 - n % 3))  # fmt: skip
        # the remainder goes to the classes class_balanced gives it, seed for seed
        balanced = select("class_balanced", train, n, seed=seed).indices
        assert np.array_equal(counts, np.bincount(train.labels[balanced], minlength=3))
        for cls in range(3):
            members = np.flatnonzero(train.labels == cls)
            kept = np.intersect1d(members, chosen)
            expected = members[np.argsort(-values[members], kind="stable")]
            assert kept.tolist() == sorted(expected[: len(kept)].tolist())


def test_class_density_ties_break_by_index_and_the_remainder_by_seed(rng):
    labels = np.arange(12) % 3  # classes of 4
    train = _set(labels, rng)
    book = ScoreBook.in_memory({"class_density": np.zeros(12)})  # all tied
    chosen = select("class_density", train, 6, seed=0, scores=book).indices
    assert chosen.tolist() == [0, 1, 2, 3, 4, 5]  # each class's two lowest indices
    remainders = set()
    for seed in range(20):
        chosen = select("class_density", train, 4, seed=seed, scores=book).indices
        remainders.add(tuple(np.bincount(labels[chosen]).tolist()))
    assert remainders == {(2, 1, 1), (1, 2, 1), (1, 1, 2)}


def test_class_density_needs_labels_and_scores(rng):
    train = _set(np.arange(12) % 3, rng)
    unlabeled = ImageSet(train.images, np.full(12, -1), (), train.sha256, "flat")
    book = ScoreBook.in_memory({"class_density": np.zeros(12)})
    with pytest.raises(InputError, match="'class_density' needs class labels"):
        select("class_density", unlabeled, 5, scores=book)
    with pytest.raises(InputError, match="no score source"):
        select("class_density", train, 5)
    with pytest.raises(InputError, match="needs 4 images of class [12], which has 3"):
        lopsided = ImageSet(train.images, np.array([0] * 6 + [1] * 3 + [2] * 3),
                            train.classes, train.sha256, "memory")  # fmt: skip
        select("class_density", lopsided, 11, scores=book)
