"""Stage 2 of the two-stage VAE (Dai & Wipf, "Diagnosing and Enhancing VAE Models";
their code: daib13/TwoStageVAE): a dense VAE trained on the stage-1 latents, and the
training state it keeps as it goes so that a run stopped in stage 2 goes on from there.

It learns from fresh posterior draws z = mu + sigma * eps of the training subset's
stage-1 posteriors (new eps every epoch) and generates u ~ N(0, I),
z = f2(u) + gamma_z * eps with its learned decoder scale gamma_z; stage 1 decodes z.
The `two_stage` prior (vae/priors.py) is its only user.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from vae.diagnostics import diagnostics
from vae.inference import decode, encode
from vae.losses import DEFAULT_LOSS
from vae.models import Stage2Config, Stage2VAE
from vae.train_config import EpochReport, TrainConfig, TrainResult
from vae.trainer import Trainer, new_trainer
from vae_sweep.errors import InputError
from vae_sweep.files import content_key

logger = logging.getLogger(__name__)

STAGE2_INPUTS = ("posterior_draws", "means")  # the first is the default
EPOCHS = 2 * TrainConfig.epochs  # the study's 1200 for stage 1's 600
# in a saved stage-2 state: the stage 1 and the stage-2 settings it belongs to
RESUME_KEY = "resume_key"


@dataclass(frozen=True)
class TwoStageOptions:
    # None: stage 1's latent size, as Dai & Wipf's code has it (one latent_dim for
    # both stages); the stage-1 latent size (stage 2's input) comes from stage 1
    latent_dim: int | None = None
    layout: str = Stage2Config.layout  # vae.models.STAGE2_LAYOUTS
    hidden: tuple[int, ...] | None = None  # None: the layout's widths
    # what stage 2 learns from: Dai & Wipf's fresh posterior draws, or the means
    inputs: str = STAGE2_INPUTS[0]
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=EPOCHS))
    loss: str = DEFAULT_LOSS
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
        latent_dim=options.latent_dim or means.shape[1],
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
        if _resumable(checkpoint.saved, key, options.train):
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
    from and every stage-2 setting but its budget, epochs or steps (a resume may ask for
    more, as stage 1's may) and the device (the state moves)."""
    train = {k: v for k, v in asdict(options.train).items()
             if k not in ("epochs", "steps", "device")}  # fmt: skip
    return content_key(stage1=stage1_key, model=asdict(config), train=train,
                       inputs=options.inputs, loss=options.loss,
                       kl_weight=options.kl_weight)  # fmt: skip


def _resumable(saved: dict | None, key: str, train: TrainConfig) -> bool:
    if saved is None:
        return False
    if train.steps is None:  # no further than the budget asks
        within = saved.get("epoch", train.epochs + 1) <= train.epochs
    else:
        within = saved.get("step", train.steps + 1) <= train.steps
    if saved.get(RESUME_KEY) == key and within:
        return True
    logger.warning(
        "stage 2: the saved state was trained for another stage 1 (one that trained "
        "on since), with other stage-2 settings, or for longer than asked; "
        "stage 2 starts over"
    )
    return False


class _Saver:
    """Epoch callback: gives stage 2's state to its checkpoint (by time, and last)."""

    def __init__(self, trainer: Trainer, checkpoint: Stage2Checkpoint, key: str):
        self.trainer, self.checkpoint, self.key = trainer, checkpoint, key
        self.last = time.monotonic()

    def __call__(self, report: EpochReport) -> None:
        last = self.trainer.budget_spent
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


def fit_stage2(
    means: np.ndarray,
    log_vars: np.ndarray | None,
    options: TwoStageOptions,
    *,
    stage1: torch.nn.Module,
    checkpoint: Stage2Checkpoint | None = None,
    progress: bool = False,
) -> Stage2Fit:
    """Train stage 2 on a stage-1 model's posteriors ((N, latent) means and log
    variances) and diagnose its own latent on the means."""
    model, gamma, result = train_stage2_model(
        means,
        log_vars,
        options,
        progress=progress,
        checkpoint=checkpoint,
        stage1_key=model_key(stage1) if checkpoint else "",
    )
    # its own latent on what it trained on: variance law, inactive dimensions
    mean_u, log_var_u = encode(model, diagnostic_inputs(means, log_vars, options))
    return Stage2Fit(model, gamma, result, diagnostics(mean_u, log_var_u))


def diagnostic_inputs(
    means: np.ndarray, log_vars: np.ndarray | None, options: TwoStageOptions
) -> np.ndarray:
    """One draw of what stage 2 trains on, (N, latent) float32: the posterior draws
    z = mu + sigma * eps (eps from the training seed's own stream), or the means."""
    means = np.asarray(means, dtype=np.float64)
    if options.inputs != "posterior_draws" or log_vars is None:
        return means.astype(np.float32)
    eps = np.random.default_rng([options.train.seed, 2]).standard_normal(means.shape)
    return (means + np.exp(0.5 * np.asarray(log_vars)) * eps).astype(np.float32)
