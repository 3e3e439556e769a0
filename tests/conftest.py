from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data import (
    SMALL_CLASSES,
    cifar_path,
    empty_cache,
    session_cache,
    smooth_images,
)
from tests.helpers.standin import StandInExtractor

# The slowest test files, slowest first (minutes each on a 2-core CPU). pytest-xdist's
# loadfile hands whole files to the workers in this order (with
# --no-loadscope-reorder; by default it orders files by their number of tests), so
# these start first and the many quick files fill in around them (longest job
# first). The simulated clusters, which oversubscribe the CPU most, come third: they
# run beside the sweep tests rather than beside the full-size rehearsals.
SLOWEST_FIRST = ("test_rehearsal", "test_sweep_run", "test_cluster_sim",
                 "test_sweep_faults", "test_cli", "test_storage_s3",
                 "test_service", "test_network")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.stem
        slow = name in SLOWEST_FIRST
        return SLOWEST_FIRST.index(name) if slow else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches under a temporary folder, never the user's home, and
    a Ray started without an explicit address is a fresh local one, never a cluster
    that `ray start` left running on this machine."""
    monkeypatch.setenv("VAE_SWEEP_CACHE", str(session_cache(tmp_path_factory)))
    monkeypatch.setenv("RAY_ADDRESS", "local")


@pytest.fixture
def fresh_cache(tmp_path, tmp_path_factory, monkeypatch) -> Path:
    """A cache of this test's own: see empty_cache."""
    cache = empty_cache(tmp_path / "cache", tmp_path_factory)
    monkeypatch.setenv("VAE_SWEEP_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def full_cifar(cifar_root, tmp_path_factory):
    """All 50,000 / 10,000 CIFAR-10 images, decoded once per test run into the
    session cache (about 20 s), then memory-mapped by every test that needs them."""
    from selection.datasets import load_cifar10

    cache = session_cache(tmp_path_factory)
    train = load_cifar10(cifar_root, "train", cache_dir=cache, progress=False)
    test = load_cifar10(cifar_root, "test", cache_dir=cache, progress=False)
    assert (len(train), len(test)) == (50_000, 10_000)
    return train, test


@pytest.fixture
def standin() -> StandInExtractor:
    return StandInExtractor()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The offline CIFAR-10 copy (../shared/data/cifar10-jpeg or $VAE_SWEEP_DATA)."""
    root = cifar_path()
    if not (root / "test.zip").exists() and not (root / "test").exists():
        pytest.skip(
            f"needs the real CIFAR-10 (all 50,000 / 10,000 images, or their "
            f"real content), not found at {root}: set $VAE_SWEEP_DATA"
        )
    return root


@pytest.fixture(scope="session")
def small_cifar_root(tmp_path_factory) -> Path:
    """A CIFAR-10 layout made by the tests (train/<class>/, test/<class>/ PNGs; 210
    training and 10 test images per class: 2,100 / 100), for the tests that need the
    layout and a few thousand images, not CIFAR itself: they run in any clone,
    without the offline copy beside this checkout."""
    from PIL import Image

    root = tmp_path_factory.mktemp("small-cifar")
    rng = np.random.default_rng(20261125)
    for label, name in enumerate(SMALL_CLASSES):
        tint = rng.uniform(60, 200, size=3)
        for split, count in (("train", 210), ("test", 10)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, image in enumerate(smooth_images(rng, count, tint)):
                Image.fromarray(image).save(folder / f"{label}_{i:03d}.png")
    return root


@pytest.fixture
def small_cifar(small_cifar_root, monkeypatch) -> Path:
    """The small made-up CIFAR as this test's data ($VAE_SWEEP_DATA, which
    `cifar_path()` and the sweeps the test starts read)."""
    monkeypatch.setenv("VAE_SWEEP_DATA", str(small_cifar_root))
    return small_cifar_root


