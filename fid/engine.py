"""The FID pipeline as one object: images -> features -> statistics -> distance, cached.

The command line, the Ray actor and the experiments all go through `FIDEngine`, so they
share one cache and give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fid.cache import FIDCache, cached_features, cached_stats
from fid.distance import FrechetReference
from fid.features import (
    FeatureExtractor,
    extract_features,
    iter_batches,
    iter_features,
    preferred_batch,
)
from fid.stats import Statistics, StatsAccumulator


class FIDEngine:
    def __init__(
        self,
        extractor: FeatureExtractor,
        *,
        cache: FIDCache | None = None,
        batch_size: int | None = None,
        progress: bool = True,
    ):
        self.extractor = extractor
        self.cache = cache
        # None: the extractor's preferred batch for its device
        self.batch_size = batch_size or preferred_batch(extractor)
        self.progress = progress

    def _cached(self, cache: bool) -> FIDCache | None:
        return self.cache if cache else None

    def features(
        self,
        images: np.ndarray,
        *,
        sha256: str | None = None,
        cache: bool = True,
        desc: str = "features",
    ) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, d) float32; cached by pixel hash when `cache`."""
        return cached_features(self._cached(cache), self.extractor.key, images,
                               self._extract(desc), sha256=sha256)  # fmt: skip

    def stats(
        self,
        images: np.ndarray,
        *,
        sha256: str | None = None,
        cache: bool = True,
        desc: str = "features",
    ) -> Statistics:
        """Statistics of a set of images; with `cache`, read from or written to disk.

        Generated samples are seen once, so callers pass cache=False for them.
        """

        def stream(images: np.ndarray) -> Statistics:
            batches = iter_batches(images, self.batch_size)
            return self.stream_stats(batches, total=len(images), desc=desc)

        return cached_stats(self._cached(cache), self.extractor.key, images,
                            extract=self._extract(desc), stream=stream,
                            sha256=sha256)  # fmt: skip

    def _extract(self, desc: str):
        return lambda images: extract_features(
            images,
            self.extractor,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=desc,
        )

    def stream_stats(
        self,
        batches: Iterable[np.ndarray],
        *,
        total: int | None = None,
        desc: str = "features",
    ) -> Statistics:
        """Statistics of images arriving batch by batch, never all held at once."""
        accumulator = StatsAccumulator(self.extractor.dim)
        for features in iter_features(
            batches, self.extractor, total=total, progress=self.progress, desc=desc
        ):
            accumulator.update(features)
        return accumulator.result()

    def reference(
        self, images: np.ndarray, *, sha256: str | None = None
    ) -> FrechetReference:
        return FrechetReference(self.stats(images, sha256=sha256, desc="reference"))

    def fid(
        self, images: np.ndarray, reference: FrechetReference, *, cache: bool = False
    ) -> float:
        return reference.distance(self.stats(images, cache=cache))
