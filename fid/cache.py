"""On-disk cache of features and statistics.

Keyed by (feature network + preprocessing version, sha256 of the uint8 pixels): the same
pixels through the same pipeline always give the same numbers. Writes are atomic, so a
killed process never leaves a partial entry, and concurrent writers are harmless.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fid.stats import Statistics, statistics
from selection.datasets import pixels_sha256
from vae_sweep.files import atomic_path, default_cache_dir

# (N, H, W, 3) uint8 images -> (N, d) float32 features, or -> their Statistics
Extract = Callable[[np.ndarray], np.ndarray]
Stream = Callable[[np.ndarray], Statistics]


class FIDCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_cache_dir() / "fid"

    @classmethod
    def in_folder(cls, cache_dir: str | os.PathLike | None) -> FIDCache:
        """The FID part of a project cache folder (None: the default one)."""
        return cls(Path(cache_dir) / "fid" if cache_dir else None)

    def _path(self, extractor_key: str, data_sha256: str, kind: str) -> Path:
        return self.root / extractor_key / f"{data_sha256[:40]}.{kind}"

    def load_features(self, extractor_key: str, data_sha256: str) -> np.ndarray | None:
        path = self._path(extractor_key, data_sha256, "features.npy")
        return np.load(path) if path.is_file() else None

    def save_features(
        self, extractor_key: str, data_sha256: str, features: np.ndarray
    ) -> None:
        with atomic_path(
            self._path(extractor_key, data_sha256, "features.npy"), suffix=".npy"
        ) as tmp:
            np.save(tmp, features)

    def load_stats(self, extractor_key: str, data_sha256: str) -> Statistics | None:
        path = self._path(extractor_key, data_sha256, "stats.npz")
        return Statistics.load(path) if path.is_file() else None

    def save_stats(
        self, extractor_key: str, data_sha256: str, stats: Statistics
    ) -> None:
        stats.save(self._path(extractor_key, data_sha256, "stats.npz"))


def cached_features(
    cache: FIDCache | None,
    key: str,
    images: np.ndarray,
    extract: Extract,
    *,
    sha256: str | None = None,
) -> np.ndarray:
    """The features of `images` through the network `key`: read from `cache`, or
    extracted and written there (`cache` None: extracted, nothing read or kept)."""
    if cache is None:
        return extract(images)
    sha256 = sha256 or pixels_sha256(images)
    found = cache.load_features(key, sha256)
    if found is not None and len(found) == len(images):
        return found
    features = extract(images)
    cache.save_features(key, sha256, features)
    return features


def cached_stats(
    cache: FIDCache | None,
    key: str,
    images: np.ndarray,
    *,
    extract: Extract,
    stream: Stream,
    sha256: str | None = None,
) -> Statistics:
    """The statistics of `images`: read from `cache`, or computed from their (cached)
    features and written there. Without a cache they are streamed (`stream`), the
    features never all held at once: generated samples, seen once."""
    if cache is None:
        return stream(images)
    sha256 = sha256 or pixels_sha256(images)
    found = cache.load_stats(key, sha256)
    if found is None:
        features = cached_features(cache, key, images, extract, sha256=sha256)
        found = statistics(features)
        cache.save_stats(key, sha256, found)
    return found
