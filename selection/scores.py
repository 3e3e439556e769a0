"""The Mahalanobis score source: x_train FID features against the x_test statistics.

Features come from the caller (a FID engine or actor, whose feature cache E1 and every
other use of x_train features share); the distances are cached by the `ScoreBook`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from fid.stats import Statistics
from selection.criteria import mahalanobis_distances
from selection.datasets import ImageSet
from selection.files import content_key


def stats_fingerprint(stats: Statistics) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(stats.mu).tobytes())
    digest.update(np.ascontiguousarray(stats.sigma).tobytes())
    return digest.hexdigest()[:16]


def mahalanobis_key(
    train_sha256: str, reference: Statistics, *, network: str, ridge: float
) -> str:
    """The cache key of Mahalanobis scores: everything they depend on."""
    return content_key(
        train=train_sha256,
        network=network,
        reference=stats_fingerprint(reference),
        ridge=ridge,
    )


def mahalanobis_source(
    train: ImageSet,
    reference: Statistics,
    *,
    network: str,
    extract: Callable[[np.ndarray], np.ndarray],
    ridge: float = 0.0,
) -> tuple[str, Callable[[], np.ndarray]]:
    """(cache key, compute) for `ScoreBook(providers={'mahalanobis': ...})`.

    `extract` turns the x_train images into features of the network named `network`:
    a local FID engine, or the sweep's FID actor.
    """
    key = mahalanobis_key(train.sha256, reference, network=network, ridge=ridge)

    def compute() -> np.ndarray:
        features = extract(np.asarray(train.images))
        return mahalanobis_distances(
            features, reference.mu, reference.sigma, ridge=ridge
        )

    return key, compute
