"""Training-subset selection criteria, a registry by name (DESIGN section 6).

`select(criterion, train, n, seed=..., scores=...)` returns the sorted indices of the
chosen `n` images and the per-image scores the choice was made on:

* `all`: the whole set (n must be its size).
* `random`: the n images with the lowest seeded uniform keys, i.e. a uniform subset.
* `class_balanced`: n / classes per class (the remainder to seeded random classes),
  random within each class.
* `lowest_recon` / `highest_recon`: per-image reconstruction error of a reference VAE
  trained on the whole set.
* `lowest_mahalanobis` / `highest_mahalanobis`: Mahalanobis distance of each image's FID
  features to the x_test feature distribution (the most / least "FID-typical" images).
* `class_density`: n / classes per class (the remainder as `class_balanced`), each
  class's densest by the log-likelihood under a Gaussian fitted to that class (DeVries,
  Drozdzal & Taylor 2020, "Instance Selection for GANs").
* `knn_density`: the n densest, by the lowest distance to the k-th nearest other image
  of the pool (the k-NN density of DeVries et al.'s `nn_dist`).
* `k_center`: the greedy k-center coreset, the n first picked (Sener & Savarese 2018,
  "A Core-Set Approach"): the subset that covers the pool, outliers early.
* `lowest_prototype` / `highest_prototype`: the n nearest to / farthest from their
  k-means centroid, the "easy" / "hard" images (Sorscher et al. 2022, "Beyond neural
  scaling laws").

These last criteria read scores of `selection.feature_scores` (kinds `class_density`,
`knn_density`, `k_center`, `prototype`); whoever provides them chooses the features.

Any criterion asked for the whole set returns the whole set, without computing scores:
such trials are the same trial (DESIGN section 6). Ties in a score break by index, so a
seed and a score vector fix the subset.

Mahalanobis distances measure against a covariance estimated from x_test's samples
(`CovarianceEstimate`). By default the OAS shrinkage estimate: x_test's 10,000 images
give a poorly conditioned 2,048-d (Inception) or 3,072-d (pixel) sample covariance,
whose near-singular inverse ranks images by their smallest-variance directions (in
pixels, the smoothest images come out "closest"). `pinv` keeps the sample covariance's
Moore-Penrose pseudo-inverse (eigenvalues below d * eps * the largest treated as zero,
the inverse whenever it exists, the textbook numbers); `ridge` adds ridge * mean(diag)
to its diagonal.

Scores that cost training or feature extraction come from a `ScoreBook`, which computes
each kind once and caches it on disk under a key naming everything it depends on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selection.datasets import ImageSet
from vae_sweep.errors import InputError
from vae_sweep.files import atomic_path, default_cache_dir


@dataclass(frozen=True)
class Selection:
    criterion: str
    indices: np.ndarray  # (n,) int64, ascending
    scores: np.ndarray | None  # (N,) float64 per image of the full set, or None


class ScoreBook:
    """Per-image scores by kind ('recon', 'mahalanobis', ...), computed once, cached.

    `providers` maps a kind to (key, compute): the key must change whenever the
    scores would (dataset hash, model and training options, feature network).
    """

    def __init__(
        self,
        providers: dict[str, tuple[str, Callable[[], np.ndarray]]],
        cache_dir: str | os.PathLike | None = None,
    ):
        self.providers = providers
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        self.root: Path | None = root / "scores"
        self._memory: dict[str, np.ndarray] = {}
        self.computed: list[str] = []  # kinds computed (not read) by this book

    @classmethod
    def in_memory(cls, scores: dict[str, np.ndarray]) -> ScoreBook:
        """Scores already computed (by a sweep's driver): held, never written."""
        book = cls({kind: (kind, lambda v=v: v) for kind, v in scores.items()})
        book.root = None
        return book

    def path(self, kind: str) -> Path:
        return self.root / f"{kind}-{self.providers[kind][0]}.npy"

    def cached(self, kind: str) -> np.ndarray | None:
        """The scores of `kind` from the disk cache, or None."""
        if self.root is None or not self.path(kind).is_file():
            return None
        return np.load(self.path(kind))

    def save(self, kind: str, scores: np.ndarray) -> None:
        """Write computed scores to the disk cache, atomically."""
        if self.root is not None:
            with atomic_path(self.path(kind), suffix=".npy") as tmp:
                np.save(tmp, np.asarray(scores, dtype=np.float64))

    def get(self, kind: str) -> np.ndarray:
        if kind not in self.providers:
            raise InputError(
                f"no {kind!r} scores available here (have: "
                f"{', '.join(sorted(self.providers)) or 'none'})"
            )
        if kind in self._memory:
            return self._memory[kind]
        scores = self.cached(kind)
        if scores is None:
            scores = np.asarray(self.providers[kind][1](), dtype=np.float64)
            self.save(kind, scores)
            if self.root is not None:
                self.computed.append(kind)
        self._memory[kind] = scores
        return scores


MAHALANOBIS_COVARIANCES = ("oas", "pinv", "ridge")  # the first is the default


@dataclass(frozen=True)
class CovarianceEstimate:
    """How the Mahalanobis criteria estimate the reference covariance from its
    samples' unbiased covariance: `oas`, the Oracle Approximating Shrinkage towards a
    scaled identity (well conditioned at any sample count); `pinv`, the sample
    covariance's pseudo-inverse; `ridge`, the sample covariance plus `ridge` times
    its mean variance on the diagonal."""

    method: str = MAHALANOBIS_COVARIANCES[0]
    ridge: float = 0.0

    def __post_init__(self):
        if self.method not in MAHALANOBIS_COVARIANCES:
            raise InputError(f"covariance {self.method!r}: choose from "
                             f"{', '.join(MAHALANOBIS_COVARIANCES)}")  # fmt: skip
        if (self.method == "ridge") != (self.ridge > 0):
            raise InputError(
                f"a ridge of {self.ridge} goes with the ridge covariance only, and "
                f"the ridge covariance needs one above 0 (covariance {self.method!r})"
            )


DEFAULT_COVARIANCE = CovarianceEstimate()


def oas_covariance(cov: np.ndarray, n: int) -> np.ndarray:
    """The OAS estimate (Chen, Wiesel, Eldar & Hero 2010, "Shrinkage algorithms for
    MMSE covariance estimation", eq. 23) from the unbiased covariance of n samples, as
    scikit-learn's `OAS` computes it from the samples: it shrinks the maximum-
    likelihood covariance S towards tr(S)/p I, by rho = min(1, (tr(S S) + tr(S)^2) /
    ((n + 1) (tr(S S) - tr(S)^2 / p))) (the paper's 2/p terms dropped, as there)."""
    cov = np.asarray(cov, dtype=np.float64)
    p = len(cov)
    sample = cov * (n - 1) / n  # the maximum-likelihood covariance
    trace, squares = np.trace(sample), np.sum(sample * sample)
    denominator = (n + 1) * (squares - trace**2 / p)
    rho = 1.0 if denominator == 0 else min((squares + trace**2) / denominator, 1.0)
    shrunk = (1.0 - rho) * sample
    shrunk[np.diag_indices(p)] += rho * trace / p
    return shrunk


def mahalanobis_distances(
    features: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    *,
    n: int | None = None,
    covariance: CovarianceEstimate = DEFAULT_COVARIANCE,
    chunk: int = 4096,
) -> np.ndarray:
    """sqrt((f - mean)^T C^+ (f - mean)) for each row f of (N, d) features, C the
    covariance `covariance` estimates from `cov`, the unbiased covariance of the `n`
    reference samples (OAS needs n)."""
    cov = np.asarray(cov, dtype=np.float64)
    d = len(cov)
    if covariance.method == "ridge":
        cov = cov + covariance.ridge * np.trace(cov) / d * np.eye(d)
    elif covariance.method == "oas":
        if n is None:
            raise ValueError("the OAS covariance needs the reference's sample count")
        cov = oas_covariance(cov, n)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    keep = eigenvalues > d * np.finfo(np.float64).eps * max(eigenvalues.max(), 0.0)
    # cov^+ = W W^T, so the distance is the norm of the whitened difference
    whiten = eigenvectors[:, keep] / np.sqrt(eigenvalues[keep])  # (d, rank)
    mean = np.asarray(mean, dtype=np.float64)
    out = np.empty(len(features))
    for start in range(0, len(features), chunk):
        diff = np.asarray(features[start : start + chunk], dtype=np.float64) - mean
        out[start : start + chunk] = np.linalg.norm(diff @ whiten, axis=1)
    return out


def _keys(n_total: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n_total)


def _lowest(scores: np.ndarray, n: int) -> np.ndarray:
    # lexsort: last key is primary; ties go to the lower index
    return np.lexsort((np.arange(len(scores)), scores))[:n]


def _all(train: ImageSet, n: int, seed: int, scores: ScoreBook | None):
    raise AssertionError("select() returns the whole set before calling this")


def _random(train: ImageSet, n: int, seed: int, scores: ScoreBook | None):
    keys = _keys(len(train), seed)
    return _lowest(keys, n), keys


def _class_quota(name: str, train: ImageSet, n: int, rng: np.random.Generator):
    """(labels (N,), classes (C,), quota (C,)): n // C images of each class present,
    the remainder one each to `rng`'s choice of classes."""
    labels = np.asarray(train.labels)
    if (labels < 0).any():
        raise InputError(
            f"criterion {name!r} needs class labels; {train.source} has none"
        )
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.full(len(classes), n // len(classes))
    quota[rng.choice(len(classes), n % len(classes), replace=False)] += 1
    short = classes[quota > counts]
    if len(short):
        raise InputError(
            f"criterion {name!r}: n={n} needs {quota.max()} images of class "
            f"{int(short[0])}, which has {int(counts[classes == short[0]][0])}"
        )
    return labels, classes, quota


def _lowest_per_class(labels, classes, quota, keys: np.ndarray) -> np.ndarray:
    """The `quota` images of each class with the lowest (N,) keys."""
    return np.concatenate([
        np.flatnonzero(labels == cls)[_lowest(keys[labels == cls], int(q))]
        for cls, q in zip(classes, quota, strict=True)
    ])  # fmt: skip


def _class_balanced(train: ImageSet, n: int, seed: int, scores: ScoreBook | None):
    rng = np.random.default_rng(seed)
    labels, classes, quota = _class_quota("class_balanced", train, n, rng)
    keys = rng.random(len(labels))
    return _lowest_per_class(labels, classes, quota, keys), keys


def _book_scores(kind: str, train: ImageSet, scores: ScoreBook | None) -> np.ndarray:
    if scores is None:
        raise InputError(f"{kind} scores are needed but no score source was given")
    values = scores.get(kind)
    if len(values) != len(train):
        raise InputError(
            f"{kind} scores cover {len(values)} images, the set has {len(train)}"
        )
    return values


def _by_score(kind: str, highest: bool):
    def choose(train: ImageSet, n: int, seed: int, scores: ScoreBook | None):
        values = _book_scores(kind, train, scores)
        return _lowest(-values if highest else values, n), values

    return choose


def _class_density(train: ImageSet, n: int, seed: int, scores: ScoreBook | None):
    # the labels first: their error is the cheaper one to reach
    rng = np.random.default_rng(seed)
    labels, classes, quota = _class_quota("class_density", train, n, rng)
    values = _book_scores("class_density", train, scores)
    return _lowest_per_class(labels, classes, quota, -values), values


CRITERIA = {
    "all": _all,
    "random": _random,
    "class_balanced": _class_balanced,
    "lowest_recon": _by_score("recon", highest=False),
    "highest_recon": _by_score("recon", highest=True),
    "lowest_mahalanobis": _by_score("mahalanobis", highest=False),
    "highest_mahalanobis": _by_score("mahalanobis", highest=True),
    "class_density": _class_density,
    "knn_density": _by_score("knn_density", highest=False),
    "k_center": _by_score("k_center", highest=False),
    "lowest_prototype": _by_score("prototype", highest=False),
    "highest_prototype": _by_score("prototype", highest=True),
}

# which ScoreBook kind a criterion reads, for callers deciding what to precompute
SCORE_KIND = {
    **{
        name: kind
        for kind in ("recon", "mahalanobis", "prototype")
        for name in (f"lowest_{kind}", f"highest_{kind}")
    },
    "class_density": "class_density",
    "knn_density": "knn_density",
    "k_center": "k_center",
}


def check_criterion(name: str) -> str:
    if name not in CRITERIA:
        raise InputError(
            f"unknown criterion {name!r}; choose one of: {', '.join(CRITERIA)}"
        )
    return name


def check_size(n: int, total: int, label: str = "n_train = ") -> int:
    """`label` names what the user wrote: a grid key ("n_train = ") or a flag
    ("--n ")."""
    if not 1 <= n <= total:
        raise InputError(
            f"{label}{n}: must be between 1 and the training set size ({total})"
        )
    return n


def select(
    criterion: str,
    train: ImageSet,
    n: int | None = None,
    *,
    seed: int = 0,
    scores: ScoreBook | None = None,
    label: str = "n_train = ",
) -> Selection:
    """The `n` images of `train` that `criterion` picks (all of them when n is None).
    `label` names `n` as the user wrote it, in errors (see check_size)."""
    check_criterion(criterion)
    n = check_size(len(train) if n is None else int(n), len(train), label)
    if criterion == "all" and n != len(train):
        raise InputError(f"{label}{n}: criterion 'all' takes the whole set of "
                         f"{len(train)} images")  # fmt: skip
    if n == len(train):
        return Selection(criterion, np.arange(n, dtype=np.int64), None)
    indices, values = CRITERIA[criterion](train, n, seed, scores)
    return Selection(
        criterion,
        np.sort(np.asarray(indices, dtype=np.int64)),
        np.asarray(values, dtype=np.float64),
    )
