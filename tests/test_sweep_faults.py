"""`python -m sweep.run` under faults (DESIGN section 9): a trial that raises or
diverges, a killed FID actor, a driver killed by SIGKILL or stopped by Ctrl-C and
resumed, errored trials retried on request. Trials use the stand-in feature network."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time

import pandas as pd
import pytest

from sweep.reader import load_sweep
from tests.helpers.commands import run_command
from tests.helpers.data import ROOT, session_cache
from tests.helpers.processes import started
from tests.helpers.standin import DIE_MARKER_ENV
from tests.helpers.sweeps import quiet_sweep, sweep, sweep_command, sweep_env, tables
from tests.helpers.tune_logs import assert_resumed_log

pytestmark = pytest.mark.ray


def test_error_and_divergence_are_recorded_while_others_finish(tmp_path, small_cifar):
    # lr 1e6 makes the loss non-finite in epoch 1; 500 mixture components cannot be
    # fitted to 100 means, so the gmm prior raises inside that trial
    run = sweep(tmp_path, "--set", "grid.criterion=[random]",
                "--set", "grid.n_train=[100]",
                "--set", "grid.stage1.lr=[1.0e-3, 1.0e+6]",
                "--set", "grid.gmm.components=[2, 500]",
                "--set", "max_failures=1", check=False)  # fmt: skip
    # the tables are written, and the exit code says a trial failed (diverged ones
    # are results, not failures)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "error: 1 trial(s) ended in error" in run.stderr
    results, _ = tables(tmp_path)
    axes = ["stage1.lr", "gmm.components"]
    trials = results.drop_duplicates("trial_id").set_index(axes)
    assert len(trials) == 2 * 2
    for (lr, components), row in trials.iterrows():
        if lr > 1:
            assert row["status"] == "diverged" and row["stop_reason"] == "diverged"
        elif components == 500:
            assert row["status"] == "error"
            assert (
                "500 components need at least as many training images" in row["error"]
            )
        else:
            assert row["status"] == "ok"
    ok = results[results["status"] == "ok"]
    assert ok["fid"].notna().all() and len(ok) == 1 * 2
    assert trials["status"].value_counts().to_dict() == {"diverged": 2, "error": 1,
                                                         "ok": 1}  # fmt: skip
    # max_failures=1: the erroring trial ran twice, the others once
    state = max((tmp_path / "smoke").glob("experiment_state-*.json")).read_text()
    failures = sorted(int(n) for n in re.findall(r'num_failures\\": (\d+)', state))
    assert failures == [0] * 3 + [2]


# Six checkpointed epochs of three trials: work is left when the driver dies after the
# first trial finished, and an interrupted trial has checkpoints to go on from.
INTERRUPTIBLE = ["--set", "stage1.epochs=6", "--set", "checkpoint_every=1",
                 "--set", "grid.n_train=[100, 150, 200]",
                 "--set", "grid.criterion=[random]"]  # fmt: skip
# The stand-in network that kills the FID actor's process on its third call when
# $VAE_SWEEP_TEST_DIE_MARKER names a file not there yet (then writes it): otherwise
# the stand-in itself
DYING_ACTOR = ["--set", "fid.extractor=tests.helpers.standin:make_dying_standin"]


@pytest.fixture(scope="module")
def uninterrupted(small_cifar_root, tmp_path_factory):
    """The INTERRUPTIBLE sweep run once without a fault: the FIDs every faulted and
    resumed run of it must reproduce (trials are seeded, resume is exact)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    cache = session_cache(tmp_path_factory)
    sweep(folder, *INTERRUPTIBLE,
          env=sweep_env(VAE_SWEEP_DATA=str(small_cifar_root),
                        VAE_SWEEP_CACHE=str(cache)))  # fmt: skip
    results, _ = tables(folder)
    assert (results["status"] == "ok").all() and results["trial_id"].nunique() == 3
    return results


def assert_same_fids(results: pd.DataFrame, uninterrupted: pd.DataFrame) -> None:
    key = ["n_train", "prior"]
    pd.testing.assert_series_equal(
        uninterrupted.sort_values(key)["fid"].reset_index(drop=True),
        results.sort_values(key)["fid"].reset_index(drop=True),
        rtol=1e-9,
    )


def _finished_and_checkpointed(folder) -> bool:
    """A trial has finished, and one that has not holds a checkpoint."""
    finished = set(_finished_trials(folder))
    checkpoints = folder.glob("trial_*/checkpoint_*/trial.pt")
    unfinished = {p.parent.parent.name for p in checkpoints} - finished
    return bool(finished) and bool(unfinished)


def test_resume_after_driver_sigkill_runs_only_what_is_left(
    tmp_path, small_cifar, uninterrupted
):
    folder = tmp_path / "smoke"
    # killed with its group when the test leaves, even before the kill below
    with quiet_sweep(sweep_command(tmp_path, *INTERRUPTIBLE)) as driver:
        deadline = time.time() + 300
        # kill the driver once a trial has finished and a later one has a checkpoint
        # (the storage's result.json, which says a trial finished, comes with Tune's
        # periodic sync: a later trial may not have checkpointed yet when it does)
        while time.time() < deadline and not _finished_and_checkpointed(folder):
            time.sleep(0.5)
        assert _finished_and_checkpointed(folder), \
            "no trial finished while a later one held a checkpoint"
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and every process it started
        killed_at = time.time()
        driver.wait()
    done_before = _finished_trials(folder)
    checkpointed = {p.parent.parent.name.removeprefix("trial_")
                    for p in folder.glob("trial_*/checkpoint_*/trial.pt")}  # fmt: skip
    assert not (folder / "results.parquet").exists()
    # the analysis of the killed sweep: rebuilt from Tune's state, reported partial
    killed = load_sweep(folder)
    assert killed.rebuilt and killed.partial and killed.expected_trials == 3
    assert set(killed.trials["status"]) <= {"ok", "unfinished"}
    assert (killed.trials["status"] == "unfinished").any()
    report = tmp_path / "report"
    run_command("experiments.analysis", str(folder), "--out", str(report),
                check_rc=0)  # fmt: skip
    assert "PARTIAL" in (report / "report.md").read_text()

    resumed = sweep(tmp_path, *INTERRUPTIBLE, "--resume")
    # the trials finished before the kill count as done, not pending, and Tune's
    # warning for each trial without a result yet is not printed
    assert "trials: 3 done, 0 running, 0 pending, 0 errored of 3" in resumed.stdout
    assert "Failed to fetch metrics" not in resumed.stderr
    results, history = tables(tmp_path)
    assert results["trial_id"].nunique() == 3 and len(results) == 3 * 2
    assert (results["status"] == "ok").all()
    assert not history.duplicated(["trial_id", "epoch"]).any() and len(history) == 3 * 6
    # trials finished before the kill were not run again
    for trial in done_before:
        assert _final_reports(folder / trial) == 1
    # a trial with a checkpoint at the kill went on from it: its first epoch is the
    # one that ran before the kill (our own records: history's finished_at)
    first = history[history["epoch"] == 1].set_index("trial_id")["finished_at"]
    assert checkpointed - {t.removeprefix("trial_") for t in done_before}, \
        "no unfinished trial had a checkpoint at the kill"  # fmt: skip
    for trial_id in checkpointed:
        assert first[trial_id] < killed_at, trial_id
    # what Tune itself recorded, before results.py de-duplicates: at most the epoch
    # in flight at the kill ran twice (its checkpoint may be missing), never epoch 1,
    # and one final report. (Tune's log may lack epochs: the driver writes it, and
    # the lines it had not written when it died are lost, as in [1, 2, 5, 6].)
    for log in folder.glob("trial_*/result.json"):
        assert_resumed_log(log.read_text(), last_epoch=6)
    # and the numbers are those of the sweep that was never interrupted
    assert_same_fids(results, uninterrupted)


@pytest.mark.parametrize("stop, to_group, code, word", [
    # a terminal's Ctrl-C reaches the whole process group, and stops it at once
    (signal.SIGINT, True, 130, "interrupted"),
    # a scheduler's or a pod eviction's SIGTERM reaches the driver alone (so does a
    # `kill`); before, Ray's handler died with a stack dump. Sent the moment a trial
    # has finished: Tune saves its state before it stops (sweep/stopping.py), where
    # its periodic save (every 10 s or more) would not have caught up
    (signal.SIGTERM, False, 143, "terminated"),
])  # fmt: skip
def test_ctrl_c_or_sigterm_stops_the_sweep_with_one_line_and_resume_completes_it(
    tmp_path, small_cifar, uninterrupted, stop, to_group, code, word
):
    """...and after Ctrl-C, the FID actor dies in the middle of the resume (the
    stand-in kills its process on its third call): Ray restarts it, the trials' calls
    retry, and the FIDs are still those of the uninterrupted sweep."""
    folder = tmp_path / "smoke"
    errors = tmp_path / "stderr.txt"
    actor_died = tmp_path / "actor-died"
    # the same grid for both runs (a resume refuses changed keys); only the resume's
    # environment arms the death
    args = [*INTERRUPTIBLE, *(DYING_ACTOR if stop == signal.SIGINT else [])]
    # the driver and its Ray are killed when the test leaves, passed or not
    with errors.open("w") as stderr, started(
        sweep_command(tmp_path, *args), cwd=ROOT, env=sweep_env(),
        stdout=subprocess.PIPE, stderr=stderr, text=True,
    ) as driver:  # fmt: skip
        done = threading.Event()  # the console's line for a trial that finished

        def read_console():
            for line in driver.stdout:  # read to its end: a full pipe would block it
                if re.match(r"\[[0-9hms]+\] done ", line):
                    done.set()

        threading.Thread(target=read_console, daemon=True).start()
        deadline = time.time() + 300
        if stop == signal.SIGINT:  # mid-trial
            while time.time() < deadline and not list(folder.glob("trial_*/check*")):
                time.sleep(0.2)
        else:  # the moment a trial has finished
            assert done.wait(300), "no trial finished in time"
        if to_group:
            os.killpg(driver.pid, stop)
        else:
            os.kill(driver.pid, stop)
        interrupted = time.time()
        driver.wait(timeout=120)
    error = errors.read_text()
    assert driver.returncode == code, error[-3000:]
    assert time.time() - interrupted < 30  # a scheduler's usual grace before SIGKILL
    ours = [line for line in error.splitlines() if line.startswith(word)]
    assert ours == [f"{word}: continue with the same command and --resume "
                    f"({folder})"], error[-3000:]  # fmt: skip
    assert "Traceback" not in error and "logging.cc" not in error  # Ray's dump
    assert "Tuner.restore" not in error  # Tune's advice, not ours
    assert "Failed to fetch metrics" not in error  # Tune's line per unstarted trial
    # no tables from a sweep that did not finish, and no half-written file
    assert not (folder / "results.parquet").exists()
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]
    # the stopped run's accounting (its replicas' time counts in the sweep's total)
    timings = json.loads((folder / "timings.json").read_text())
    assert [run["stopped"] for run in timings["runs"]] == [word]
    assert timings["runs"][0]["driver_seconds"]["tune_fit"] > 0
    assert timings["gpu_hours"] is None
    recorded = _tune_statuses(folder)
    if stop == signal.SIGTERM:  # Tune's state, saved at the stop, has the trial done
        assert len(recorded) == 3 and "TERMINATED" in recorded.values(), recorded
    sweep(tmp_path, *args, "--resume",
          env=sweep_env(**{DIE_MARKER_ENV: str(actor_died)}))  # fmt: skip
    # the actor really died mid-resume (its third call: at least two trials are left)
    assert actor_died.exists() == (stop == signal.SIGINT)
    results, history = tables(tmp_path)
    assert (results["status"] == "ok").all() and results["trial_id"].nunique() == 3
    assert len(history) == 3 * 6 and not history.duplicated(["trial_id", "epoch"]).any()
    assert_same_fids(results, uninterrupted)
    timings = json.loads((folder / "timings.json").read_text())
    assert [run["stopped"] for run in timings["runs"]] == [word, None]
    assert timings["trials"] == 3
    # a trial recorded finished did not run again (one whose final report Tune had
    # logged, but not yet its end, may: sweep/stopping.py)
    for trial_id, status in recorded.items():
        if status == "TERMINATED":
            assert _final_reports(folder / f"trial_{trial_id}") == 1, trial_id


def test_resume_retries_errored_trials_only_when_asked(tmp_path, small_cifar):
    from tests.helpers.standin import FAIL_MARKER_ENV

    marker = tmp_path / "fault-fixed"
    env = sweep_env(**{FAIL_MARKER_ENV: str(marker)})
    args = ["--set", "fid.extractor=tests.helpers.standin:make_failing_finals",
            "--set", "grid.criterion=[random]"]  # fmt: skip
    failed = sweep(tmp_path, *args, env=env, check=False)
    assert failed.returncode == 1 and "2 trial(s) ended in error" in failed.stderr
    results, _ = tables(tmp_path)
    assert (results["status"] == "error").all() and len(results) == 2 * 2
    assert results["error"].str.contains("simulated fault in the final FID").all()

    marker.write_text("fixed")
    kept = sweep(tmp_path, *args, "--resume", env=env, check=False)
    assert kept.returncode == 1, kept.stderr[-3000:]
    assert "2 errored (kept as errors; --retry-errored retries them)" in kept.stdout
    # the console counts them as errored, not as pending work
    assert "trials: 0 done, 0 running, 0 pending, 2 errored of 2" in kept.stdout
    assert (tables(tmp_path)[0]["status"] == "error").all()

    retried = sweep(tmp_path, *args, "--resume", "--retry-errored", env=env)
    assert "2 errored (retried from their last checkpoints)" in retried.stdout
    assert "trials: 2 done, 0 running, 0 pending, 0 errored of 2" in retried.stdout
    results, history = tables(tmp_path)
    assert (results["status"] == "ok").all() and results["fid"].notna().all()
    assert len(history) == 2 * 2
    for trial in (tmp_path / "smoke").glob("trial_*"):  # went on from the checkpoint
        records = (trial / "result.json").read_text()
        assert records.count('"epoch": 1,') == 1


def _final_reports(trial_folder) -> int:
    file = trial_folder / "result.json"
    return file.read_text().count('"phase": "final"') if file.exists() else 0


def _tune_statuses(folder) -> dict[str, str]:
    """Each trial's status in Tune's newest saved experiment state."""
    state = json.loads(max(folder.glob("experiment_state-*.json")).read_text())
    trials = [json.loads(entry[0]) for entry in state["trial_data"]]
    return {trial["trial_id"]: trial["status"] for trial in trials}


def _finished_trials(folder) -> list[str]:
    if not folder.is_dir():
        return []
    return [p.name for p in folder.glob("trial_*") if _final_reports(p)]
