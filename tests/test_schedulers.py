"""What a --resume restores of the early-stopping schedulers (sweep.schedulers)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pyarrow import fs
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule

from sweep.checkpoints import repair_checkpoint
from sweep.folder import STATE_FILE
from sweep.schedulers import (
    ReplayingASHA,
    ReplayingMedianStopping,
    recorded_results,
)
from tests.helpers.commands import assert_one_line_error, ray_started, run_command
from tests.helpers.data import ROOT

# three trials' intermediate FIDs by epoch, as they arrived in the live sweep
HISTORIES = {
    "a": [0.9, 0.7, 0.6, 0.5],
    "b": [0.8, 0.8, 0.9],
    "c": [1.0, 0.95],
}
ARRIVAL = [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1),
           ("a", 2), ("b", 2), ("a", 3)]  # fmt: skip


class _Trial:
    """Tune's Trial as the schedulers see it: an id, hashable, and where its
    result.json lies in storage."""

    def __init__(self, tmp_path, name):
        self.folder = tmp_path / name
        self.folder.mkdir()
        self.trial_id = name
        local = fs.LocalFileSystem()
        self.storage = SimpleNamespace(trial_fs_path=str(self.folder),
                                       storage_filesystem=local)  # fmt: skip

    def record(self, result: dict) -> None:
        with open(self.folder / "result.json", "a") as file:
            file.write(json.dumps(result) + "\n")

    def __repr__(self):
        return self.trial_id


OPTIONS = {"time_attr": "epoch", "metric": "fid_intermediate", "mode": "min"}
CONTROLLER = SimpleNamespace(get_live_trials=lambda: [])  # Tune's, as they use it


def _live(scheduler, tmp_path) -> dict:
    """Feed the results in arrival order, as Tune does: a trial told to stop
    reports no more. Each trial's result.json records what it reported."""
    trials = {name: _Trial(tmp_path, name) for name in HISTORIES}
    for trial in trials.values():
        scheduler.on_trial_add(CONTROLLER, trial)
    stopped = set()
    for name, index in ARRIVAL:
        if name in stopped:
            continue
        result = {"epoch": index + 1, "fid_intermediate": HISTORIES[name][index]}
        trials[name].record(result)
        if scheduler.on_trial_result(CONTROLLER, trials[name], result) == "STOP":
            stopped.add(name)
    return trials


def _restored(scheduler, trials: dict):
    for trial in trials.values():  # what Tune does for each trial on --resume
        scheduler.on_trial_add(CONTROLLER, trial)
    return scheduler


def test_a_resumed_asha_has_the_rungs_of_the_live_one(tmp_path):
    asha = {"max_t": 10, "grace_period": 1, "reduction_factor": 2, **OPTIONS}
    live = ASHAScheduler(**asha)
    trials = _live(live, tmp_path)
    restored = _restored(ReplayingASHA(**asha), trials)
    rungs = [dict(r) for _, r in live._brackets[0]._rungs]
    assert rungs == [dict(r) for _, r in restored._brackets[0]._rungs]
    assert sum(len(r) for r in rungs) >= 4  # history that a plain ASHA would lose
    fresh = _restored(ASHAScheduler(**asha), trials)
    assert not any(dict(r) for _, r in fresh._brackets[0]._rungs)


def test_a_resumed_median_rule_has_every_trials_history(tmp_path):
    median = {"grace_period": 1, "min_samples_required": 1, **OPTIONS}
    live = MedianStoppingRule(**median)
    trials = _live(live, tmp_path)
    restored = _restored(ReplayingMedianStopping(**median), trials)
    for trial in trials.values():
        assert restored._results[trial] == live._results[trial]
    assert sum(len(v) for v in live._results.values()) >= 6


def test_a_trial_that_never_reported_has_no_history(tmp_path):
    storage = SimpleNamespace(trial_fs_path=str(tmp_path / "none"),
                              storage_filesystem=fs.LocalFileSystem())  # fmt: skip
    assert recorded_results(SimpleNamespace(storage=storage)) == []
    new = SimpleNamespace(trial_dir_name=None)  # Tune's, before the trial has a folder
    assert recorded_results(SimpleNamespace(storage=new)) == []


def test_a_hyperband_sweep_refuses_resume_in_one_line(tmp_path):
    result = run_command("sweep.run", str(ROOT / "grids" / "early_stop.yaml"),
                         "--resume", "--set", "scheduler.name=hyperband",
                         "--set", f"storage={tmp_path}")  # fmt: skip
    assert_one_line_error(result, "Tune cannot restore HyperBand's brackets")
    assert list(tmp_path.iterdir()) == [] and not ray_started()


@pytest.mark.parametrize("args, needle", [
    (["--retry-errored"], "--retry-errored retries a sweep's errored trials"),
    (["--address", "auto"], "is a folder on this machine only"),
])  # fmt: skip
def test_cluster_and_resume_options_are_checked_first(tmp_path, args, needle):
    result = run_command("sweep.run", str(ROOT / "grids" / "smoke.yaml"), *args,
                         "--set", f"storage={tmp_path}")  # fmt: skip
    assert_one_line_error(result, needle)
    assert list(tmp_path.iterdir()) == [] and not ray_started()


def _checkpointed_trial(tmp_path, named: str, complete: list[str], empty=()):
    """A restored trial whose experiment state names `named`; its folder holds the
    `complete` checkpoints (with the state file) and the `empty` ones (folder only)."""
    for name in [*complete, *empty]:
        (tmp_path / name).mkdir(parents=True)
    for name in complete:
        (tmp_path / name / STATE_FILE).write_bytes(b"state")
    return restored_trial(fs.LocalFileSystem(), str(tmp_path), named)


def restored_trial(filesystem: fs.FileSystem, folder: str, named: str):
    """What Tune hands the scheduler for a trial it restores: its folder in storage
    and the checkpoint its experiment state names (`named`, in that folder)."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    latest = _TrainingResult(Checkpoint(f"{folder}/{named}", filesystem=filesystem),
                             {"epoch": 2})  # fmt: skip
    manager = SimpleNamespace(_latest_checkpoint_result=latest,
                              _checkpoint_results=[latest])  # fmt: skip
    return SimpleNamespace(
        latest_checkpoint_result=latest,
        storage=SimpleNamespace(trial_fs_path=folder, trial_dir_name="t"),
        run_metadata=SimpleNamespace(checkpoint_manager=manager),
    )


def test_a_resume_starts_from_a_checkpoint_that_exists(tmp_path):
    # the experiment state names checkpoint 1, which Tune has since deleted
    trial = _checkpointed_trial(tmp_path / "a", "checkpoint_000001",
                                ["checkpoint_000003", "checkpoint_000004"])  # fmt: skip
    assert repair_checkpoint(trial) == str(tmp_path / "a" / "checkpoint_000004")
    manager = trial.run_metadata.checkpoint_manager
    assert manager._latest_checkpoint_result.checkpoint.path.endswith("000004")
    assert manager._latest_checkpoint_result.metrics == {"epoch": 2}

    present = _checkpointed_trial(tmp_path / "b", "checkpoint_000002",
                                  ["checkpoint_000002"])  # fmt: skip
    assert repair_checkpoint(present) == str(tmp_path / "b" / "checkpoint_000002")

    gone = _checkpointed_trial(tmp_path / "c", "checkpoint_000002", [])
    (tmp_path / "c").mkdir()
    assert repair_checkpoint(gone) is None  # nothing left: the trial starts over
    assert gone.run_metadata.checkpoint_manager._checkpoint_results == []


CKPT3 = "checkpoint_000003"


def test_a_resume_skips_checkpoint_folders_without_their_state_file(tmp_path):
    # killed while Tune uploaded checkpoint 4 (folder made, file not yet copied)
    uploading = _checkpointed_trial(tmp_path / "a", "checkpoint_000001",
                                    [CKPT3], ["checkpoint_000004"])  # fmt: skip
    assert repair_checkpoint(uploading) == str(tmp_path / "a" / "checkpoint_000003")
    # killed while Tune deleted the checkpoint the state names (file gone, folder left)
    deleting = _checkpointed_trial(tmp_path / "b", "checkpoint_000002",
                                   [CKPT3], ["checkpoint_000002"])  # fmt: skip
    assert repair_checkpoint(deleting) == str(tmp_path / "b" / "checkpoint_000003")
    only_empty = _checkpointed_trial(tmp_path / "c", "checkpoint_000002", [],
                                     ["checkpoint_000002", CKPT3])  # fmt: skip
    assert repair_checkpoint(only_empty) is None


def test_schedulers_count_time_in_the_budgets_unit():
    from sweep.config import GridConfig
    from sweep.schedulers import scheduler

    epochs = GridConfig.model_validate({
        "name": "e", "stage1": {"epochs": 40}, "eval": {"every": 5},
        "scheduler": {"name": "asha"}})  # fmt: skip
    asha = scheduler(epochs)
    assert asha._time_attr == "epoch" and asha._max_t == 41
    assert asha._brackets[0]._rungs[-1][0] == 10  # grace: 10 rounds, epochs
    steps = GridConfig.model_validate({
        "name": "s", "stage1": {"steps": 4000, "round_steps": 200},
        "eval": {"every": 400}, "scheduler": {"name": "asha"},
        "grid": {"stage1.steps": [4000, 6000]}})  # fmt: skip
    asha = scheduler(steps)
    assert asha._time_attr == "step" and asha._max_t == 6001
    assert asha._brackets[0]._rungs[-1][0] == 2000  # 10 rounds of 200 steps
    options = steps.scheduler.model_copy(update={"name": "median", "grace_period": 800})
    median = scheduler(steps.model_copy(update={"scheduler": options}))
    assert median._time_attr == "step" and median._grace_period == 800
