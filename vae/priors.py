"""Latent priors: ways to turn a trained stage-1 VAE into new images (DESIGN section 5).

A registry by name. Every prior returns (N, 32, 32, 3) uint8 images through the same
conversion (`vae.inference.to_uint8`), so FIDs differ only by what was decoded:

* `gaussian`: z ~ N(0, I), the prior the VAE was trained towards.
* `gmm`: a Gaussian mixture (scikit-learn, full covariance) fitted ex post to the
  encoder means of the training subset, sampled, decoded.
* `two_stage`: a stage-2 VAE (Dai & Wipf's recipe, daib13/TwoStageVAE) trained on
  fresh posterior draws z = mu + sigma * eps of the training subset's stage-1
  posteriors, new eps every epoch; it generates u ~ N(0, I), z = f2(u) + gamma_z * eps
  with its learned decoder scale gamma_z, decoded by stage 1.
* `recon`: reconstructions (decoded encoder means) of given images, usually x_test.

Each prior draws from its own seed, derived from the run seed and the prior's name, so
asking for more priors never changes the samples of another.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from selection.datasets import ImageSet, spread_order
from vae.diagnostics import diagnostics
from vae.inference import decode, encode, to_uint8
from vae.models import Stage1VAE, Stage2Config, Stage2VAE
from vae.train import EpochReport, TrainConfig, Trainer, TrainResult, new_trainer
from vae_sweep.errors import InputError
from vae_sweep.files import content_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GMMOptions:
    components: int = 10
    reg_covar: float = 1e-6  # scikit-learn's default; raise it if a fit is singular
    # EM iterations and k-means restarts; defaults measured to converge on 50,000
    # stage-1 means (README)
    max_iter: int = 500
    n_init: int = 1


STAGE2_INPUTS = ("posterior_draws", "means")
# in a saved stage-2 state: the stage 1 and the stage-2 settings it belongs to
RESUME_KEY = "resume_key"


@dataclass(frozen=True)
class TwoStageOptions:
    # the stage-1 latent size is filled in from the stage-1 model
    latent_dim: int = 64
    layout: str = "dai_wipf"  # vae.models.STAGE2_LAYOUTS
    hidden: tuple[int, ...] | None = None  # None: the layout's widths
    # what stage 2 learns from: Dai & Wipf's fresh posterior draws, or the means
    inputs: str = "posterior_draws"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1200))
    loss: str = "gamma"
    kl_weight: float = 1.0


@dataclass
class Stage2Checkpoint:
    """Where stage 2 keeps its training state as it goes, so that a run stopped in
    stage 2 goes on from there. `save(state)` receives `Trainer.state_dict()` with its
    `RESUME_KEY` (the stage 1 and the stage-2 settings it belongs to) after an epoch
    once at least `seconds` have passed since training started or the last save
    ended, and as training ends (its last epoch, or a divergence). `saved` is a state
    a resumed run goes on from, used only if its key is this run's (`resume_key`)."""

    save: Callable[[dict], None]
    saved: dict | None = None
    # a stage-2 epoch costs a fraction of a stage-1 one and a save costs a few
    # seconds on a large model: by time, not epochs; a stop loses about this much
    # (this, the epoch in flight and the save)
    seconds: float = 60.0

    def __post_init__(self):
        if not self.seconds >= 0:  # nan too
            raise ValueError(
                f"Stage2Checkpoint.seconds = {self.seconds}: expected >= 0"
            )


@dataclass
class Stage2Fit:
    """A trained stage 2 and what the results report of it."""

    model: Stage2VAE
    gamma: float  # learned decoder scale gamma_z (0 with the mse loss: no noise)
    result: TrainResult
    diagnostics: dict  # variance law and inactive dimensions of its latent


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


def stage2_data(means: np.ndarray, log_vars: np.ndarray | None, inputs: str):
    """What stage 2 trains on: (N, 2d) [mean | log variance], from which every batch
    draws fresh latents (Stage2VAE.prepare), or (N, d) means."""
    if inputs not in STAGE2_INPUTS:
        raise InputError(
            f"stage-2 inputs {inputs!r} are unknown; choose from "
            f"{', '.join(STAGE2_INPUTS)}"
        )
    means = torch.as_tensor(np.asarray(means), dtype=torch.float32)
    if inputs == "means":
        return means
    if log_vars is None:
        raise InputError("stage-2 posterior draws need the encoder's log-variances")
    log_vars = torch.as_tensor(np.asarray(log_vars), dtype=torch.float32)
    return torch.cat([means, log_vars], dim=1)


def train_stage2_model(
    means: np.ndarray,
    log_vars: np.ndarray | None,
    options: TwoStageOptions,
    *,
    progress: bool = False,
    checkpoint: Stage2Checkpoint | None = None,
    stage1_key: str = "",
) -> tuple[Stage2VAE, float, TrainResult]:
    """Train stage 2 on stage-1 posteriors; (model in eval mode, gamma_z, result).
    With a checkpoint, a saved state of the same stage 1 (`stage1_key`) and the same
    stage-2 settings (`resume_key`) is continued, bit-identically on CPU, and the
    state is saved as training goes and as it ends."""
    config = Stage2Config(
        input_dim=means.shape[1],
        latent_dim=options.latent_dim,
        layout=options.layout,
        hidden=tuple(options.hidden) if options.hidden else None,
    )
    trainer = new_trainer(
        config,
        stage2_data(means, log_vars, options.inputs),
        options.train,
        loss=options.loss,
        kl_weight=options.kl_weight,
        progress=progress,
        desc="stage 2",
    )
    saver = None
    if checkpoint is not None:
        key = resume_key(stage1_key, config, options)
        if _resumable(checkpoint.saved, key, options.train.epochs):
            trainer.load_state_dict(checkpoint.saved)
        saver = _Saver(trainer, checkpoint, key)
    if trainer.outcome == "diverged":  # as saved: there is nothing to go on with
        result = TrainResult("diverged", trainer.epoch, list(trainer.history))
    else:
        result = trainer.run([saver] if saver else [])
        if saver is not None and result.outcome != "completed":
            saver.save()  # as it ended: the model the samples come from
    gamma = float(getattr(trainer.loss, "gamma", 0.0))
    return trainer.model.eval(), gamma, result


def resume_key(stage1_key: str, config: Stage2Config, options: TwoStageOptions) -> str:
    """What a saved stage-2 state must match to be continued: the stage 1 it learned
    from and every stage-2 setting but the number of epochs (a resume may ask for
    more, as stage 1's may) and the device (the state moves)."""
    train = {k: v for k, v in asdict(options.train).items()
             if k not in ("epochs", "device")}  # fmt: skip
    return content_key(stage1=stage1_key, model=asdict(config), train=train,
                       inputs=options.inputs, loss=options.loss,
                       kl_weight=options.kl_weight)  # fmt: skip


def _resumable(saved: dict | None, key: str, epochs: int) -> bool:
    if saved is None:
        return False
    if saved.get(RESUME_KEY) == key and saved.get("epoch", epochs + 1) <= epochs:
        return True
    logger.warning(
        "stage 2: the saved state was trained for another stage 1 (one that trained "
        "on since), with other stage-2 settings, or for more epochs than asked; "
        "stage 2 starts over"
    )
    return False


class _Saver:
    """Epoch callback: gives stage 2's state to its checkpoint (by time, and last)."""

    def __init__(self, trainer: Trainer, checkpoint: Stage2Checkpoint, key: str):
        self.trainer, self.checkpoint, self.key = trainer, checkpoint, key
        self.last = time.monotonic()

    def __call__(self, report: EpochReport) -> None:
        last = report.epoch == self.trainer.config.epochs
        if last or time.monotonic() - self.last >= self.checkpoint.seconds:
            self.save()

    def save(self) -> None:
        state = self.trainer.state_dict()
        state[RESUME_KEY] = self.key
        self.checkpoint.save(state)
        self.last = time.monotonic()


def model_key(model: torch.nn.Module) -> str:
    """A digest of a model's weights: which stage 1 a stage-2 state belongs to."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def stage2_latents(
    stage2: Stage2VAE, gamma: float, n: int, generator: torch.Generator
) -> torch.Tensor:
    """n stage-1 latents: u ~ N(0, I), z = f2(u) + gamma_z * eps (Dai & Wipf)."""
    u = torch.randn(n, stage2.latent_dim, generator=generator)
    z = decode(stage2, u)
    return z + gamma * torch.randn(z.shape, generator=generator)


def train_stage2(ctx: PriorContext) -> Stage2Fit:
    """Fit stage 2 on the training subset's stage-1 posteriors, once per context."""
    if ctx.stage2 is None:
        model, gamma, result = train_stage2_model(
            ctx.train_means,
            ctx.train_log_vars,
            ctx.two_stage,
            progress=ctx.progress,
            checkpoint=ctx.stage2_checkpoint,
            stage1_key=model_key(ctx.model) if ctx.stage2_checkpoint else "",
        )
        # its own latent, on the stage-1 means: variance law, inactive dimensions
        mean_u, log_var_u = encode(model, np.asarray(ctx.train_means, np.float32))
        ctx.stage2 = Stage2Fit(model, gamma, result, diagnostics(mean_u, log_var_u))
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
