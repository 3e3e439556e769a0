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
from collections.abc import Iterable
from dataclasses import asdict

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from vae.losses import DEFAULT_LOSS, build_loss, describe_loss
from vae.models import MODELS, VAE, Stage1Config, Stage2Config, build_model
from vae.train_config import (
    PLATEAU_ROUNDS,
    EpochCallback,
    EpochReport,
    TrainConfig,
    TrainResult,
)
from vae_sweep.devices import resolve_device
from vae_sweep.errors import InputError, first_line
from vae_sweep.files import atomic_path

CHECKPOINT_FORMAT = 2  # 1: before step budgets (read too: whole epochs only)


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
        self.bounds = batch_bounds(len(data), config.batch_size)
        self.optimizer = torch.optim.Adam(
            [*self.model.parameters(), *self.loss.parameters()], lr=config.lr
        )
        patience = config.lr_patience
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            factor=config.lr_factor,
            patience=PLATEAU_ROUNDS if patience is None else config.rounds(patience),
            threshold=0.0,
            min_lr=config.min_lr,
        )
        # private random streams, so callbacks drawing random numbers between rounds
        # (intermediate FID samples) cannot change the training run
        shuffle_seed, noise_seed = derived_seeds(config.seed, 2)
        self.shuffle = torch.Generator().manual_seed(shuffle_seed)
        with self._own_rng(seed=noise_seed):
            pass  # records the seeded states as the noise stream's start
        self.epoch = 0  # rounds completed
        self.step = 0  # optimizer steps done
        self.images = 0  # training samples processed
        # the current pass over the data: its order and the next batch in it
        self._order: torch.Tensor | None = None
        self._cursor = 0
        self.outcome = "running"
        self.history: list[EpochReport] = []
        self.progress = progress
        self.desc = desc

    @property
    def total_rounds(self) -> int:
        c = self.config
        return c.epochs if c.steps is None else -(-c.steps // c.round_steps)

    @property
    def budget_spent(self) -> bool:
        c = self.config
        return self.epoch >= c.epochs if c.steps is None else self.step >= c.steps

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

    def _next_batch(self) -> torch.Tensor:
        """The indices of the next batch, a fresh order at each pass's start."""
        if self._order is None or self._cursor == len(self.bounds):
            self._order = torch.randperm(len(self.data), generator=self.shuffle)
            self._cursor = 0
        start, stop = self.bounds[self._cursor]
        self._cursor += 1
        return self._order[start:stop]

    def _round_batches(self) -> int:
        """Batches in the next round: the rest of this pass (an epoch), or up to
        round_steps within the step budget."""
        c = self.config
        if c.steps is None:
            whole = self._order is None or self._cursor == len(self.bounds)
            return len(self.bounds) - (0 if whole else self._cursor)
        return min(c.round_steps, c.steps - self.step)

    def _set_scheduled_lr(self) -> None:
        c = self.config
        if c.lr_schedule == "step":
            done = self.epoch if c.steps is None else self.step
            lr = max(c.lr * c.lr_factor ** (done // c.lr_step), c.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def _round(self) -> EpochReport | None:
        """One round of training; None if the loss became NaN or infinite."""
        started = time.perf_counter()
        self._set_scheduled_lr()
        lr = self.optimizer.param_groups[0]["lr"]
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        coordinates = 0  # per sample, of what the model reconstructs (not the data)
        n = 0
        self.model.train()
        batches = tqdm(
            range(self._round_batches()),
            desc=f"{self.desc} {self.config.unit} round "
            f"{self.epoch + 1}/{self.total_rounds}",
            leave=False,
            # None: only on a terminal, so logs get one line per round, not per batch
            disable=None if self.progress else True,
        )
        with self._own_rng():
            for _ in batches:
                x = self._prepare(self.data[self._next_batch().to(self.device)])
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
                size = len(x)
                sums += torch.stack(
                    [terms.total.detach() * size, terms.squared_error, terms.kl * size]
                )
                n += size
                self.step += 1
        self.images += n
        seconds = time.perf_counter() - started
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
            gamma=getattr(self.loss, "gamma", None),
            step=self.step,
            images_seen=self.images,
        )

    def run(
        self,
        callbacks: Iterable[EpochCallback] = (),
        *,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
    ) -> TrainResult:
        """Train until the budget is spent (counting what ran before a resume);
        `checkpoint_every` is in rounds."""
        callbacks = list(callbacks)
        started = time.perf_counter()
        rounds = tqdm(
            total=self.total_rounds,
            initial=self.epoch,
            desc=self.desc,
            unit="round" if self.config.steps else "epoch",
            disable=not self.progress,
        )
        self.outcome = "completed"
        while not self.budget_spent:
            report = self._round()
            if report is None:
                self.outcome = "diverged"
                break
            self.epoch = report.epoch
            self.history.append(report)
            if self.config.lr_schedule == "plateau":
                self.schedule.step(report.loss)
            rounds.update(1)
            rounds.set_postfix(loss=f"{report.loss:.4g}", mse=f"{report.mse:.4g}")
            last = self.budget_spent
            if checkpoint and (last or self.epoch % checkpoint_every == 0):
                self.save(checkpoint)
            # every callback sees every round, even after one has asked to stop
            if any([bool(callback(report)) for callback in callbacks]) and not last:
                self.outcome = "stopped"
                break
        rounds.close()
        if checkpoint and self.outcome != "completed":
            self.save(checkpoint)
        return TrainResult(self.outcome, self.epoch, list(self.history),
                           time.perf_counter() - started, self.step)  # fmt: skip

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
            "step": self.step,
            "images_seen": self.images,
            "order": self._order,
            "cursor": self._cursor,
            "outcome": self.outcome,
            "history": [asdict(r) for r in self.history],
            "rng": rng,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") not in (1, CHECKPOINT_FORMAT):
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
        # format 1 ran whole epochs only: every pass complete, none begun
        self.step = int(state.get("step", self.epoch * len(self.bounds)))
        self.images = int(state.get("images_seen", self.epoch * len(self.data)))
        self._order, self._cursor = state.get("order"), int(state.get("cursor", 0))
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
        raise InputError(f"{path}: not a readable checkpoint ({first_line(error)})"
                         ) from None


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
