"""The sweep's compact console (sweep/console.py): its lines, its estimate of what is
left (by hand), and its terminal block as a terminal emulator (pyte) shows it."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pyte
import pytest

from sweep.config import GridConfig
from sweep.console import ConsoleView, duration
from sweep.cost import estimate, slots, trial_seconds
from sweep.trials import expand

CONFIG = GridConfig(
    name="c",
    grid={"n_train": [100, 200, 300], "criterion": ["random"], "seed": [0]},
    priors=["gaussian", "gmm"],
    stage1={"epochs": 4},
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trial(n_train: int, error_file: str = "") -> SimpleNamespace:
    axes = {"n_train": n_train, "criterion": "random", "seed": 0}
    return SimpleNamespace(config={"trial": axes}, trial_id=f"t{n_train}",
                           error_file=error_file)  # fmt: skip


def view(terminal: bool, stream=None):
    clock = Clock()
    console = ConsoleView(CONFIG, expand(CONFIG), stream=stream or io.StringIO(),
                          terminal=terminal, clock=clock, size=(100, 12))  # fmt: skip
    for row in console.rows.values():
        row.estimate_s = 100.0  # by hand below; the cost model is tested apart
    return console, clock


def test_durations():
    assert [duration(s) for s in (0, 45.4, 60, 725, 3600, 12_000)] == [
        "0s", "45s", "1m00s", "12m05s", "1h00m", "3h20m"]  # fmt: skip


def test_a_log_gets_one_line_per_event_and_the_overall_line(tmp_path):
    console, clock = view(terminal=False)
    first, second, third = trial(100), trial(200), trial(300)
    console.on_trial_start(0, [], first)
    clock.now += 30
    console.on_trial_result(0, [], first, {"epoch": 2, "step": 4, "loss_mse": 0.0123,
                                           "fid_intermediate": 141.26})  # fmt: skip
    console.on_trial_start(0, [], second)
    clock.now += 170  # the first ends 200 s after it started: twice its estimate
    console.on_trial_result(0, [], first, {"epoch": 4, "phase": "final",
                                           "fid_gaussian": 120.04, "fid_gmm": 99.96,
                                           "loss_mse": 0.01})  # fmt: skip
    console.on_trial_complete(0, [], first)
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    assert console.counts() == {"done": 1, "running": 1, "pending": 1, "error": 0}
    # left: the running trial 2 x 100 - 170 s, the pending one 2 x 100 s, over the
    # two trials that ran at once: (30 + 200) / 2
    assert console.remaining_s(clock.now) == pytest.approx(115.0)
    assert console.overall(clock.now) == (
        "trials: 1 done, 1 running, 1 pending, 0 errored of 3; elapsed 3m20s, "
        "about 1m55s left")  # fmt: skip
    clock.now += 60
    console.on_step_end(0, [])
    third.error_file = str(error)
    console.on_trial_start(0, [], third)
    console.on_trial_error(0, [], third)
    lines = console.stream.getvalue().splitlines()
    assert lines[0] == "[0s] running   n_train=100,criterion=random,seed=0"
    assert lines[1] == "[30s] running   n_train=200,criterion=random,seed=0"
    assert lines[2] == ("[3m20s] done      n_train=100,criterion=random,seed=0  "
                        "epoch 4/4  loss 0.01  fid gaussian 120.0 gmm 100.0  3m20s")
    assert lines[3].startswith("[4m20s] trials: 1 done, 1 running, 1 pending")
    assert lines[4] == "    running   n_train=200,criterion=random,seed=0  3m50s"
    assert lines[5].startswith("[4m20s] running   n_train=300")
    assert lines[6] == ("[4m20s] error     n_train=300,criterion=random,seed=0  "
                        "error: ValueError: boom")  # fmt: skip
    console.on_step_end(0, [])  # within a minute of the last: nothing more
    assert len(console.stream.getvalue().splitlines()) == 7


def test_the_overall_line_names_the_prerequisites_still_computing():
    waiting = {"recon": 5, "features": 1, "k_center": 2, "mahalanobis": 1}
    console = ConsoleView(CONFIG, expand(CONFIG), stream=io.StringIO(),
                          terminal=False, clock=Clock(),
                          waiting=lambda: waiting)  # fmt: skip
    assert console.overall(1000.0).endswith(
        "; computing first: x_train's FID features, k_center scores (2), "
        "mahalanobis scores, reference VAEs (5)")  # fmt: skip
    waiting.clear()  # all ready: the line is the plain one again
    assert console.overall(1000.0).endswith("left")

    def broken():
        raise OSError("the score cache is full")

    console.waiting = broken  # a progress line never ends the sweep
    assert console.overall(1000.0).endswith("left")


def test_a_resume_counts_the_trials_that_ended_before_it():
    console, clock = view(terminal=False)
    first, second, third = (trial(n) for n in (100, 200, 300))
    names = [f"n_train={n},criterion=random,seed=0" for n in (100, 200, 300)]
    console.ended_before({names[0]: "TERMINATED", names[1]: "ERROR",
                          names[2]: "PENDING", "a trial not in the grid": "TERMINATED"},
                         retry_errored=False)  # fmt: skip
    assert console.counts() == {"done": 1, "running": 0, "pending": 1, "error": 1}
    console.on_trial_start(0, [], third)
    clock.now += 50
    # left: only the running trial's 100 - 50 s; the earlier ones carry no time and
    # do not scale the estimate
    assert console.overall(clock.now) == (
        "trials: 1 done, 1 running, 0 pending, 1 errored of 3; elapsed 50s, "
        "about 50s left")  # fmt: skip
    retried, _ = view(terminal=False)
    retried.ended_before({names[1]: "ERROR"}, retry_errored=True)
    assert retried.counts()["pending"] == 3  # an errored trial retried is work left


def test_a_terminal_shows_one_block_redrawn_in_place():
    screen = pyte.Screen(100, 12)
    stream = pyte.Stream(screen)

    class Terminal(io.StringIO):  # what the view writes, fed to the emulator
        def write(self, text):
            stream.feed(text.replace("\n", "\r\n"))
            return len(text)

    console, clock = view(terminal=True, stream=Terminal())
    trials = [trial(n) for n in (100, 200, 300)]
    for item in trials:
        console.on_trial_start(0, [], item)
        clock.now += 5
    for step in range(3):
        clock.now += 2
        console.on_trial_result(0, [], trials[0], {"epoch": step + 1, "loss_mse": 0.5})
        console.on_step_end(0, [])
    console.on_trial_complete(0, [], trials[1])
    clock.now += 2
    console.on_step_end(0, [])
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert shown == [
        "running   n_train=100,criterion=random,seed=0  epoch 3/4  loss 0.5  23s",
        "running   n_train=300,criterion=random,seed=0  13s",
        "done      n_train=200,criterion=random,seed=0  16s",
        "trials: 1 done, 2 running, 0 pending, 0 errored of 3; elapsed 23s, about "
        + duration(console.remaining_s(clock.now)) + " left",
    ]


def test_the_cost_models_trial_seconds_add_up_to_the_dry_runs():
    trials = expand(CONFIG, 1000)
    total = sum(trial_seconds(CONFIG, params) for params in trials)
    layout = slots(CONFIG, len(trials), cpus=2)
    hours = estimate(CONFIG, trials, layout)["trial_hours"]
    assert total == pytest.approx(hours * 3600)
    # by hand: 4 epochs of n images at 65 images/s, 2 priors x 10,000 samples at 13/s
    assert trial_seconds(CONFIG, trials[0]) == pytest.approx(4 * 100 / 65 + 20_000 / 13)


def test_the_block_fits_a_small_terminal():
    console, clock = view(terminal=True)
    console._size = (40, 5)  # columns, lines
    for n in (100, 200, 300):
        console.on_trial_start(0, [], trial(n))
    block = console.block(clock.now)
    # two trial rows (the height less the overall line and two spare), then the
    # overall line, each cut one short of the width
    assert len(block) == 3 and all(len(line) == 39 for line in block)
    assert block[0].startswith("running   n_train=100") and block[-1].startswith(
        "trials: 0 done, 3 running")  # fmt: skip
