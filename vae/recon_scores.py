"""The reference VAE behind the `lowest_recon` / `highest_recon` criteria.

One stage-1 VAE trained on the whole training set scores every image by its
reconstruction error. It is trained once per (dataset, model, training options) and
checkpointed in the cache as it goes, so an interrupted sweep resumes it rather than
starting over, and every later trial reads the cached scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from selection.datasets import ImageSet
from vae.inference import reconstruction_errors
from vae.losses import DEFAULT_LOSS
from vae.models import Stage1Config
from vae.train_config import TrainConfig
from vae.trainer import new_trainer, read_checkpoint
from vae_sweep.files import content_key, default_cache_dir


class ReferenceDiverged(RuntimeError):
    pass


def reference_key(
    train_sha256: str,
    *,
    model: Stage1Config,
    training: TrainConfig,
    loss: str = DEFAULT_LOSS,
    kl_weight: float = 1.0,
) -> str:
    """The cache key of a reference VAE and its scores: everything they depend on."""
    # the device and speed options do not change what is learned (beyond round-off)
    recipe = {
        k: v
        for k, v in asdict(training).items()
        if k not in ("device", "channels_last", "compile")
    }
    return content_key(
        train=train_sha256,
        model=asdict(model),
        training=recipe,
        loss=loss,
        kl_weight=kl_weight,
    )


def reference_checkpoint(key: str, cache_dir=None) -> Path:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "reference" / f"stage1-{key}.pt"


def reference_scores(
    images: np.ndarray,
    *,
    model: Stage1Config,
    training: TrainConfig,
    loss: str = DEFAULT_LOSS,
    kl_weight: float = 1.0,
    checkpoint: str | Path,
    checkpoint_every: int = 1,
    callbacks=(),
    progress: bool = False,
) -> np.ndarray:
    """Train (or resume, from `checkpoint`) the reference VAE on all of `images`
    ((N, 32, 32, 3) uint8, possibly a read-only object-store view) and return each
    image's reconstruction error, (N,) float64. `callbacks` see every epoch after
    its checkpoint is written (the sweep copies it to shared storage)."""
    checkpoint = Path(checkpoint)
    trainer = new_trainer(
        model,
        torch.from_numpy(np.array(images)),  # torch trains on a writable copy
        training,
        loss=loss,
        kl_weight=kl_weight,
        progress=progress,
        desc="reference VAE",
    )
    if checkpoint.is_file():
        trainer.load_state_dict(read_checkpoint(checkpoint))
    if not trainer.budget_spent and trainer.outcome != "diverged":
        trainer.run(callbacks, checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    if trainer.outcome == "diverged":
        raise ReferenceDiverged(
            f"the reference VAE for the recon criterion diverged at epoch "
            f"{trainer.epoch + 1} ({checkpoint})"
        )
    return reconstruction_errors(trainer.model, images)


def recon_source(
    train: ImageSet,
    *,
    model: Stage1Config,
    training: TrainConfig,
    loss: str = DEFAULT_LOSS,
    kl_weight: float = 1.0,
    cache_dir=None,
    progress: bool = False,
) -> tuple[str, Callable[[], np.ndarray]]:
    """(cache key, compute) for `ScoreBook(providers={'recon': ...})`, in-process.

    The sweep does not use this closure (it holds x_train, far too big for a Ray
    task): it runs `reference_scores` as a task on an object-store reference.
    """
    options = {"model": model, "training": training, "loss": loss,
               "kl_weight": kl_weight}  # fmt: skip
    key = reference_key(train.sha256, **options)
    checkpoint = reference_checkpoint(key, cache_dir)

    def compute() -> np.ndarray:
        return reference_scores(
            train.images, **options, checkpoint=checkpoint, progress=progress
        )

    return key, compute
