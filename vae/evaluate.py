"""After stage 1: diagnostics of the latent space, and samples + FID for each prior.

Library code shared by `python -m vae.train` and the sweep's trainable; the FID comes in
as a function (a local engine, or the sweep's FID actor), so this module holds no
network.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from vae.diagnostics import diagnostics, loss_plateau
from vae.inference import encode
from vae.models import Stage1VAE
from vae.priors import PriorContext, check_priors, sample_images
from vae.stage2 import Stage2Fit

# (N, 32, 32, 3) uint8 -> FID, or a dict of metrics with "fid" among them
FIDFunction = Callable[[np.ndarray], float | dict]


@dataclass
class PriorResult:
    prior: str
    fid: float | None  # None when no FID was asked for
    fid_samples: int
    seconds: float
    preview: np.ndarray  # the first few samples, (k, 32, 32, 3) uint8
    extra: dict = field(default_factory=dict)  # KID, FID-infinity when asked for

    def record(self) -> dict:
        return {
            "fid": self.fid,
            "fid_samples": self.fid_samples,
            "seconds": self.seconds,
            **self.extra,
        }


def latent_summary(
    model: Stage1VAE, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encoder means and log-variances of `images`, and their posteriors' diagnostics
    (variance law, inactive dimensions)."""
    means, log_vars = encode(model, images)
    return means, log_vars, diagnostics(means, log_vars)


def stage2_summary(fit: Stage2Fit) -> dict:
    """Stage 2 as the study reports it: loss per coordinate, variance law and inactive
    dimensions of its latent, the learned gamma_z, and its loss history."""
    final = fit.result.final
    history = [
        {"epoch": r.epoch, "step": r.step, "images_seen": r.images_seen,
         "loss_mse": r.mse, "objective": r.loss, "lr": r.lr, "gamma": r.gamma,
         # its clock, as stage 1's rounds carry theirs: a replay of the sweep finds
         # a stop and resume in stage 2 from it (experiments.replay.round_seconds)
         "finished_at": r.finished_at}
        for r in fit.result.history
    ]  # fmt: skip
    converged, change = loss_plateau(r.mse for r in fit.result.history)
    return {
        "stage2_loss_mse": final.mse if final else None,  # per latent coordinate
        "stage2_objective": final.loss if final else None,
        "stage2_variance_law": fit.diagnostics["variance_law"],
        "stage2_inactive_dims": fit.diagnostics["inactive_dims"],
        "stage2_latent_dim": fit.diagnostics["latent_dim"],
        "stage2_gamma": fit.gamma,
        "stage2_outcome": fit.result.outcome,
        "stage2_epochs_run": fit.result.epochs,  # rounds
        "stage2_steps_run": fit.result.steps,
        "stage2_converged": converged,
        "stage2_loss_change": change,  # the last fifth's MSE against the one before
        "stage2_history": history,
    }


def class_counts(train, indices: np.ndarray) -> str:
    """The chosen subset's images per class, as JSON (class name -> count)."""
    counts = np.bincount(np.asarray(train.labels)[indices],
                         minlength=len(train.classes))  # fmt: skip
    return json.dumps(dict(zip(train.classes, map(int, counts), strict=True)))


def stage1_convergence(history) -> dict:
    """Whether stage 1's loss was flat at its end (vae.diagnostics.loss_plateau)."""
    converged, change = loss_plateau(r.mse for r in history)
    return {"converged": converged, "loss_change": change}


def gmm_summary(ctx: PriorContext) -> dict:
    """Whether the GMM prior's EM converged, and in how many iterations."""
    fit = ctx.gmm_fit or {}
    return {"gmm_converged": fit.get("converged"),
            "gmm_iterations": fit.get("iterations")}  # fmt: skip


# generated images per prior for its FID: the study's, as many as x_test holds
FID_SAMPLES = 10_000


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
        value = fid(images) if fid is not None and samples > 0 else None
        extra = dict(value) if isinstance(value, dict) else {}
        score = float(extra.pop("fid")) if extra else value
        results.append(
            PriorResult(
                name,
                None if score is None else float(score),
                count if score is not None else 0,
                time.perf_counter() - started,
                images[:preview].copy(),
                extra,
            )
        )
    return results
