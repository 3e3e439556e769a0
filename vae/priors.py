"""Latent priors: ways to turn a trained stage-1 VAE into new images (DESIGN section 5).

A registry by name. Every prior returns (N, 32, 32, 3) uint8 images through the same
conversion (`vae.inference.to_uint8`), so FIDs differ only by what was decoded:

* `gaussian`: z ~ N(0, I), the prior the VAE was trained towards.
* `gmm`: a Gaussian mixture (scikit-learn, full covariance) fitted ex post to the
  encoder means of the training subset, sampled, decoded.
* `two_stage`: a stage-2 VAE trained on those means (Dai & Wipf); u ~ N(0, I) through
  the stage-2 decoder gives z, decoded by stage 1.
* `recon`: reconstructions (decoded encoder means) of given images, usually x_test.

Each prior draws from its own seed, derived from the run seed and the prior's name, so
asking for more priors never changes the samples of another.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from selection.errors import InputError
from vae.inference import decode, encode, to_uint8
from vae.models import Stage1VAE, Stage2Config, Stage2VAE
from vae.train import TrainConfig, TrainResult, new_trainer


@dataclass(frozen=True)
class GMMOptions:
    components: int = 10
    reg_covar: float = 1e-6  # scikit-learn's default; raise it if a fit is singular
    max_iter: int = 100


@dataclass(frozen=True)
class TwoStageOptions:
    # the stage-1 latent size is filled in from the stage-1 model
    latent_dim: int = 64
    hidden: tuple[int, ...] = (2048, 512)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1200))
    loss: str = "gamma"
    kl_weight: float = 1.0


@dataclass
class PriorContext:
    """What priors need: the trained stage 1 and the data it was trained on."""

    model: Stage1VAE
    train_means: np.ndarray  # (N, latent) encoder means of the training subset
    seed: int = 0
    recon_images: np.ndarray | None = None  # (M, 32, 32, 3) uint8, for `recon`
    gmm: GMMOptions = field(default_factory=GMMOptions)
    two_stage: TwoStageOptions = field(default_factory=TwoStageOptions)
    # a trained stage 2 (the sweep trains it under its own checkpoints); when None,
    # `two_stage` trains one here on first use
    stage2: Stage2VAE | None = None
    stage2_result: TrainResult | None = None
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
    mixture = GaussianMixture(
        n_components=options.components,
        covariance_type="full",
        reg_covar=options.reg_covar,
        max_iter=options.max_iter,
        random_state=seed % 2**32,
    ).fit(np.asarray(ctx.train_means, dtype=np.float64))
    latents, _ = mixture.sample(n)
    # sample() returns the draws grouped by component; shuffle so that any first k
    # (a sample grid) are a fair draw
    order = np.random.default_rng(seed).permutation(n)
    return torch.as_tensor(latents[order], dtype=torch.float32)


def train_stage2(ctx: PriorContext) -> Stage2VAE:
    """Fit stage 2 on the stage-1 encoder means, once per context."""
    if ctx.stage2 is None:
        options = ctx.two_stage
        config = Stage2Config(
            input_dim=ctx.model.latent_dim,
            latent_dim=options.latent_dim,
            hidden=tuple(options.hidden),
        )
        trainer = new_trainer(
            config,
            torch.as_tensor(ctx.train_means, dtype=torch.float32),
            options.train,
            loss=options.loss,
            kl_weight=options.kl_weight,
            progress=ctx.progress,
            desc="stage 2",
        )
        ctx.stage2_result = trainer.run()
        ctx.stage2 = trainer.model.eval()
    return ctx.stage2


def _two_stage(ctx: PriorContext, n: int, seed: int) -> torch.Tensor:
    stage2 = train_stage2(ctx)
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(n, stage2.latent_dim, generator=generator)
    return decode(stage2, u)


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
