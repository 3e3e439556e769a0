"""A tiny deterministic stand-in for the Inception network, for rehearsals and tests.

Features are a fixed random projection of 8x8 block means, squashed by tanh: cheap
(about a million CIFAR images a minute on one core), deterministic, and different
images give different features. FIDs on it are only comparable with each other; it
exists so that a full-size rehearsal (`python -m sweep.run GRID --rehearse`) and the
plumbing tests exercise every path without hours of Inception passes.
"""

from __future__ import annotations

import time

import numpy as np

STANDIN_SPEC = "fid.standin:make_standin"  # the `fid.extractor` value that picks it


class StandInExtractor:
    key = "standin-v1"
    dim = 8

    def __init__(self, seconds_per_image: float = 0.0):
        self.projection = np.random.default_rng(0).standard_normal((48, self.dim))
        # > 0: run at a fixed speed, like a busy GPU (tests and benchmarks of how
        # calls share the FID service); the features are the same either way
        self.seconds_per_image = seconds_per_image
        self.calls = 0
        self.images_seen = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images_seen += len(images)
        if self.seconds_per_image:
            time.sleep(self.seconds_per_image * len(images))
        x = np.asarray(images, dtype=np.float64) / 255.0  # (B, 32, 32, 3)
        blocks = x.reshape(len(x), 4, 8, 4, 8, 3).mean(axis=(2, 4))  # (B, 4, 4, 3)
        return np.tanh(blocks.reshape(len(x), 48) @ self.projection).astype(np.float32)


def make_standin() -> StandInExtractor:
    return StandInExtractor()
