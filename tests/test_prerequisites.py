"""Criterion scores beside the trials: tasks, their cache, and the searcher that holds
back the trials that need them (sweep.prerequisites)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from selection.criteria import ScoreBook
from sweep.cluster import start_local
from sweep.prerequisites import (
    FEATURES,
    GATES,
    GatedTrials,
    Prerequisites,
    waiting_for,
)
from tests.helpers.standin import GATE_CAPPED
from tests.helpers.sweeps import sweep, sweep_env, tables

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    start_local(num_cpus=2, include_dashboard=False, log_to_driver=False)  # on loopback
    yield
    ray.shutdown()


@ray.remote(num_returns=2)
def _scores_when(signal, values):
    ray.get(signal[0])  # wait until the test lets the task finish
    return np.asarray(values, dtype=np.float64), {"seconds": 2.0, "started_at": 0,
                                                  "finished_at": 2}  # fmt: skip


@ray.remote
class _Signal:
    def __init__(self):
        self.event = threading.Event()

    def wait(self):
        self.event.wait()

    def fire(self):
        self.event.set()


def test_scores_are_computed_once_cached_and_then_ready_at_once(local_ray, tmp_path):
    book = ScoreBook({"recon": ("key-1", None)}, cache_dir=tmp_path)
    signal = _Signal.options(max_concurrency=2).remote()
    launches = []

    def launch():
        launches.append(1)
        return _scores_when.remote([signal.wait.remote()], [3.0, 1.0, 2.0])

    first = Prerequisites(book)
    first.start("recon", launch, gpu=0.5)
    assert not first.ready("recon") and book.cached("recon") is None
    ray.get(signal.fire.remote())
    ray.wait([first.refs()["recon"]])
    assert first.ready("recon")
    np.testing.assert_array_equal(book.cached("recon"), [3.0, 1.0, 2.0])
    assert first.gpu_seconds() == 2.0 * 0.5

    again = Prerequisites(ScoreBook({"recon": ("key-1", None)}, cache_dir=tmp_path))
    again.start("recon", launch, gpu=0.5)
    assert len(launches) == 1  # read from the cache: no second task
    assert again.ready("recon") and again.spans() == {"recon": None}
    np.testing.assert_array_equal(ray.get(again.refs()["recon"]), [3.0, 1.0, 2.0])
    assert again.gpu_seconds() == 0.0

    other = Prerequisites(ScoreBook({"recon": ("key-2", None)}, cache_dir=tmp_path))
    other.start("recon", launch)  # another key (other data or recipe): computed
    assert len(launches) == 2


def test_the_console_learns_which_prerequisites_are_still_computing(local_ray,
                                                                    tmp_path):
    keys = ["recon-0a1b2c3d", "recon-4e5f6a7b", "mahalanobis-8c9d0e1f", FEATURES]
    prerequisites = Prerequisites(
        ScoreBook({key: (key, None) for key in keys}, cache_dir=tmp_path)
    )
    signal = _Signal.options(max_concurrency=4).remote()
    released = [ray.put(None)]  # ready at once
    prerequisites.start("mahalanobis-8c9d0e1f",
                        lambda: _scores_when.remote(released, [1.0]))  # fmt: skip
    ray.wait([prerequisites.refs()["mahalanobis-8c9d0e1f"]])
    for key in ("recon-0a1b2c3d", "recon-4e5f6a7b", FEATURES):
        prerequisites.start(key, lambda: _scores_when.remote(
            [signal.wait.remote()], [2.0]), persist=False)  # fmt: skip
    GATES["gate/sweep"] = prerequisites
    try:
        assert waiting_for("gate/sweep") == {"recon": 2, "features": 1}
        # the console's poll finished the ready one as the searcher would: cached
        assert prerequisites.jobs["mahalanobis-8c9d0e1f"].error is None
        np.testing.assert_array_equal(
            prerequisites.book.cached("mahalanobis-8c9d0e1f"), [1.0])
        assert waiting_for("another/sweep") == {}  # none live in this driver
        ray.get(signal.fire.remote())
        prerequisites.wait_all()
        assert waiting_for("gate/sweep") == {}
    finally:
        GATES.pop("gate/sweep")


def test_a_failed_prerequisite_releases_its_trials_with_the_error(local_ray, tmp_path):
    @ray.remote(num_returns=2)
    def fails():
        raise RuntimeError("the reference VAE diverged at epoch 3")

    prerequisites = Prerequisites(ScoreBook({"recon": ("k", None)}, cache_dir=tmp_path))
    prerequisites.start("recon", fails.remote)
    prerequisites.wait_all()
    assert prerequisites.ready("recon")  # released, so the trial reports the error
    assert "diverged at epoch 3" in prerequisites.jobs["recon"].error
    assert prerequisites.book.cached("recon") is None
    with pytest.raises(RuntimeError, match="diverged at epoch 3"):
        ray.get(prerequisites.refs()["recon"])


class _Gate:
    def __init__(self):
        self.open = set()

    def ready(self, kind):
        return kind in self.open


def test_trials_that_need_scores_are_handed_out_only_once_they_exist(tmp_path):
    trials = [
        {"n_train": 10, "criterion": "lowest_recon", "seed": 0},
        {"n_train": 10, "criterion": "random", "seed": 0},
        {"n_train": 10, "criterion": "lowest_mahalanobis", "seed": 0},
        {"n_train": 20, "criterion": "all", "seed": 0},
    ]
    gate = GATES["test-sweep"] = _Gate()
    try:
        needs = [{"lowest_recon": "recon", "lowest_mahalanobis": "mahalanobis"}
                 .get(t["criterion"]) for t in trials]  # fmt: skip
        searcher = GatedTrials(trials, needs, gate="test-sweep")
        handed = [searcher.suggest(f"t{i}") for i in range(3)]
        # the score-free trials at once, in grid order; then nothing until scores
        assert handed == [{"trial": trials[1]}, {"trial": trials[3]}, None]
        gate.open.add("mahalanobis")
        assert searcher.suggest("t3") == {"trial": trials[2]}
        assert searcher.suggest("t4") is None

        # Tune saves the searcher with the experiment; a resumed driver restores it
        path = tmp_path / "searcher.json"
        searcher.save(str(path))
        restored = GatedTrials(trials, needs, gate="test-sweep")
        restored.restore(str(path))
        gate.open.add("recon")
        assert restored.suggest("t5") == {"trial": trials[0]}
        assert restored.suggest("t6") == GatedTrials.FINISHED
    finally:
        GATES.pop("test-sweep")


def _first_checkpoint(tmp_path) -> dict:
    """The gated stand-in's environment: x_train's features wait for a trial's first
    checkpoint, which its worker writes to the storage after its first epoch."""
    gate = str(tmp_path / "smoke" / "trial_*" / "checkpoint_*" / "trial.pt")
    return sweep_env(VAE_SWEEP_TEST_GATE=gate, VAE_SWEEP_TEST_GATE_AFTER="40")


def _first_epoch_end(history, criterion: str) -> float:
    rows = history[history["criterion"] == criterion]
    return float(rows.loc[rows["epoch"] == 1, "finished_at"].min())


def test_a_score_task_that_waits_for_features_does_not_wait_for_cpus(tmp_path,
                                                                     fresh_cache):
    """x_train's features arrive only once the random trial has written its first
    checkpoint (a gated stand-in network), so that trial holds a CPU and leaves too
    few for a Mahalanobis task that asks for one. Once that trial ends, nothing is
    pending or running, and Tune waits up to 10 minutes for its searcher without
    handling the trial's stop: its CPU stays reserved, so such a task waited 10
    minutes (and this sweep ran past its timeout) while the lowest_mahalanobis trial
    waited for its scores. The order is the gate's, not a race: a slow network (10 s)
    let a slowly starting trial come after the task in CI, and the test no longer
    tested its case. A cache of its own: x_train's features cached by another test
    would need no network."""
    result = sweep(
        tmp_path,
        "--set", "fid.extractor=tests.helpers.standin:make_gated_standin",
        "--set", "grid.n_train=[100]",
        "--set", "grid.criterion=[random, lowest_mahalanobis]",
        "--set", "selection.space=inception",
        "--set", "priors=[gaussian]",
        "--set", "checkpoint_every=1",  # the gate: the first epoch's checkpoint
        "--set", "fid_service.cpu=0.5",  # with the trial's 1: 0.5 CPU left of 2
        check=False, timeout=400,  # the 10 minutes waited: red well before
        env=_first_checkpoint(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results, history = tables(tmp_path)
    assert sorted(results["criterion"]) == ["lowest_mahalanobis", "random"]
    assert (results["status"] == "ok").all()
    assert not (tmp_path / "smoke" / GATE_CAPPED).exists()
    spans = json.loads((tmp_path / "smoke" / "timings.json").read_text())
    ran = spans["runs"][0]["prerequisites"]
    scores = next(span for key, span in ran.items() if key.startswith("mahalanobis"))
    # the case under test: the task became runnable while the random trial ran
    # (after its first epoch, with one of its two still to train)
    assert scores["started_at"] >= _first_epoch_end(history, "random")


def test_a_trial_that_measures_memorization_trains_before_the_features_exist(
    tmp_path, fresh_cache
):
    """Memorization reads x_train's features only for a trial's final metrics: the
    trial starts training at once and takes them at its end. The stand-in network
    here extracts x_train only once a trial has written its first checkpoint, so a
    trial that waited for the features would wait for itself (until the gate gives
    up, 120 s). A cache of its own: features cached by an earlier test would need no
    network."""
    sweep(
        tmp_path,
        "--set", "fid.extractor=tests.helpers.standin:make_gated_standin",
        "--set", "grid.n_train=[100]", "--set", "grid.criterion=[random]",
        "--set", "priors=[gaussian]", "--set", "fid.metrics=[fid, memorization]",
        "--set", "checkpoint_every=1",  # the gate: the first epoch's checkpoint
        "--set", "fid_service.cpu=0.5", timeout=400, env=_first_checkpoint(tmp_path),
    )  # fmt: skip
    results, history = tables(tmp_path)
    assert (results["status"] == "ok").all() and results["memorization"].notna().all()
    timings = json.loads((tmp_path / "smoke" / "timings.json").read_text())
    features = timings["runs"][0]["prerequisites"]["features"]
    # released by the trial's checkpoint, not by the gate giving up
    assert not (tmp_path / "smoke" / GATE_CAPPED).exists()
    assert _first_epoch_end(history, "random") < features["finished_at"]
