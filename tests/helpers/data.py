"""Where the tests find data and caches, and the images they make."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent  # the repository
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "cache"


def empty_cache(cache: Path, tmp_path_factory) -> Path:
    """A new cache folder (scores, FID statistics, reference VAE start empty) that
    shares only the session's decoded datasets, which are pure functions of the
    image files."""
    shared = session_cache(tmp_path_factory) / "datasets"
    shared.mkdir(parents=True, exist_ok=True)
    cache.mkdir()
    (cache / "datasets").symlink_to(shared, target_is_directory=True)
    return cache


def cifar_path() -> Path:
    return Path(os.environ.get("VAE_SWEEP_DATA") or SHARED_CIFAR)


SMALL_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                 "horse", "ship", "truck")  # fmt: skip


def smooth_images(rng: np.random.Generator, n: int, tint) -> np.ndarray:
    """n 32x32 images with a class tint and low-frequency structure (4x4 noise
    upsampled), plus fine noise: something a VAE can learn, unlike pure noise."""
    coarse = rng.normal(0, 40, size=(n, 4, 4, 3))
    smooth = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    images = np.asarray(tint) + smooth + rng.normal(0, 8, size=(n, 32, 32, 3))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def random_images(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def image_folder(path, images):
    """PNG files 00.png, 01.png, ... of (N, H, W, 3) uint8 images, in a new folder."""
    path.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(path / f"{i:02d}.png")
    return path
