"""`python -m sweep.run` end to end on a local Ray: the smoke grid with tiny settings,
and each fault case (DESIGN section 9). Trials use the stand-in feature network."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.early_stopping import check_replay
from experiments.replay import REPLAYABLE
from experiments.sweeps import load_sweep
from tests.conftest import ROOT, cifar_path
from tests.standin import DIE_MARKER_ENV
from tests.test_cli import _run
from tests.tune_logs import assert_resumed_log

pytestmark = pytest.mark.ray

SMOKE = str(ROOT / "grids" / "smoke.yaml")
TINY = [
    "--set", "fid.extractor=tests.standin:make_standin",
    "--set", "data.train_limit=300",
    "--set", "data.test_limit=40",
    "--set", "grid.n_train=[100, 200]",
    "--set", "stage1.epochs=2",
    "--set", "stage1.batch_size=50",
    "--set", "selection.reference_epochs=1",
    "--set", "fid.samples=20",
]  # fmt: skip
RESULT_COLUMNS = {
    "experiment", "trial_id", "n_train", "criterion", "seed", "prior", "fid",
    "fid_samples", "loss_mse", "variance_law", "inactive_dims", "epochs_run",
    "stop_reason", "status", "error", "wall_seconds", "gpu_seconds", "config_hash",
    "package_version", "dataset_sha256", "fid_network", "started_at", "finished_at",
}  # fmt: skip


def _env(**extra) -> dict:
    # Ray workers are started by this run's raylet and inherit its environment:
    # PYTHONPATH lets them import the stand-in network from tests/
    return {**os.environ, "PYTHONPATH": str(ROOT), "VAE_SWEEP_DATA": str(cifar_path()),
            **extra}  # fmt: skip


def sweep(tmp_path, *args, env=None, check=True, storage=None):
    result = subprocess.run(
        [sys.executable, "-m", "sweep.run", SMOKE, "--set",
         f"storage={storage or tmp_path}", *TINY, *args],
        cwd=ROOT, capture_output=True, text=True, env=env or _env(), timeout=600,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _tables(tmp_path, name="smoke"):
    folder = tmp_path / name
    return (pd.read_parquet(folder / "results.parquet"),
            pd.read_parquet(folder / "history.parquet"))  # fmt: skip


def test_smoke_grid_end_to_end(tmp_path, small_cifar, fresh_cache):
    from importlib.metadata import version

    from selection.datasets import load_cifar10

    storage = f"file://{tmp_path}"  # a URI storage, as on a cluster's shared disk
    result = sweep(tmp_path, storage=storage)
    results, history = _tables(tmp_path)
    assert set(results.columns) >= RESULT_COLUMNS
    # 2 sizes x 2 criteria x 1 seed = 4 trials, x 2 priors = 8 rows
    assert len(results) == 8 and results["trial_id"].nunique() == 4
    assert (results["status"] == "ok").all() and results["error"].isna().all()
    assert set(results["prior"]) == {"gaussian", "gmm"}
    assert (results["fid"] > 0).all() and (results["fid_samples"] == 20).all()
    assert (results["epochs_run"] == 2).all()
    assert sorted(results.drop_duplicates("trial_id")["n_train"]) == [
        100,
        100,
        200,
        200,
    ]
    assert set(results["criterion"]) == {"random", "lowest_recon"}
    assert results["fid_network"].eq("standin-v1").all()
    # one history row per trial and epoch
    assert len(history) == 4 * 2 and not history.duplicated(["trial_id", "epoch"]).any()
    assert (tmp_path / "smoke" / "grid.yaml").is_file()
    assert "trials: 4 (4 ok)" in result.stdout
    # the columns' values, each against another source
    trials = results.drop_duplicates("trial_id").set_index("trial_id")
    last = history.sort_values("epoch").groupby("trial_id").last()
    np.testing.assert_allclose(trials["loss_mse"], last.loc[trials.index, "loss_mse"])
    assert (trials["stop_reason"] == "completed").all()
    span = (trials["finished_at"] - trials["started_at"]).dt.total_seconds()
    assert (trials["wall_seconds"] > 0).all()
    assert (trials["wall_seconds"] <= span + 1).all()  # Tune's clock: whole seconds
    assert (results["gpu_seconds"] == 0).all()
    assert results["package_version"].eq(version("vae-sweep")).all()
    pool = load_cifar10(small_cifar, "train", limit=300, progress=False)
    reference = load_cifar10(small_cifar, "test", limit=40, progress=False)
    assert results["dataset_sha256"].eq(pool.sha256).all()
    assert results["test_sha256"].eq(reference.sha256).all()
    timings = json.loads((tmp_path / "smoke" / "timings.json").read_text())
    assert timings["trials"] == 4 and len(timings["runs"]) == 1
    assert timings["trial_seconds_sum"] == pytest.approx(trials["wall_seconds"].sum())
    spans = timings["runs"][0]["prerequisites"]
    assert [k.split("-")[0] for k in spans] == ["recon"]  # lowest_recon's only
    assert spans[next(iter(spans))]["seconds"] > 0 and timings["gpu_hours"] == 0
    # the same command again refuses to overwrite the sweep
    again = sweep(tmp_path, check=False, storage=storage)
    assert again.returncode == 2 and "pass --resume" in again.stderr


def test_error_and_divergence_are_recorded_while_others_finish(tmp_path, small_cifar):
    # lr 1e6 makes the loss non-finite in epoch 1; 500 mixture components cannot be
    # fitted to 100 or 200 means, so the gmm prior raises inside those trials
    sweep(tmp_path, "--set", "grid.criterion=[random]",
          "--set", "grid.stage1.lr=[1.0e-3, 1.0e+6]",
          "--set", "grid.gmm.components=[2, 500]",
          "--set", "max_failures=1")  # fmt: skip
    results, _ = _tables(tmp_path)
    axes = ["n_train", "stage1.lr", "gmm.components"]
    trials = results.drop_duplicates("trial_id").set_index(axes)
    assert len(trials) == 2 * 2 * 2
    for (_n, lr, components), row in trials.iterrows():
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
    assert ok["fid"].notna().all() and len(ok) == 2 * 2
    # max_failures=1: each erroring trial ran twice, the others once
    state = max((tmp_path / "smoke").glob("experiment_state-*.json")).read_text()
    failures = sorted(int(n) for n in re.findall(r'num_failures\\": (\d+)', state))
    assert failures == [0] * 6 + [2] * 2


def test_killed_fid_actor_restarts_and_callers_retry(tmp_path, small_cifar):
    baseline = tmp_path / "baseline"
    sweep(baseline, "--set", "grid.criterion=[random]")
    marker = tmp_path / "actor-died"
    sweep(tmp_path / "faulty", "--set", "grid.criterion=[random]",
          "--set", "fid.extractor=tests.standin:make_dying_standin",
          env=_env(**{DIE_MARKER_ENV: str(marker)}))  # fmt: skip
    assert marker.exists()  # the actor really died mid-sweep
    clean, _ = _tables(baseline)
    faulty, _ = _tables(tmp_path / "faulty")
    assert (faulty["status"] == "ok").all()
    key = ["n_train", "prior"]
    pd.testing.assert_series_equal(
        clean.sort_values(key)["fid"].reset_index(drop=True),
        faulty.sort_values(key)["fid"].reset_index(drop=True),
    )


def test_resume_after_driver_sigkill_runs_only_what_is_left(tmp_path, small_cifar):
    args = [
        "--set",
        "stage1.epochs=6",
        "--set",
        "checkpoint_every=1",
        "--set",
        "grid.n_train=[100, 150, 200]",
        "--set",
        "grid.criterion=[random]",
    ]
    command = [sys.executable, "-m", "sweep.run", SMOKE, "--set", f"storage={tmp_path}",
               *TINY, *args]  # fmt: skip
    driver = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    folder = tmp_path / "smoke"
    deadline = time.time() + 300
    # kill the driver once the first trial has finished and a later one has started
    while time.time() < deadline and not _finished_trials(folder):
        time.sleep(0.5)
    assert _finished_trials(folder), "no trial finished in time"
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
    _run("-m", "experiments.analysis", str(folder), "--out", str(report),
         check_rc=0)  # fmt: skip
    assert "PARTIAL" in (report / "report.md").read_text()

    sweep(tmp_path, *args, "--resume")
    results, history = _tables(tmp_path)
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


def test_ctrl_c_stops_the_sweep_with_one_line_and_resume_completes_it(
    tmp_path, small_cifar
):
    args = ["--set", "stage1.epochs=6", "--set", "checkpoint_every=1",
            "--set", "grid.criterion=[random]"]  # fmt: skip
    command = [sys.executable, "-m", "sweep.run", SMOKE, "--set", f"storage={tmp_path}",
               *TINY, *args]  # fmt: skip
    driver = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    folder = tmp_path / "smoke"
    deadline = time.time() + 300
    while time.time() < deadline and not list(folder.glob("trial_*/checkpoint_*")):
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
    interrupted = time.time()
    _, error = driver.communicate(timeout=120)
    assert driver.returncode == 130, error[-3000:]
    assert time.time() - interrupted < 20
    ours = [line for line in error.splitlines() if line.startswith("interrupted")]
    assert ours == [f"interrupted: continue with the same command and --resume "
                    f"({folder})"], error[-3000:]  # fmt: skip
    assert "Traceback" not in error
    # no tables from a sweep that did not finish, and no half-written file
    assert not (folder / "results.parquet").exists()
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]
    sweep(tmp_path, *args, "--resume")
    results, history = _tables(tmp_path)
    assert (results["status"] == "ok").all() and results["trial_id"].nunique() == 2
    assert len(history) == 2 * 6 and not history.duplicated(["trial_id", "epoch"]).any()


def test_resume_retries_errored_trials_only_when_asked(tmp_path, small_cifar):
    from tests.standin import FAIL_MARKER_ENV

    marker = tmp_path / "fault-fixed"
    env = _env(**{FAIL_MARKER_ENV: str(marker)})
    args = ["--set", "fid.extractor=tests.standin:make_failing_finals",
            "--set", "grid.criterion=[random]"]  # fmt: skip
    sweep(tmp_path, *args, env=env)
    results, _ = _tables(tmp_path)
    assert (results["status"] == "error").all() and len(results) == 2 * 2
    assert results["error"].str.contains("simulated fault in the final FID").all()

    marker.write_text("fixed")
    kept = sweep(tmp_path, *args, "--resume", env=env)
    assert "2 errored (kept as errors; --retry-errored retries them)" in kept.stdout
    assert (_tables(tmp_path)[0]["status"] == "error").all()

    retried = sweep(tmp_path, *args, "--resume", "--retry-errored", env=env)
    assert "2 errored (retried from their last checkpoints)" in retried.stdout
    results, history = _tables(tmp_path)
    assert (results["status"] == "ok").all() and results["fid"].notna().all()
    assert len(history) == 2 * 2
    for trial in (tmp_path / "smoke").glob("trial_*"):  # went on from the checkpoint
        records = (trial / "result.json").read_text()
        assert records.count('"epoch": 1,') == 1


def _final_reports(trial_folder) -> int:
    file = trial_folder / "result.json"
    return file.read_text().count('"phase": "final"') if file.exists() else 0


def _finished_trials(folder) -> list[str]:
    if not folder.is_dir():
        return []
    return [p.name for p in folder.glob("trial_*") if _final_reports(p)]


# With the stand-in network and the smoke subset (300 training images spread over the
# classes), intermediate FIDs by learning rate, epochs 1-4: 1e-2: 0.73, 0.73, 0.80,
# 0.75; 1e-9 (near-frozen): 0.86, 0.84, 0.83, 0.81; 3e-2: 0.78, 1.19, 0.92, 0.97. ASHA
# (grace 1, eta 2, one trial at a time) stops 1e-9 at epoch 1 (0.86 against 0.73) and
# 3e-2 at 2 (1.19 against 0.73); the median rule stops them at 1 and 3. HyperBand (eta
# 3, max_t 5) first fills a 2-trial bracket that never halves, so it gets two more
# trials in front, and stops the two large rates.
SCHEDULED = {  # eta, learning rates, those stopped, the one that must finish
    "asha": ("2", "[1.0e-2, 1.0e-9, 3.0e-2]", {1e-9, 3e-2}, 1e-2),
    "median": ("2", "[1.0e-2, 1.0e-9, 3.0e-2]", {1e-9, 3e-2}, 1e-2),
    "hyperband": ("3", "[1.0e-9, 1.5e-9, 2.0e-9, 1.0e-2, 3.0e-2]", {1e-2, 3e-2}, 1e-9),
}


SCHEDULER_GRID = ["--set", "scheduler.grace_period=1",
                  "--set", "scheduler.min_samples_required=1",
                  "--set", "eval.every=1", "--set", "eval.samples=20",
                  "--set", "stage1.epochs=4", "--set", "grid.n_train=[100]",
                  "--set", "grid.criterion=[random]"]  # fmt: skip


@pytest.fixture(scope="module")
def exhaustive_run(tmp_path_factory):
    """The ASHA and median grid run to the end (scheduler none), for the replay."""
    folder = tmp_path_factory.mktemp("exhaustive")
    sweep(folder, *SCHEDULER_GRID, "--set", "scheduler.reduction_factor=2",
          "--set", f"grid.stage1.lr={SCHEDULED['asha'][1]}")  # fmt: skip
    return folder / "smoke"


@pytest.mark.parametrize("scheduler", list(SCHEDULED))
def test_schedulers_stop_poor_trials_which_still_get_rows(
    tmp_path, cifar_root, scheduler, request
):
    eta, lrs, poor, best = SCHEDULED[scheduler]
    result = sweep(tmp_path, "--set", f"scheduler.name={scheduler}",
                   "--set", f"scheduler.reduction_factor={eta}", *SCHEDULER_GRID,
                   "--set", f"grid.stage1.lr={lrs}")  # fmt: skip
    results, history = _tables(tmp_path)
    trials = results.drop_duplicates("trial_id").set_index("stage1.lr")
    count = lrs.count(",") + 1
    assert len(trials) == count and len(results) == count * 2, result.stdout[-2000:]
    assert set(trials["status"]) <= {"ok", "stopped"}
    stopped = trials[trials["status"] == "stopped"]
    # the two poor trials are stopped, the best one never is;
    # HyperBand may also stop the last survivor of its halving bracket at its end
    assert poor <= set(stopped.index), trials["status"].tolist()
    assert trials.loc[best, "status"] == "ok"
    assert (stopped["epochs_run"] < 4).all()
    assert (stopped["stop_reason"] == "scheduler").all()
    assert results.loc[results["status"] == "stopped", "fid"].isna().all()
    assert results.loc[results["status"] == "ok", "fid"].notna().all()
    assert stopped["fid_intermediate"].notna().all()
    assert history["fid_intermediate"].notna().all()
    if scheduler in REPLAYABLE:
        # the offline replay of the exhaustive run stops the same trials at the same
        # epochs as the live scheduler did
        exhaustive = load_sweep(request.getfixturevalue("exhaustive_run"))
        assert exhaustive.grid.scheduler.name == "none"
        assert (exhaustive.trials["status"] == "ok").all()
        live = load_sweep(tmp_path / "smoke")
        # one trial at a time by construction (1 CPU per trial and 1 for the FID
        # actor on 2 cores); measured from Tune's whole-second clocks it once read 2
        check = check_replay(exhaustive, live, sorted(live.grid.grid), slots=1)
        assert len(check) == 3 and check["agree"].all(), check.to_string()
        assert check["live_stopped_at"].notna().sum() >= 2


def _command_table(module, args, monkeypatch, tmp_path, name):
    import fid.options
    from tests.standin import StandInExtractor

    monkeypatch.setattr(
        fid.options, "InceptionExtractor", lambda *a, **k: StandInExtractor()
    )
    module.main([*args, "--data", str(cifar_path()), "--test-limit", "40", "--quiet",
                 "--out", str(tmp_path / "cli")])  # fmt: skip
    return pd.read_parquet(tmp_path / "cli" / f"{name}.parquet")


def test_fid_repeated_kind_matches_the_e1_command(tmp_path, small_cifar, monkeypatch):
    from experiments import fid_repeated

    sweep(tmp_path, "--set", "kind=fid_repeated", "--set", "name=e1",
          "--set", "data.train_limit=null", "--set", "fid_service.gpu=0",
          "--set", "e1.sizes=[2, 5]", "--set", "e1.count=10",
          "--set", "e1.repetitions=2")  # fmt: skip
    results, _ = _tables(tmp_path, "e1")
    assert len(results) == 2 * 2 and (results["status"] == "ok").all()
    expected = _command_table(fid_repeated, ["--sizes", "2,5", "--count", "10",
                              "--repetitions", "2"], monkeypatch, tmp_path,
                              "fid_repeated")  # fmt: skip
    for row in expected.itertuples():
        got = results[results["size"] == row.size].sort_values("repetition")["fid"]
        np.testing.assert_allclose(got, row.fid_values, rtol=1e-9)


def test_fid_scrambled_kind_matches_the_e2_command(tmp_path, small_cifar, monkeypatch):
    from experiments import fid_scrambled

    sweep(tmp_path, "--set", "kind=fid_scrambled", "--set", "name=e2",
          "--set", "data.train_limit=null", "--set", "fid_service.gpu=0",
          "--set", "e2.tiles=[2, 16]", "--set", "e2.count=12",
          "--set", "e2.repetitions=2")  # fmt: skip
    results, _ = _tables(tmp_path, "e2")
    assert len(results) == 2 * 2 and (results["fid_samples"] == 12).all()
    expected = _command_table(fid_scrambled, ["--tiles", "2,16", "--count", "12",
                              "--repetitions", "2"], monkeypatch, tmp_path,
                              "fid_scrambled")  # fmt: skip
    for row in expected.itertuples():
        got = results[results["tiles"] == row.tiles].sort_values("repetition")["fid"]
        np.testing.assert_allclose(got, row.fid_values, rtol=1e-9)


def test_mahalanobis_scores_come_once_from_the_driver(
    tmp_path, small_cifar, fresh_cache
):
    from fid.stats import statistics
    from selection.criteria import mahalanobis_distances
    from selection.datasets import load_cifar10
    from tests.standin import StandInExtractor

    scores = Path(os.environ["VAE_SWEEP_CACHE"]) / "scores"
    before = set(scores.glob("mahalanobis-*"))
    sweep(tmp_path, "--set", "grid.criterion=[lowest_mahalanobis, highest_mahalanobis]",
          "--set", "grid.n_train=[100]")  # fmt: skip
    results, _ = _tables(tmp_path)
    assert (results["status"] == "ok").all() and results["trial_id"].nunique() == 2
    cached = list(set(scores.glob("mahalanobis-*")) - before)
    assert len(cached) == 1  # one score vector for both criteria
    # computed once: one prerequisite task ran for both criteria (a recomputation
    # would overwrite the same score file, so the file count alone cannot tell)
    runs = json.loads((tmp_path / "smoke" / "timings.json").read_text())["runs"]
    tasks = [k for run in runs for k in run["prerequisites"]]
    assert len(tasks) == 1 and tasks[0].startswith("mahalanobis-"), tasks
    # the same distances, worked out here from the stand-in features
    train = load_cifar10(cifar_path(), "train", limit=300, progress=False)
    test = load_cifar10(cifar_path(), "test", limit=40, progress=False)
    extractor = StandInExtractor()
    reference = statistics(extractor(np.asarray(test.images)).astype(np.float64))
    features = extractor(np.asarray(train.images))
    expected = mahalanobis_distances(features, reference.mu, reference.sigma)
    np.testing.assert_allclose(np.load(cached[0]), expected, rtol=1e-9)


def test_stage2_gmm_kid_and_provenance_reach_the_tables(tmp_path, cifar_root):
    sweep(tmp_path, "--set", "grid.criterion=[lowest_mahalanobis]",
          "--set", "grid.selection.mahalanobis_space=[inception, pixel]",
          "--set", "grid.n_train=[100]", "--set", "priors=[gaussian, gmm, two_stage]",
          "--set", "stage2.epochs=3", "--set", "stage2.hidden=[16, 16, 16]",
          "--set", "stage2.latent_dim=2", "--set", "fid.metrics=[fid, kid, fid_inf]",
          "--set", "gmm.components=2")  # fmt: skip
    results, history = _tables(tmp_path)
    assert (results["status"] == "ok").all() and results["trial_id"].nunique() == 2
    assert set(results["mahalanobis_space"]) == {"inception", "pixel"}
    # each prior's own fit, in its own rows only
    two_stage = results[results["prior"] == "two_stage"]
    others = results[results["prior"] != "two_stage"]
    assert two_stage[["stage2_loss_mse", "stage2_variance_law", "stage2_gamma",
                      "stage2_inactive_dims"]].notna().all().all()  # fmt: skip
    assert (two_stage["stage2_epochs_run"] == 3).all()
    assert (two_stage["stage2_latent_dim"] == 2).all()
    assert others["stage2_loss_mse"].isna().all()
    gmm = results[results["prior"] == "gmm"]
    assert gmm["gmm_converged"].notna().all() and (gmm["gmm_iterations"] >= 1).all()
    assert results.loc[results["prior"] != "gmm", "gmm_converged"].isna().all()
    # KID and FID-infinity from the same features as the FID
    assert results[["kid", "kid_std", "fid_inf"]].notna().all().all()
    # the offline copy is re-encoded JPEG, and the results say so
    assert (results["data_encoding"] == "jpeg").all()
    assert not results["data_lossless"].any()
    # stage 2's loss history, after stage 1's, per trial
    assert set(history["phase"]) == {"stage1", "stage2"}
    per_trial = history.groupby(["trial_id", "phase"]).size().unstack()
    assert (per_trial["stage1"] == 2).all() and (per_trial["stage2"] == 3).all()
    # one Mahalanobis score vector per space
    timings = json.loads((tmp_path / "smoke" / "timings.json").read_text())
    spans = timings["runs"][0]["prerequisites"]
    assert len(spans) == 2 and all(key.startswith("mahalanobis-") for key in spans)
