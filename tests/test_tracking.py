"""Experiment tracking (sweep/tracking.py) against the real components: an MLflow
tracking server started here on localhost (SQLite backend) read back with MLflow's
client, and W&B in offline mode, its run files read back (tests/helpers/wandb_files).
A sweep killed with SIGKILL and resumed leaves one run per trial in both."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from sweep.config import GridConfig
from sweep.tracking import numbers, result_step, run_params
from tests.helpers.commands import run_command
from tests.helpers.data import ROOT
from tests.helpers.processes import started
from tests.helpers.sweeps import SMOKE, sweep, sweep_command, tables
from tests.helpers.wandb_files import offline_runs

GRID = ["--set", "stage1.epochs=6", "--set", "checkpoint_every=1",
        "--set", "grid.n_train=[100, 200]",
        "--set", "grid.criterion=[random]"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on localhost with a SQLite backend and its own artifact store."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(folder / "artifacts")]  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    with started(command, cwd=folder, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL):  # fmt: skip
        deadline = time.time() + 240  # at once when it is up; slow on a busy machine
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    raise AssertionError("the MLflow server did not start") from None
                time.sleep(0.5)
        yield uri


def tracking_args(uri: str, wandb_dir) -> list[str]:
    return ["--set", f"tracking.mlflow.uri={uri}",
            "--set", "tracking.mlflow.experiment=tracked",
            "--set", "tracking.wandb.mode=offline",
            "--set", "tracking.wandb.project=tracked",
            "--set", f"tracking.wandb.dir={wandb_dir}"]  # fmt: skip


def _finished(folder) -> int:
    return sum('"phase": "final"' in p.read_text()
               for p in folder.glob("trial_*/result.json"))  # fmt: skip


@pytest.fixture(scope="module")
def tracked_sweep(mlflow_server, small_cifar_root, tmp_path_factory):
    """The two-trial sweep tracked by both, killed (SIGKILL) once a trial has ended and
    a later one has a checkpoint, then resumed to its end."""
    from tests.helpers.sweeps import sweep_env

    tmp = tmp_path_factory.mktemp("tracked")
    args = [*GRID, *tracking_args(mlflow_server, tmp / "wb")]
    folder = tmp / "smoke"
    env = sweep_env(VAE_SWEEP_DATA=str(small_cifar_root))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with started(sweep_command(tmp, *args), cwd=ROOT, env=env, **quiet) as driver:
        deadline = time.time() + 300
        while time.time() < deadline and not (
            _finished(folder) and len(list(folder.glob("trial_*/checkpoint_*"))) > 2
        ):
            time.sleep(0.3)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert _finished(folder) == 1, "the kill did not land between the two trials"
    sweep(tmp, *args, "--resume", env=env)
    results, history = tables(tmp)
    return tmp, results, history


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def test_mlflow_has_one_run_per_trial_under_the_sweep(mlflow_server, tracked_sweep):
    _, results, history = tracked_sweep
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("vae_sweep.role") == "sweep"]
    trials = [r for r in runs if "vae_sweep.trial" in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3  # nothing duplicated by the resume
    assert sorted(r.info.run_name for r in trials) == [
        f"n_train={n},criterion=random,seed=0" for n in (100, 200)]  # fmt: skip
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.info.status == "FINISHED"
        params = run.data.params
        assert params["criterion"] == "random" and params["seed"] == "0"
        assert params["stage1.epochs"] == "6" and params["model.latent_dim"] == "32"
        n_train = int(params["n_train"])
        mine = results[results["n_train"] == n_train].set_index("prior")
        # the final metrics per prior, as the sweep's own table has them
        for prior in ("gaussian", "gmm"):
            assert run.data.metrics[f"fid_{prior}"] == pytest.approx(
                mine.loc[prior, "fid"], rel=1e-12)
        trial_id = mine["trial_id"].iloc[0]
        # every epoch's loss once, at its step, as the history table has them
        curve = client.get_metric_history(run.info.run_id, "loss_mse")
        steps = sorted(m.step for m in curve)
        rows = history[(history["trial_id"] == trial_id)
                       & (history["phase"] == "stage1")]  # fmt: skip
        assert steps == sorted(rows["step"].astype(int))
        by_step = {m.step: m.value for m in curve}
        for _, row in rows.iterrows():
            logged = by_step[int(row["step"])]
            assert logged == pytest.approx(row["loss_mse"], rel=1e-12)


def test_mlflow_artifacts_are_the_sample_grids_and_metrics(mlflow_server, tracked_sweep,
                                                           tmp_path):  # fmt: skip
    _, results, _ = tracked_sweep
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name("tracked")
    for run in client.search_runs([experiment.experiment_id],
                                  "tags.`vae_sweep.role` != 'sweep'"):  # fmt: skip
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"gaussian.png", "gmm.png", "metrics.json"} <= names
        run_id = run.info.run_id
        local = client.download_artifacts(run_id, "metrics.json", str(tmp_path))
        with open(local) as file:
            metrics = json.load(file)
        assert metrics["fid_gaussian"] == run.data.metrics["fid_gaussian"]
        assert "history_json" not in metrics
        png = client.download_artifacts(run_id, "gaussian.png", str(tmp_path))
        with open(png, "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_wandb_offline_runs_one_id_per_trial(tracked_sweep):
    tmp, results, _ = tracked_sweep
    # the trial that was killed and resumed wrote a second run folder with its id;
    # the first may hold nothing but the file header: the SIGKILL also took W&B's
    # own writer process (wandb-core) before it flushed
    every = offline_runs(tmp / "wb")
    runs = [run for run in every if run.run_id]
    assert len(every) == 3 and len(runs) >= 2
    ids = {run.run_id for run in runs}
    assert len(ids) == 2
    assert len({run.group for run in runs}) == 1
    for run_id in ids:
        parts = [r for r in runs if r.run_id == run_id]
        config = parts[0].config
        assert config["criterion"] == "random" and config["stage1.epochs"] == "6"
        mine = results[results["n_train"] == int(config["n_train"])].set_index("prior")
        logged = [row for part in parts for row in part.history]
        finals = [row for row in logged if "fid_gaussian" in row]
        assert len(finals) == 1
        assert finals[0]["fid_gmm"] == pytest.approx(mine.loc["gmm", "fid"], rel=1e-12)
        assert any(row.get("loss_mse") is not None for row in logged)
        files = [f for part in parts for a in part.artifacts for f in a]
        assert {"gaussian.png", "gmm.png", "metrics.json"} <= set(files)
        assert parts[-1].exit_code == 0


# ---- before Ray starts: one line, exit 2, nothing written ----


@pytest.mark.parametrize(
    "setting, words",
    [
        ("tracking.mlflow.uri=htp:/nowhere", "tracking.mlflow.uri = 'htp:/nowhere': "
         "not a tracking URI"),
        ("tracking.mlflow.uri=http://", "a server URI needs a host"),
        ("tracking.mlflow.uri=http://127.0.0.1:notaport", "the port is not a number"),
        ("tracking.mlflow.uri=sqlite://relative.db", "sqlite:///relative.db"),
        ("tracking.wandb.mode=sometimes", "tracking.wandb.mode"),
    ],
)  # fmt: skip
def test_a_malformed_tracker_setting_is_one_line(tmp_path, setting, words):
    result = run_command("sweep.run", SMOKE, "--set", f"storage={tmp_path}",
                         "--set", setting)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not list(tmp_path.iterdir())


def test_an_unreachable_server_is_refused_before_ray_starts(tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    started_at = time.time()
    uri = f"http://127.0.0.1:{port}"
    result = run_command("sweep.run", SMOKE, "--set", f"storage={tmp_path}",
                         "--set", f"tracking.mlflow.uri={uri}")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: tracking.mlflow.uri = 'http://127.0.0.1:{port}': no MLflow server "
        f"answers there ([Errno 111] Connection refused)"]  # fmt: skip
    assert not list(tmp_path.iterdir()) and time.time() - started_at < 30
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    online = run_command("sweep.run", SMOKE, "--set", f"storage={tmp_path}",
                         "--set", "tracking.wandb.project=p")  # fmt: skip
    assert online.returncode == 2
    lines = online.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: tracking.wandb.mode = online: the W&B server http://127.0.0.1:{port} "
        f"cannot be reached")  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_a_missing_tracker_package_is_one_line(tmp_path, monkeypatch):
    # hidden as Python hides a module: its sys.modules entry None (find_spec -> None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    result = run_command("sweep.run", SMOKE, "--set", f"storage={tmp_path}",
                         "--set", "tracking.wandb.mode=offline")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: tracking.wandb: the wandb package is not "
                                     "installed (pip install -e \".[tracking]\")")
    assert not list(tmp_path.iterdir())


# ---- the pieces, against values written by hand ----


def test_params_are_the_resolved_grid_with_the_trial_axes_on_top():
    config = GridConfig(name="x", stage1={"lr": 1e-3},
                        tracking={"mlflow": {"uri": "/tmp/m"}})  # fmt: skip
    params = run_params(config, {"n_train": 500, "criterion": "random",
                                 "stage1.lr": 3e-4})  # fmt: skip
    assert params["n_train"] == "500" and params["criterion"] == "random"
    assert params["stage1.lr"] == "0.0003"  # the axis value, not the section's
    latent = GridConfig(name="x").model.latent_dim
    assert params["model.latent_dim"] == json.dumps(latent)
    assert params["name"] == "x"
    assert not [k for k in params if k.startswith("tracking") or k == "grid"]


def test_numbers_keep_the_model_metrics_and_drop_tune_bookkeeping():
    result = {"loss_mse": 0.5, "step": 300, "fid_gaussian": 12.0, "phase": "final",
              "history_json": "[]", "timestamp": 1, "time_total_s": 3.0,
              "training_iteration": 4, "done": True, "converged": True,
              "fid_gmm": float("nan"), "finished_at": 1.5, "pid": 7}  # fmt: skip
    assert numbers(result) == {"loss_mse": 0.5, "step": 300.0, "fid_gaussian": 12.0}
    assert result_step(result) == 300
    assert result_step({"training_iteration": 4}) == 4


def test_a_resumed_sweep_may_change_its_trackers_but_not_its_experiment():
    from sweep.config import resolved_yaml
    from sweep.grid_file import changed_keys

    saved = resolved_yaml(GridConfig(name="x"))
    tracked = GridConfig(name="x", tracking={"wandb": {"mode": "offline"}})
    assert changed_keys(saved, tracked) == []
    assert changed_keys(saved, GridConfig(name="x", stage1={"lr": 0.5})) == [
        "stage1.lr"]  # fmt: skip


def test_a_folder_uri_is_a_sqlite_store_with_its_artifacts_beside_it(tmp_path):
    """MLflow 3 refuses its folder store: a folder holds mlflow.db and artifacts/."""
    from sweep.config import MLflowSection
    from sweep.tracking_mlflow import MLflowTracker

    folder = tmp_path / "runs"
    tracker = MLflowTracker(MLflowSection(uri=str(folder)), "grid", "abc", "/sweep")
    assert tracker.open("abctrial1", "n_train=5", {"n_train": "5"}) == -1
    tracker.log("abctrial1", {"loss_mse": 0.5, "step": 3.0}, 3)
    note = tmp_path / "metrics.json"
    note.write_text("{}")
    tracker.finish("abctrial1", [note], failed=False)
    tracker.close()
    # reopened as a resume would: the step already logged is known
    again = MLflowTracker(MLflowSection(uri=str(folder)), "grid", "abc", "/sweep")
    assert again.open("abctrial1", "n_train=5", {"n_train": "5"}) == 3
    again.close()
    client = _client(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2  # the sweep and its one trial, reopened not duplicated
    trial = next(r for r in runs if r.info.run_name == "n_train=5")
    assert trial.data.metrics["loss_mse"] == 0.5 and trial.data.params["n_train"] == "5"
    artifacts = client.list_artifacts(trial.info.run_id)
    assert [a.path for a in artifacts] == ["metrics.json"]
    assert (folder / "artifacts" / "grid").is_dir()


def test_a_sweep_stopped_by_sigterm_leaves_its_run_killed_and_a_resume_reopens_it(
    tmp_path,
):
    from sweep.config import MLflowSection
    from sweep.tracking_mlflow import MLflowTracker

    folder = tmp_path / "runs"
    tracker = MLflowTracker(MLflowSection(uri=str(folder)), "grid", "abc", "/sweep")
    tracker.open("abctrial1", "n_train=5", {"n_train": "5"})
    tracker.close(interrupted=True)  # Tune's end of a sweep a SIGTERM stopped
    client = _client(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid").experiment_id

    def statuses():
        runs = client.search_runs([experiment])
        return {run.info.run_name: run.info.status for run in runs}

    assert statuses() == {"grid": "KILLED", "n_train=5": "KILLED"}
    again = MLflowTracker(MLflowSection(uri=str(folder)), "grid", "abc", "/sweep")
    again.open("abctrial1", "n_train=5", {"n_train": "5"})
    assert statuses() == {"grid": "RUNNING", "n_train=5": "RUNNING"}
    again.finish("abctrial1", [], failed=False)
    again.close()
    assert statuses() == {"grid": "FINISHED", "n_train=5": "FINISHED"}


@pytest.mark.parametrize("stopped", [False, True])
def test_the_callback_tells_the_trackers_whether_a_sigterm_ended_the_sweep(stopped):
    from sweep.stopping import TERMINATED  # what the driver's SIGTERM handler fills
    from sweep.tracking import TrackingCallback

    closed = []

    class Backend:
        def close(self, interrupted=False):
            closed.append(interrupted)

    callback = TrackingCallback(GridConfig(name="x"), "/sweep")
    callback.backends = [Backend(), Backend()]
    TERMINATED[:] = [signal.SIGTERM] if stopped else []
    try:
        callback.on_experiment_end(trials=[])
    finally:
        TERMINATED.clear()
    assert closed == [stopped, stopped]
