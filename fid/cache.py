"""On-disk cache of features and statistics.

Keyed by (feature network + preprocessing version, sha256 of the uint8 pixels): the same
pixels through the same pipeline always give the same numbers. Writes are atomic, so a
killed process never leaves a partial entry, and concurrent writers are harmless.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fid.stats import Statistics
from vae_sweep.files import atomic_path, default_cache_dir


class FIDCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_cache_dir() / "fid"

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
