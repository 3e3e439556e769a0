"""Per-image scores from the data-selection literature, as pure functions of (N, d)
features (Inception features or flattened pixels: the caller decides) and, where a
criterion needs them, (N,) integer labels. The criteria in `selection.criteria` read
them from a `ScoreBook`:

* `class_density_scores`: log-likelihood under a Gaussian fitted to the image's own
  class (DeVries, Drozdzal & Taylor 2020, "Instance Selection for GANs").
* `knn_density_scores`: distance to the k-th nearest other image (lower = denser).
* `k_center_order`: the step at which the greedy k-center coreset picks each image
  (Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks: A
  Core-Set Approach").
* `prototype_distances`: distance to the nearest k-means centroid (Sorscher et al.
  2022, "Beyond neural scaling laws"; low = prototypical, high = atypical).

All compute in float64, whatever the features' dtype; N may be 50,000, so nothing
holds an N x N matrix.
"""

from __future__ import annotations

import numpy as np
import torch

from selection.criteria import oas_covariance

# k-means restarts, the best (lowest inertia) kept: scikit-learn's long-standing
# default before 1.4 made it 1 for k-means++. One restart on 2,048-d features lands
# in a visibly worse local optimum now and then, which would move the prototype
# ranking with the seed for no reason of the data's; ten cost seconds on 10,000
# images.
KMEANS_N_INIT = 10


def _float64(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {features.shape}")
    return features


def class_density_scores(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    covariance: str = "oas",
    reg_covar: float = 1e-5,
) -> np.ndarray:
    """(N,) log-likelihood of each of the (N, d) features under a full-covariance
    Gaussian fitted to the features of its own class, per the (N,) labels. Higher =
    denser.

    `covariance="reg"` is DeVries et al.'s `GaussianModel` as their code has it: the
    maximum-likelihood covariance with `reg_covar` added to its diagonal. With fewer
    images in a class than dimensions (1,000 CIFAR images of a class against 2,048
    Inception features) that covariance is singular but for `reg_covar`, and the
    scores barely separate the images (all at nearly one distance). The default,
    `oas`, shrinks each class's covariance as the Mahalanobis criteria do
    (selection.criteria.oas_covariance, scikit-learn's OAS), which keeps it well
    conditioned at any class size: a deviation from their code, recorded here.
    """
    features = _float64(features)
    labels = np.asarray(labels)
    if labels.shape != (len(features),):
        raise ValueError(f"labels {labels.shape} do not match features "
                         f"{features.shape}")  # fmt: skip
    if covariance not in ("oas", "reg"):
        raise ValueError(f"covariance {covariance!r}: oas or reg")
    scores = np.empty(len(features))
    for cls in np.unique(labels):
        members = labels == cls
        if covariance == "oas":
            scores[members] = _oas_log_likelihood(features[members])
            continue
        # one component: k-means' initialisation puts every image in it, so the
        # fit is the closed-form mean and covariance and random_state changes nothing
        from sklearn.mixture import GaussianMixture  # noqa: PLC0415 (a second)

        gaussian = GaussianMixture(
            n_components=1, covariance_type="full", reg_covar=reg_covar,
            random_state=0,
        ).fit(features[members])  # fmt: skip
        scores[members] = gaussian.score_samples(features[members])
    return scores


def _oas_log_likelihood(x: np.ndarray) -> np.ndarray:
    """Each row's log-density under N(mean, OAS-shrunk covariance) of the rows."""
    n, d = x.shape
    cov = oas_covariance(np.cov(x, rowvar=False), n)
    lower = np.linalg.cholesky(cov)
    z = np.linalg.solve(lower, (x - x.mean(axis=0)).T)  # (d, n) whitened
    log_det = 2.0 * np.log(np.diag(lower)).sum()
    return -0.5 * (np.sum(z * z, axis=0) + log_det + d * np.log(2 * np.pi))


def knn_density_scores(
    features: np.ndarray, *, k: int = 5, chunk: int = 512
) -> np.ndarray:
    """(N,) Euclidean distance of each of the (N, d) features to its k-th nearest
    other image of the pool (itself excluded by index, so a duplicate counts as a
    neighbour at 0). Lower = denser.

    k = 5 as DeVries et al.'s `nn_dist` and Kynkäänniemi et al.'s precision/recall.
    Rows go `chunk` at a time against the whole pool: a (chunk, N) block, never
    N x N. The block's squared distances come from |a|^2 - 2 a.b + |b|^2 (a matrix
    product); they only pick the k nearest, whose distances are then taken straight
    from the differences, so the result carries no cancellation error.
    """
    features = _float64(features)
    n = len(features)
    if not 1 <= k < n:
        raise ValueError(f"k = {k}: needs 1 <= k < the number of images ({n})")
    squares = np.einsum("ij,ij->i", features, features)
    out = np.empty(n)
    for start in range(0, n, chunk):
        rows = features[start : start + chunk]  # (c, d)
        block = squares[start : start + chunk, None] - 2 * rows @ features.T
        block += squares[None, :]  # (c, N)
        block[np.arange(len(rows)), np.arange(start, start + len(rows))] = np.inf
        nearest = np.argpartition(block, k - 1, axis=1)[:, :k]  # (c, k), unordered
        exact = np.linalg.norm(features[nearest] - rows[:, None, :], axis=2)
        out[start : start + chunk] = exact.max(axis=1)
    return out


def k_center_order(features: np.ndarray, *, seed: int) -> np.ndarray:
    """(N,) float64: the step (0, 1, ..., N - 1) at which the greedy k-center coreset
    picks each of the (N, d) features, so the n lowest are the greedy n-center.

    As google/active-learning's kcenter_greedy: the first center a seeded uniform
    draw, then each step the image farthest (Euclidean) from every center so far;
    ties go to the lowest index. Holds an (N,) running minimum and one (N,) distance
    row: N rows of N x d work in all (minutes for N = 10,000 at d = 2,048). The row
    is computed from the differences (not |a|^2 - 2 a.b + |b|^2), so an image equal
    to a center is at exactly 0 and equal images tie exactly.
    """
    x = torch.from_numpy(_float64(features))
    n = len(x)
    order = np.empty(n)
    current = int(np.random.default_rng(seed).integers(n))
    nearest = torch.full((n,), torch.inf, dtype=torch.float64)
    for step in range(n):
        order[current] = step
        if step == n - 1:
            break
        row = torch.cdist(
            x, x[current : current + 1], compute_mode="donot_use_mm_for_euclid_dist"
        )[:, 0]  # (N,)
        torch.minimum(nearest, row, out=nearest)
        # below every distance, so a center (or its duplicate, also at 0) already
        # picked is never picked again; argmax returns the first maximum
        nearest[current] = -1.0
        current = int(torch.argmax(nearest))
    return order


def prototype_distances(
    features: np.ndarray, *, clusters: int = 10, seed: int
) -> np.ndarray:
    """(N,) Euclidean distance of each of the (N, d) features to the nearest centroid
    of a seeded k-means (`clusters` centroids, KMEANS_N_INIT restarts). Low =
    prototypical ("easy"), high = atypical ("hard").

    Sorscher et al. cluster self-supervised embeddings with k about the number of
    classes; 10 is CIFAR-10's. Euclidean, not their cosine: the caller's features
    decide the geometry.
    """
    features = _float64(features)
    from sklearn.cluster import KMeans  # noqa: PLC0415 (a second to import)

    kmeans = KMeans(n_clusters=clusters, random_state=seed, n_init=KMEANS_N_INIT)
    return kmeans.fit(features).transform(features).min(axis=1)


SELECTION_SPACES = ("inception", "pixel")  # the first is the default
FEATURE_KINDS = ("class_density", "knn_density", "k_center", "prototype")
SEEDED_KINDS = ("k_center", "prototype")  # their scores depend on the trial's seed


def pixel_features(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 images as (N, H * W * 3) float32 vectors in [0, 1]."""
    return np.asarray(images).reshape(len(images), -1).astype(np.float32) / 255.0


def feature_scores(kind: str, features: np.ndarray, labels: np.ndarray, *,
                   seed: int = 0) -> np.ndarray:  # fmt: skip
    """The (N,) scores of a ScoreBook `kind` (FEATURE_KINDS) of (N, d) features."""
    if kind == "class_density":
        return class_density_scores(features, labels)
    if kind == "knn_density":
        return knn_density_scores(features)
    if kind == "k_center":
        return k_center_order(features, seed=seed)
    if kind == "prototype":
        return prototype_distances(features, seed=seed)
    raise ValueError(f"no feature scores of kind {kind!r}: {', '.join(FEATURE_KINDS)}")

