"""What one stage's training is asked to do (`TrainConfig`), and what it reports: a
round at a time (`EpochReport`), and as a whole (`TrainResult`). The trainer that does
it is vae/trainer.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vae_sweep.errors import InputError

PRECISIONS = ("fp32", "bf16")


LR_SCHEDULES = ("plateau", "step")  # the first is the default


PLATEAU_ROUNDS = 5  # lr_patience's default, in rounds


@dataclass(frozen=True)
class TrainConfig:
    """One stage's training. The budget is `epochs` (passes over the data) or `steps`
    (optimizer steps), exactly one of them: models trained on sets of different sizes
    are comparable at equal steps only (an epoch of 50,000 images is 20 of 2,500).

    Training reports in rounds: an epoch under an epoch budget, `round_steps`
    optimizer steps under a step budget (the last one cut at the budget). A round's
    report averages its batches; the LR plateau rule and the callbacks see rounds.
    Every setting counted in time is in the budget's unit: epochs, or steps (then a
    multiple of `round_steps`)."""

    epochs: int | None = 600
    steps: int | None = None
    round_steps: int = 100
    batch_size: int = 100
    lr: float = 1e-4
    lr_factor: float = 0.5  # "halved"
    # plateau: cut by lr_factor once more than lr_patience (None: PLATEAU_ROUNDS
    # rounds) bring no new best round loss (0 cuts on the first round that does not
    # improve: on noisy losses far too eagerly); step: cut every lr_step, as Dai &
    # Wipf's code does (its stage 2: 0.5 every 300 of 800 epochs)
    lr_schedule: str = LR_SCHEDULES[0]
    lr_patience: int | None = None
    lr_step: int | None = None
    min_lr: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # bf16: autocast on the device (CUDA, or CPU)
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if (self.epochs is None) == (self.steps is None):
            raise InputError(f"give epochs or steps, one of them (epochs = "
                             f"{self.epochs}, steps = {self.steps})")  # fmt: skip
        for name in ("epochs", "steps", "round_steps", "batch_size", "lr_step"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1, got {value}")
        if self.lr_patience is not None and self.lr_patience < 0:
            raise InputError(f"lr_patience must be at least 0, got {self.lr_patience}")
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
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"got {self.lr_schedule!r}")  # fmt: skip
        if (self.lr_schedule == "step") != (self.lr_step is not None):
            raise InputError(f"lr_step goes with lr_schedule step, which needs it "
                             f"(lr_schedule = {self.lr_schedule}, lr_step = "
                             f"{self.lr_step})")  # fmt: skip
        for name in ("lr_patience", "lr_step"):
            value = getattr(self, name)
            if self.steps is None or value is None:
                continue
            if value % self.round_steps:
                raise InputError(
                    f"{name} = {value} is no multiple of round_steps = "
                    f"{self.round_steps} (under a step budget it counts optimizer "
                    f"updates, seen a round at a time)"
                )

    @property
    def unit(self) -> str:
        return "epoch" if self.steps is None else "step"

    def rounds(self, value: int) -> int:
        """A count in the budget's unit as rounds."""
        return value if self.steps is None else value // self.round_steps


@dataclass(frozen=True)
class EpochReport:
    """One round of training (an epoch under an epoch budget)."""

    epoch: int  # rounds completed, from 1 (epochs under an epoch budget)
    loss: float  # the objective, mean per sample
    mse: float  # per-pixel (per-coordinate for stage 2) squared error
    kl: float  # mean per sample
    lr: float  # the LR this round ran at
    seconds: float
    samples_per_second: float
    # wall clock (Unix seconds) at the round's end: the order results arrived in, for
    # replaying a scheduler's decisions offline (experiments.replay)
    finished_at: float = 0.0
    # the decoder scale at the round's end (learned, or the calibrated one of the last
    # batch); None for an objective without one (mse)
    gamma: float | None = None
    step: int = 0  # optimizer steps done at the round's end
    images_seen: int = 0  # training samples processed by then (with repeats)


@dataclass
class TrainResult:
    outcome: str  # completed | stopped (a callback asked) | diverged (non-finite loss)
    epochs: int  # rounds run
    history: list[EpochReport] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0

    @property
    def final(self) -> EpochReport | None:
        return self.history[-1] if self.history else None


# Returns True to stop training after this round.
EpochCallback = Callable[[EpochReport], bool | None]
