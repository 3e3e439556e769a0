from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.standin import StandInExtractor

ROOT = Path(__file__).resolve().parent.parent
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches under a temporary folder, never the user's home."""
    monkeypatch.setenv("VAE_SWEEP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def standin() -> StandInExtractor:
    return StandInExtractor()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def cifar_path() -> Path:
    return Path(os.environ.get("VAE_SWEEP_DATA") or SHARED_CIFAR)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The offline CIFAR-10 copy (../shared/data/cifar10-jpeg or $VAE_SWEEP_DATA)."""
    root = cifar_path()
    if not (root / "test.zip").exists() and not (root / "test").exists():
        pytest.skip(f"no offline CIFAR-10 at {root}")
    return root


def random_images(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
