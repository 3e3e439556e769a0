"""A trial's time, in its budget's unit: stage 1 trains for epochs or for optimizer
steps (`stage1.steps`), reports in rounds, and every grid setting counted in time
(eval.every, checkpoint_every, the scheduler's grace_period) is in that unit."""

from __future__ import annotations

from sweep.config import GridConfig


def budget_unit(config: GridConfig, stage: str = "stage1") -> str:
    """`step` when a stage trains by steps (its section or a grid axis), else
    `epoch`: the unit of its budget and of every setting counted in time."""
    steps = getattr(config, stage).steps is not None or f"{stage}.steps" in config.grid
    return "step" if steps else "epoch"


DEFAULT_ROUNDS = 10  # checkpoint_every's and grace_period's default, in rounds


def in_units(config: GridConfig, value: int | None) -> int:
    """A stage-1 count in its budget's unit, None being DEFAULT_ROUNDS rounds."""
    if value is not None:
        return value
    step = budget_unit(config) == "step"
    return DEFAULT_ROUNDS * (config.stage1.round_steps if step else 1)


def checkpoint_rounds(config: GridConfig) -> int:
    """Rounds between checkpoints (checkpoint_every is in the budget's unit)."""
    every = in_units(config, config.checkpoint_every)
    if budget_unit(config) == "step":
        return every // config.stage1.round_steps
    return every


def budget_end(config: GridConfig) -> int:
    """The largest stage-1 budget of the grid's trials, in its unit."""
    name = "steps" if budget_unit(config) == "step" else "epochs"
    return max(config.grid.get(f"stage1.{name}", [getattr(config.stage1, name)]))
