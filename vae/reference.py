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
from selection.files import content_key, default_cache_dir
from vae.inference import reconstruction_errors
from vae.models import Stage1Config
from vae.train import TrainConfig, new_trainer, read_checkpoint


class ReferenceDiverged(RuntimeError):
    pass


def recon_source(
    train: ImageSet,
    *,
    model: Stage1Config,
    training: TrainConfig,
    loss: str = "gamma",
    kl_weight: float = 1.0,
    cache_dir=None,
    progress: bool = False,
) -> tuple[str, Callable[[], np.ndarray]]:
    """(cache key, compute) for `ScoreBook(providers={'recon': ...})`."""
    # the device and speed options do not change what is learned (beyond round-off)
    recipe = {
        k: v
        for k, v in asdict(training).items()
        if k not in ("device", "channels_last", "compile")
    }
    key = content_key(
        train=train.sha256,
        model=asdict(model),
        training=recipe,
        loss=loss,
        kl_weight=kl_weight,
    )
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    checkpoint = root / "reference" / f"stage1-{key}.pt"

    def compute() -> np.ndarray:
        trainer = new_trainer(
            model,
            torch.from_numpy(np.array(train.images)),  # a writable copy of the memmap
            training,
            loss=loss,
            kl_weight=kl_weight,
            progress=progress,
            desc="reference VAE",
        )
        if checkpoint.is_file():
            trainer.load_state_dict(read_checkpoint(checkpoint))
        if trainer.epoch < training.epochs and trainer.outcome != "diverged":
            trainer.run(checkpoint=checkpoint)
        if trainer.outcome == "diverged":
            raise ReferenceDiverged(
                f"the reference VAE for the recon criterion diverged at epoch "
                f"{trainer.epoch + 1} ({checkpoint})"
            )
        return reconstruction_errors(trainer.model, np.asarray(train.images))

    return key, compute
