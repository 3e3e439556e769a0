"""The early-stopping schedulers, by name, and what survives a `--resume`.

Checkpoints. Every scheduler here points each restored trial at its newest complete
checkpoint (`sweep.checkpoints.repair_checkpoint`): the one Tune's lagging experiment
state names may be gone or half written.

Tune does not save a scheduler's state with the experiment: a resumed sweep gets the
scheduler as it was created, with no history, and would judge the trials that go on
against nothing. When Tune restores a sweep it adds every trial, finished or not, to
the fresh scheduler (`on_trial_add`); the schedulers here then feed it that trial's
recorded results, in order, from its `result.json` in storage. ASHA's rungs and the
median rule's per-trial histories depend only on the results recorded, not on the
order trials arrived in, so the restored state is the state the sweep had when it
stopped. HyperBand's synchronous brackets also depend on pausing and resuming trials
in step, which a replay cannot redo: a HyperBand sweep refuses `--resume`.
"""

from __future__ import annotations

import json
import logging

from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
)

from sweep.budget import budget_end, budget_unit, in_units
from sweep.checkpoints import repair_checkpoint
from sweep.config import GridConfig

METRIC = "fid_intermediate"
RESUMABLE = ("none", "asha", "median")
logger = logging.getLogger(__name__)


def recorded_results(trial) -> list[dict]:
    """The results a trial reported before the sweep stopped, oldest first."""
    storage = getattr(trial, "storage", None)
    if storage is None or getattr(storage, "trial_dir_name", "") is None:
        return []  # a new trial: no folder, no history yet
    path = f"{storage.trial_fs_path}/result.json"
    try:
        with storage.storage_filesystem.open_input_stream(path) as stream:
            text = stream.read().decode()
    except (FileNotFoundError, OSError):
        return []  # a trial that never reported
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class _Restore:
    """Mixin: a trial added to the scheduler on --resume starts from a checkpoint
    that exists."""

    def on_trial_add(self, tune_controller, trial) -> None:
        if getattr(getattr(trial, "storage", None), "trial_dir_name", None):
            repair_checkpoint(trial)
        super().on_trial_add(tune_controller, trial)


class _Replay(_Restore):
    """Mixin: a trial added to the scheduler brings its recorded results along."""

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        history = recorded_results(trial)
        for result in history:
            super().on_trial_result(tune_controller, trial, result)  # decisions: past
        if history:
            logger.info("%s: replayed %d results", trial, len(history))


class RestoringFIFO(_Restore, FIFOScheduler):
    pass


class ReplayingASHA(_Replay, ASHAScheduler):
    pass


class ReplayingMedianStopping(_Replay, MedianStoppingRule):
    pass


def scheduler(config: GridConfig):
    """Trials compared at equal time: epochs, or optimizer steps under a step budget
    (trials of different n_train then at equal compute)."""
    options = config.scheduler
    # one past the last stage-1 epoch (step): a trial that survives every rung must
    # not be stopped at its last one, before its priors are scored
    epochs = budget_end(config) + 1
    grace = in_units(config, options.grace_period)
    common = {"time_attr": budget_unit(config), "metric": METRIC, "mode": "min"}
    if options.name == "asha":
        return ReplayingASHA(
            max_t=epochs,
            grace_period=grace,
            reduction_factor=options.reduction_factor,
            **common,
        )
    if options.name == "median":
        return ReplayingMedianStopping(
            grace_period=grace,
            min_samples_required=options.min_samples_required,
            **common,
        )
    if options.name == "hyperband":
        return HyperBandScheduler(
            max_t=epochs, reduction_factor=options.reduction_factor, **common
        )
    return RestoringFIFO()
