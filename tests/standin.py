"""A tiny deterministic stand-in for the Inception network, for plumbing tests.

Features are a fixed random projection of 8x8 block means, squashed by tanh: cheap,
deterministic, and different images give different features.
"""

from __future__ import annotations

import os

import numpy as np


class StandInExtractor:
    key = "standin-v1"
    dim = 8

    def __init__(self):
        self.projection = np.random.default_rng(0).standard_normal((48, self.dim))
        self.calls = 0
        self.images_seen = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images_seen += len(images)
        x = np.asarray(images, dtype=np.float64) / 255.0  # (B, 32, 32, 3)
        blocks = x.reshape(len(x), 4, 8, 4, 8, 3).mean(axis=(2, 4))  # (B, 4, 4, 3)
        return np.tanh(blocks.reshape(len(x), 48) @ self.projection).astype(np.float32)


def make_standin() -> StandInExtractor:
    return StandInExtractor()


DIE_MARKER_ENV = "VAE_SWEEP_TEST_DIE_MARKER"


class DyingStandIn(StandInExtractor):
    """Kills its own process on its third call, once per marker file: a crashed FID
    actor in the middle of a sweep."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        marker = os.environ.get(DIE_MARKER_ENV)
        if self.calls == 2 and marker and not os.path.exists(marker):
            with open(marker, "w") as file:
                file.write(str(os.getpid()))
            os._exit(1)
        return super().__call__(images)


def make_dying_standin() -> DyingStandIn:
    return DyingStandIn()
