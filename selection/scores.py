"""The Mahalanobis score source: x_train FID features against the x_test statistics.

Features come through the FID engine (so they share its cache with E1 and every other
use of x_train features); the distances are cached by the `ScoreBook`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from fid.engine import FIDEngine
from fid.stats import Statistics
from selection.criteria import mahalanobis_distances
from selection.datasets import ImageSet
from selection.files import content_key


def stats_fingerprint(stats: Statistics) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(stats.mu).tobytes())
    digest.update(np.ascontiguousarray(stats.sigma).tobytes())
    return digest.hexdigest()[:16]


def mahalanobis_source(
    train: ImageSet,
    engine: FIDEngine,
    reference: Statistics,
    *,
    ridge: float = 0.0,
) -> tuple[str, Callable[[], np.ndarray]]:
    """(cache key, compute) for `ScoreBook(providers={'mahalanobis': ...})`."""
    key = content_key(
        train=train.sha256,
        network=engine.extractor.key,
        reference=stats_fingerprint(reference),
        ridge=ridge,
    )

    def compute() -> np.ndarray:
        features = engine.features(
            np.asarray(train.images), sha256=train.sha256, desc="x_train features"
        )
        return mahalanobis_distances(
            features, reference.mu, reference.sigma, ridge=ridge
        )

    return key, compute
