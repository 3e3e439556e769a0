"""PNG outputs of a training run: sample grids per prior and the loss curve."""

from __future__ import annotations

import io
import math
import os

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

from vae_sweep.files import atomic_path


def image_grid(
    images: np.ndarray, columns: int | None = None, pad: int = 1
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) mosaic."""
    n, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full(
        (rows * (height + pad) + pad, columns * (width + pad) + pad, channels),
        255,
        dtype=np.uint8,
    )
    for i, image in enumerate(images):
        top = pad + (i // columns) * (height + pad)
        left = pad + (i % columns) * (width + pad)
        grid[top : top + height, left : left + width] = image
    return grid


def _sample_figure(images: np.ndarray, title: str) -> Figure:
    figure = Figure(figsize=(6, 6.4))
    axis = figure.subplots()
    axis.imshow(image_grid(images), interpolation="nearest")
    axis.set_title(title)
    axis.axis("off")
    return figure


def save_sample_grid(images: np.ndarray, path: str | os.PathLike, title: str) -> None:
    _save(_sample_figure(images, title), path)


def sample_grid_png(images: np.ndarray, title: str) -> bytes:
    """The sample grid as PNG bytes, for storage that is not a local path (S3)."""
    buffer = io.BytesIO()
    _sample_figure(images, title).savefig(buffer, format="png", dpi=120,
                                          bbox_inches="tight")  # fmt: skip
    return buffer.getvalue()


def pairs_png(generated: np.ndarray, nearest: np.ndarray, title: str) -> bytes:
    """Generated samples above the training images nearest to them, column by column
    ((k, 32, 32, 3) uint8 each), as PNG bytes."""
    columns = len(generated)
    stacked = np.concatenate([generated, nearest])  # row 1 generated, row 2 training
    figure = Figure(figsize=(max(4.0, 0.75 * columns), 2.4))
    axis = figure.subplots()
    axis.imshow(image_grid(stacked, columns=columns), interpolation="nearest")
    axis.set_title(title, fontsize=8)
    axis.axis("off")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def save_loss_curve(history: list[dict], path: str | os.PathLike, title: str) -> None:
    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    axis.plot(
        epochs, [h["mse"] for h in history], marker="." if len(epochs) < 50 else None
    )
    axis.set_xlabel("epoch")
    axis.set_ylabel("per-pixel MSE (training set)")
    axis.set_yscale("log")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    _save(figure, path)


def _save(figure, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
