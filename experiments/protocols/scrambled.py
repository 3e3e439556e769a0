"""E2: training images whose k equal tiles are shuffled within each image.

Each image is cut into k equal tiles (k = 2: top and bottom halves; 4: a 2x2 grid of
16x16 tiles; ...; 1024: single pixels) and its tiles are permuted by a permutation of
its own. The same training images are used at every level; each repetition draws new
permutations. Scrambled images are made batch by batch and streamed through the network
into running statistics, never all held at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.features import iter_batches
from vae_sweep.errors import InputError

DEFAULT_TILES = (2, 4, 16, 64, 256, 1024)


DEFAULT_COUNT = 10_000


def tile_grid(tiles: int, height: int = 32, width: int = 32) -> tuple[int, int]:
    """(rows, columns) of a k-tile split: a square grid, or twice the rows of columns

    k: a power of two that fits the image. 1 -> 1x1, 2 -> 2x1, 4 -> 2x2, 8 -> 4x2.
    """
    if tiles < 1 or tiles & (tiles - 1):
        raise InputError(f"--tiles: {tiles} is not a power of two")
    rows = 1 << (tiles.bit_length() // 2)  # 2 ** ceil(log2(k) / 2)
    cols = tiles // rows
    if height % rows or width % cols:
        raise InputError(f"--tiles: {tiles} tiles do not fit a {height}x{width} image")
    return rows, cols


def scramble_tiles(
    images: np.ndarray, tiles: int, rng: np.random.Generator
) -> np.ndarray:
    """(B, H, W, C) -> the images with their k tiles permuted, a permutation each."""
    batch, height, width, channels = images.shape
    rows, cols = tile_grid(tiles, height, width)
    th, tw = height // rows, width // cols
    # (B, rows, th, cols, tw, C) -> (B, k, th, tw, C); tile t at (t // cols, t % cols)
    split = images.reshape(batch, rows, th, cols, tw, channels).transpose(
        0, 1, 3, 2, 4, 5
    )
    split = split.reshape(batch, tiles, th, tw, channels)
    order = np.argsort(
        rng.random((batch, tiles)), axis=1
    )  # a uniform permutation per image
    shuffled = np.take_along_axis(split, order[:, :, None, None, None], axis=1)
    shuffled = shuffled.reshape(batch, rows, cols, th, tw, channels).transpose(
        0, 1, 3, 2, 4, 5
    )
    return shuffled.reshape(batch, height, width, channels)


def scrambled_batches(
    images: np.ndarray, tiles: int, rng: np.random.Generator, batch_size: int
) -> Iterator[np.ndarray]:
    """Scrambled copies batch by batch; the draws do not depend on the batch size."""
    for batch in iter_batches(images, batch_size):
        yield scramble_tiles(np.asarray(batch), tiles, rng)


def level_rng(seed: int, tiles: int, repetition: int) -> np.random.Generator:
    return np.random.default_rng([seed, tiles, repetition])


def run_protocol(
    images: np.ndarray,
    tile_counts,
    repetitions: int,
    seed: int,
    engine: FIDEngine,
    reference: FrechetReference,
) -> pd.DataFrame:
    rows = []
    for tiles in tile_counts:
        for repetition in range(repetitions):
            batches = scrambled_batches(
                images, tiles, level_rng(seed, tiles, repetition), engine.batch_size
            )
            stats = engine.stream_stats(
                batches, total=len(images), desc=f"E2 k={tiles} rep={repetition}"
            )
            rows.append(
                {
                    "tiles": tiles,
                    "repetition": repetition,
                    "fid": reference.distance(stats),
                    "sample_count": stats.n,
                }
            )
    return pd.DataFrame(rows)
