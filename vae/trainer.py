"""Train one VAE (either stage): Adam at 1e-4, halved when the epoch loss stops falling.

`Trainer` owns everything a run needs to continue exactly where it stopped: model,
objective, optimizer, LR schedule, epoch counter and its own random streams. Its
`state_dict()` is the checkpoint; loading it and running on gives the same weights, bit
for bit on CPU, as never having stopped. Callers observe and steer a run through
per-epoch callbacks (the sweep reports metrics and stops trials through them).

The command line that trains one model is `python -m vae.train` (vae/train.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vae.losses import DEFAULT_LOSS, build_loss, describe_loss
from vae.models import MODELS, VAE, Stage1Config, Stage2Config, build_model
from vae_sweep.devices import resolve_device
from vae_sweep.errors import InputError
from vae_sweep.files import atomic_path

CHECKPOINT_FORMAT = 1
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 600
    batch_size: int = 100
    lr: float = 1e-4
    lr_factor: float = 0.5  # "halved"
    # epochs without a new best loss before the LR is cut; 0 cuts on the first epoch
    # that does not improve, which on noisy epoch losses halves far too eagerly
    lr_patience: int = 5
    min_lr: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # bf16: autocast on the device (CUDA, or CPU)
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        if not self.lr > 0 or not 0 < self.lr_factor < 1:
            raise InputError(
                f"lr must be > 0 and lr_factor in (0, 1), got {self.lr}, "
                f"{self.lr_factor}"
            )
        if self.precision not in PRECISIONS:
            raise InputError(
                f"precision must be one of {', '.join(PRECISIONS)}, got "
                f"{self.precision!r}"
            )


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # epochs completed, from 1
    loss: float  # the objective, mean per sample
    mse: float  # per-pixel (per-coordinate for stage 2) squared error
    kl: float  # mean per sample
    lr: float  # the LR this epoch ran at
    seconds: float
    samples_per_second: float
    # wall clock (Unix seconds) at the epoch's end: the order results arrived in, for
    # replaying a scheduler's decisions offline (experiments.replay)
    finished_at: float = 0.0


@dataclass
class TrainResult:
    outcome: str  # completed | stopped (a callback asked) | diverged (non-finite loss)
    epochs: int
    history: list[EpochReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> EpochReport | None:
        return self.history[-1] if self.history else None


# Returns True to stop training after this epoch.
EpochCallback = Callable[[EpochReport], bool | None]


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) per batch; a last batch of one sample joins the one before it,
    since batch norm cannot train on a single sample."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


class Trainer:
    def __init__(
        self,
        model: VAE,
        loss: nn.Module,
        data: torch.Tensor,
        config: TrainConfig,
        *,
        progress: bool = False,
        desc: str = "train",
    ):
        if len(data) < 2:
            raise InputError(f"need at least 2 training samples, got {len(data)}")
        self.config = config
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.loss = loss.to(self.device)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.data = data.to(self.device)
        self.optimizer = torch.optim.Adam(
            [*self.model.parameters(), *self.loss.parameters()], lr=config.lr
        )
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            factor=config.lr_factor,
            patience=config.lr_patience,
            threshold=0.0,
            min_lr=config.min_lr,
        )
        # private random streams, so callbacks drawing random numbers between epochs
        # (intermediate FID samples) cannot change the training run
        shuffle_seed, noise_seed = derived_seeds(config.seed, 2)
        self.shuffle = torch.Generator().manual_seed(shuffle_seed)
        with self._own_rng(seed=noise_seed):
            pass  # records the seeded states as the noise stream's start
        self.epoch = 0
        self.outcome = "running"
        self.history: list[EpochReport] = []
        self.progress = progress
        self.desc = desc

    @contextlib.contextmanager
    def _own_rng(self, seed: int | None = None):
        devices = [self.device.index] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(self._rng_cpu)
                if devices:
                    torch.cuda.set_rng_state(self._rng_cuda, self.device)
            yield
            self._rng_cpu = torch.get_rng_state()
            if devices:
                self._rng_cuda = torch.cuda.get_rng_state(self.device)

    def _autocast(self):
        # bf16 on CPU too: CPUs with bf16 instructions (AVX512-BF16, AMX) run it
        # faster than fp32 (about 1.6x for a 32-64 channel model on this one)
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.model.prepare(batch)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def _epoch(self) -> EpochReport | None:
        """One pass over the data; None if the loss became NaN or infinite."""
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        order = torch.randperm(len(self.data), generator=self.shuffle).to(self.device)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        coordinates = 0  # per sample, of what the model reconstructs (not the data)
        bounds = batch_bounds(len(order), self.config.batch_size)
        self.model.train()
        batches = tqdm(
            bounds,
            desc=f"{self.desc} epoch {self.epoch + 1}/{self.config.epochs}",
            leave=False,
            # None: only on a terminal, so logs get one line per epoch, not per batch
            disable=None if self.progress else True,
        )
        with self._own_rng():
            for start, stop in batches:
                x = self._prepare(self.data[order[start:stop]])
                coordinates = x[0].numel()
                with self._autocast():
                    recon, mean, log_var = self.forward(x)
                terms = self.loss(x, recon.float(), mean.float(), log_var.float())
                if not torch.isfinite(terms.total):
                    return None
                self.optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                self.optimizer.step()
                # summed on the device: one host sync per batch (the check above)
                size = stop - start
                sums += torch.stack(
                    [terms.total.detach() * size, terms.squared_error, terms.kl * size]
                )
        seconds = time.perf_counter() - started
        n = len(order)
        total, squared, kl = sums.tolist()  # objective, squared error, KL
        return EpochReport(
            epoch=self.epoch + 1,
            loss=total / n,
            mse=squared / (n * coordinates),
            kl=kl / n,
            lr=lr,
            seconds=seconds,
            samples_per_second=n / seconds,
            finished_at=time.time(),
        )

    def run(
        self,
        callbacks: Iterable[EpochCallback] = (),
        *,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
    ) -> TrainResult:
        """Train until `config.epochs` (counting epochs already run before a resume)."""
        callbacks = list(callbacks)
        started = time.perf_counter()
        epochs = tqdm(
            total=self.config.epochs,
            initial=self.epoch,
            desc=self.desc,
            unit="epoch",
            disable=not self.progress,
        )
        self.outcome = "completed"
        while self.epoch < self.config.epochs:
            report = self._epoch()
            if report is None:
                self.outcome = "diverged"
                break
            self.epoch = report.epoch
            self.history.append(report)
            self.schedule.step(report.loss)
            epochs.update(1)
            epochs.set_postfix(loss=f"{report.loss:.4g}", mse=f"{report.mse:.4g}")
            last = self.epoch == self.config.epochs
            if checkpoint and (last or self.epoch % checkpoint_every == 0):
                self.save(checkpoint)
            # every callback sees every epoch, even after one has asked to stop
            if any([bool(callback(report)) for callback in callbacks]) and not last:
                self.outcome = "stopped"
                break
        epochs.close()
        if checkpoint and self.outcome != "completed":
            self.save(checkpoint)
        return TrainResult(
            self.outcome, self.epoch, list(self.history), time.perf_counter() - started
        )

    def state_dict(self) -> dict:
        rng = {"cpu": self._rng_cpu, "shuffle": self.shuffle.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = self._rng_cuda
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.describe(),
            "model_state": self.model.state_dict(),
            "loss": describe_loss(self.loss),
            "loss_state": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "train_config": asdict(self.config),
            "epoch": self.epoch,
            "outcome": self.outcome,
            "history": [asdict(r) for r in self.history],
            "rng": rng,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(
                f"checkpoint format {state.get('format')} is not supported"
            )
        same = _widths_as_tuples(state["model"]) == _widths_as_tuples(
            self.model.describe()
        )
        if not same:
            raise InputError(
                f"checkpoint holds model {state['model']}, not {self.model.describe()}"
            )
        self.model.load_state_dict(state["model_state"])
        self.loss.load_state_dict(state["loss_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.epoch = int(state["epoch"])
        self.outcome = state["outcome"]
        self.history = [EpochReport(**r) for r in state["history"]]
        self.shuffle.set_state(state["rng"]["shuffle"])
        self._rng_cpu = state["rng"]["cpu"]
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            self._rng_cuda = state["rng"]["cuda"]

    def save(self, path: str | os.PathLike) -> None:
        write_checkpoint(self.state_dict(), path)


def _widths_as_tuples(description: dict) -> dict:
    """A model description with its width lists as tuples: a checkpoint written from
    command-line widths (lists) describes the same model as a config of tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in description.items()}


def write_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """A training state to a file, atomically (readers see the old file or the new)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint") from None
    except Exception as error:  # a truncated or foreign file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: not a readable checkpoint ({reason})") from None


def load_model(path_or_state, device: str | torch.device = "cpu") -> VAE:
    """The model of a checkpoint file or `Trainer.state_dict()`, in eval mode."""
    state = (
        path_or_state
        if isinstance(path_or_state, dict)
        else read_checkpoint(path_or_state)
    )
    model = build_model(state["model"])
    model.load_state_dict(state["model_state"])
    return model.to(device).eval()


def derived_seeds(seed: int, count: int) -> list[int]:
    """`count` independent seeds from one, so no two streams share a sequence."""
    children = np.random.SeedSequence(seed).spawn(count)
    return [int(child.generate_state(1)[0]) for child in children]


def new_trainer(
    model_config: Stage1Config | Stage2Config,
    data: torch.Tensor,
    config: TrainConfig,
    *,
    loss: str = DEFAULT_LOSS,
    kl_weight: float = 1.0,
    progress: bool = False,
    desc: str = "train",
) -> Trainer:
    """A trainer whose initial weights come from `config.seed` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MODELS[model_config.kind][0](model_config)
    return Trainer(
        model,
        build_loss(loss, kl_weight=kl_weight),
        data,
        config,
        progress=progress,
        desc=desc,
    )
