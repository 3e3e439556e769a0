"""The scores of the Mahalanobis criteria (`lowest_mahalanobis`, `highest_mahalanobis`):
each training image's distance to the FID reference distribution, in the two spaces the
criterion can be read in. They live with the FID engine whose features and statistics
they use; `selection.criteria` only ranks them.

The thesis defines the criterion as the images "most representative of the FID
reference distribution" without saying in which space; both readings are offered,
and which one a result used is recorded with it (`mahalanobis_space`):

* `inception`: x_train's 2048-d FID features against the mean and covariance of
  x_test's, the distribution FID itself compares with. Features come from the caller
  (a FID engine or actor, whose feature cache E1 shares).
* `pixel`: x_train's 3072-d pixel vectors against x_test's pixel mean and covariance.

Distances use x_test's covariance as `selection.criteria.CovarianceEstimate` estimates
it (OAS shrinkage by default; the pseudo-inverse or a ridge as options); the
`ScoreBook` caches them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from fid.stats import Statistics, StatsAccumulator
from selection.criteria import (
    DEFAULT_COVARIANCE,
    CovarianceEstimate,
    mahalanobis_distances,
)
from selection.datasets import ImageSet
from vae_sweep.files import content_key


def stats_fingerprint(stats: Statistics) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(stats.mu).tobytes())
    digest.update(np.ascontiguousarray(stats.sigma).tobytes())
    return digest.hexdigest()[:16]


MAHALANOBIS_SPACES = ("inception", "pixel")
PIXEL_CHUNK = 2000  # images per block: 2000 x 3072 float64 = 49 MB


def mahalanobis_key(
    train_sha256: str,
    reference: Statistics,
    *,
    network: str,
    covariance: CovarianceEstimate,
) -> str:
    """The cache key of Inception-space Mahalanobis scores: all they depend on."""
    return content_key(
        train=train_sha256,
        network=network,
        reference=stats_fingerprint(reference),
        covariance=asdict(covariance),
    )


def pixel_key(
    train_sha256: str, test_sha256: str, *, covariance: CovarianceEstimate
) -> str:
    """The cache key of pixel-space Mahalanobis scores."""
    return content_key(train=train_sha256, test=test_sha256, space="pixel",
                       covariance=asdict(covariance))  # fmt: skip


def pixel_statistics(images: np.ndarray) -> Statistics:
    """Mean and covariance (N - 1) of (N, H, W, 3) uint8 images as pixel vectors,
    accumulated in float64 a block at a time."""
    flat = images.reshape(len(images), -1)  # a view: (N, 3072) uint8
    accumulator = StatsAccumulator(flat.shape[1])
    for start in range(0, len(flat), PIXEL_CHUNK):
        accumulator.update(flat[start : start + PIXEL_CHUNK])
    return accumulator.result()


def pixel_mahalanobis_scores(
    train_images: np.ndarray,
    test_images: np.ndarray,
    *,
    covariance: CovarianceEstimate = DEFAULT_COVARIANCE,
) -> np.ndarray:
    """Distance of each training image's pixel vector to x_test's pixel
    distribution: (N,) float64. Pixels stay in 0..255; the distance does not depend
    on their scale."""
    reference = pixel_statistics(test_images)
    flat = train_images.reshape(len(train_images), -1)
    return mahalanobis_distances(flat, reference.mu, reference.sigma, n=reference.n,
                                 covariance=covariance, chunk=PIXEL_CHUNK)  # fmt: skip


def mahalanobis_source(
    train: ImageSet,
    reference: Statistics,
    *,
    network: str,
    extract: Callable[[np.ndarray], np.ndarray],
    covariance: CovarianceEstimate = DEFAULT_COVARIANCE,
) -> tuple[str, Callable[[], np.ndarray]]:
    """(cache key, compute) for `ScoreBook(providers={'mahalanobis': ...})`.

    `extract` turns the x_train images into features of the network named `network`:
    a local FID engine, or the sweep's FID actor.
    """
    key = mahalanobis_key(train.sha256, reference, network=network,
                          covariance=covariance)  # fmt: skip

    def compute() -> np.ndarray:
        features = extract(np.asarray(train.images))
        return reference_distances(features, reference, covariance)

    return key, compute


def reference_distances(
    features: np.ndarray, reference: Statistics, covariance: CovarianceEstimate
) -> np.ndarray:
    """Each row's Mahalanobis distance to the reference statistics: (N,) float64."""
    return mahalanobis_distances(features, reference.mu, reference.sigma,
                                 n=reference.n, covariance=covariance)  # fmt: skip


def pixel_source(
    train: ImageSet,
    test: ImageSet,
    *,
    covariance: CovarianceEstimate = DEFAULT_COVARIANCE,
) -> tuple[str, Callable[[], np.ndarray]]:
    """(cache key, compute) for `ScoreBook(providers={'mahalanobis': ...})` in pixel
    space."""
    key = pixel_key(train.sha256, test.sha256, covariance=covariance)
    return key, lambda: pixel_mahalanobis_scores(train.images, test.images,
                                                 covariance=covariance)  # fmt: skip
