"""After stage 1: diagnostics of the latent space, and samples + FID for each prior.

Library code shared by `python -m vae.train` and the sweep's trainable; the FID comes in
as a function (a local engine, or the sweep's FID actor), so this module holds no
network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from vae.diagnostics import diagnostics
from vae.inference import encode
from vae.models import Stage1VAE
from vae.priors import PriorContext, check_priors, sample_images

FIDFunction = Callable[[np.ndarray], float]  # (N, 32, 32, 3) uint8 -> FID


@dataclass
class PriorResult:
    prior: str
    fid: float | None  # None when no FID was asked for
    fid_samples: int
    seconds: float
    preview: np.ndarray  # the first few samples, (k, 32, 32, 3) uint8

    def record(self) -> dict:
        return {
            "fid": self.fid,
            "fid_samples": self.fid_samples,
            "seconds": self.seconds,
        }


def latent_summary(model: Stage1VAE, images: np.ndarray) -> tuple[np.ndarray, dict]:
    """Encoder means of `images` and the diagnostics of their posteriors."""
    means, log_vars = encode(model, images)
    return means, diagnostics(means, log_vars)


def evaluate_priors(
    ctx: PriorContext,
    priors: Iterable[str],
    *,
    samples: int,
    fid: FIDFunction | None,
    preview: int = 64,
) -> list[PriorResult]:
    """`samples` images per prior, scored by `fid` (skipped when None or samples 0)."""
    results = []
    for name in check_priors(priors):
        started = time.perf_counter()
        count = samples if fid is not None and samples > 0 else preview
        images = sample_images(name, ctx, count)
        score = float(fid(images)) if fid is not None and samples > 0 else None
        results.append(
            PriorResult(
                name,
                score,
                count if score is not None else 0,
                time.perf_counter() - started,
                images[:preview].copy(),
            )
        )
    return results
