"""Latent priors: ways to turn a trained stage-1 VAE into new images (DESIGN section 5).

A registry by name. Every prior returns (N, 32, 32, 3) uint8 images through the same
conversion (`vae.inference.to_uint8`), so FIDs differ only by what was decoded:

* `gaussian`: z ~ N(0, I), the prior the VAE was trained towards.
* `gmm`: a Gaussian mixture (scikit-learn, full covariance) fitted ex post to the
  encoder means of the training subset, sampled, decoded.
* `two_stage`: a stage-2 VAE (Dai & Wipf's recipe, vae/stage2.py) trained on fresh
  posterior draws z = mu + sigma * eps of the training subset's stage-1 posteriors;
  it generates u ~ N(0, I), z = f2(u) + gamma_z * eps, decoded by stage 1.
* `recon`: reconstructions (decoded encoder means) of given images, usually x_test.

Each prior draws from its own seed, derived from the run seed and the prior's name, so
asking for more priors never changes the samples of another.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from selection.datasets import ImageSet, spread_order
from vae.inference import decode, encode, to_uint8
from vae.models import Stage1VAE
from vae.stage2 import (
    Stage2Checkpoint,
    Stage2Fit,
    TwoStageOptions,
    fit_stage2,
    stage2_latents,
)
from vae_sweep.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GMMOptions:
    components: int = 10
    reg_covar: float = 1e-6  # scikit-learn's default; raise it if a fit is singular
    # EM iterations and k-means restarts; defaults measured to converge on 50,000
    # stage-1 means (README)
    max_iter: int = 500
    n_init: int = 1


@dataclass
class PriorContext:
    """What priors need: the trained stage 1 and the data it was trained on."""

    model: Stage1VAE
    train_means: np.ndarray  # (N, latent) encoder means of the training subset
    seed: int = 0
    recon_images: np.ndarray | None = None  # (M, 32, 32, 3) uint8, for `recon`
    gmm: GMMOptions = field(default_factory=GMMOptions)
    two_stage: TwoStageOptions = field(default_factory=TwoStageOptions)
    train_log_vars: np.ndarray | None = None  # (N, latent), for posterior draws
    stage2_checkpoint: Stage2Checkpoint | None = None
    # filled in as the priors are fitted, for the results
    stage2: Stage2Fit | None = None
    gmm_fit: dict | None = None  # converged, iterations
    progress: bool = False


def prior_seed(seed: int, name: str) -> int:
    return int(
        np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0]
    )


def _gaussian(ctx: PriorContext, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, ctx.model.latent_dim, generator=generator)


def _gmm(ctx: PriorContext, n: int, seed: int) -> torch.Tensor:
    options = ctx.gmm
    if len(ctx.train_means) < options.components:
        raise InputError(
            f"gmm prior: {options.components} components need at least as many "
            f"training images, got {len(ctx.train_means)}"
        )
    # imported here: sklearn (with scipy.stats) takes about a second to import, and
    # every sweep driver, FID replica and command imports this module without fitting
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(
        n_components=options.components,
        covariance_type="full",
        reg_covar=options.reg_covar,
        max_iter=options.max_iter,
        n_init=options.n_init,
        random_state=seed % 2**32,
    )
    with warnings.catch_warnings():  # recorded below, not printed
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(np.asarray(ctx.train_means, dtype=np.float64))
    ctx.gmm_fit = {"converged": bool(mixture.converged_),
                   "iterations": int(mixture.n_iter_)}  # fmt: skip
    if not mixture.converged_:
        logger.warning(
            "gmm prior: EM did not converge in %d iterations (gmm.max_iter); "
            "recorded as gmm_converged = false",
            options.max_iter,
        )
    latents, _ = mixture.sample(n)
    # sample() returns the draws grouped by component; shuffle so that any first k
    # (a sample grid) are a fair draw
    order = np.random.default_rng(seed).permutation(n)
    return torch.as_tensor(latents[order], dtype=torch.float32)


def train_stage2(ctx: PriorContext) -> Stage2Fit:
    """Fit stage 2 on the training subset's stage-1 posteriors, once per context."""
    if ctx.stage2 is None:
        ctx.stage2 = fit_stage2(
            ctx.train_means,
            ctx.train_log_vars,
            ctx.two_stage,
            stage1=ctx.model,
            checkpoint=ctx.stage2_checkpoint,
            progress=ctx.progress,
        )
    return ctx.stage2


def _two_stage(ctx: PriorContext, n: int, seed: int) -> torch.Tensor:
    fit = train_stage2(ctx)
    generator = torch.Generator().manual_seed(seed)
    return stage2_latents(fit.model, fit.gamma, n, generator)


def recon_images(test: ImageSet, count: int) -> np.ndarray:
    """The test images the recon prior reconstructs: `count` spread over the
    classes (x_test copies sorted by class would otherwise give one class)."""
    return test.images[spread_order(test.labels)[:count]]


def _recon(ctx: PriorContext, n: int, seed: int) -> torch.Tensor:
    images = ctx.recon_images
    if images is None or len(images) < n:
        have = 0 if images is None else len(images)
        raise InputError(f"recon prior: asked for {n} reconstructions of {have} images")
    means, _ = encode(ctx.model, images[:n])
    return torch.as_tensor(means)


# name -> latents for stage 1 to decode
PRIORS: dict[str, Callable[[PriorContext, int, int], torch.Tensor]] = {
    "gaussian": _gaussian,
    "gmm": _gmm,
    "two_stage": _two_stage,
    "recon": _recon,
}


def check_priors(names) -> list[str]:
    names = list(names)
    unknown = [name for name in names if name not in PRIORS]
    if unknown or not names:
        raise InputError(
            f"unknown prior {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from: {', '.join(PRIORS)}"
        )
    return names


def sample_images(name: str, ctx: PriorContext, n: int) -> np.ndarray:
    """n images from prior `name`: (n, 32, 32, 3) uint8."""
    check_priors([name])
    if n < 1:
        raise InputError(f"number of samples must be at least 1, got {n}")
    latents = PRIORS[name](ctx, n, prior_seed(ctx.seed, name))
    return to_uint8(decode(ctx.model, latents))
