"""The sweep on a simulated multi-node Ray (`ray.cluster_utils.Cluster`): a head with no
GPUs, worker nodes that advertise a GPU each, every node with its own cache folder
(its own disk), storage a folder all of them see. `python -m sweep.run --address`
runs against it with tiny settings and the stand-in network, while the test kills
nodes the way a spot market does.

The workers' GPUs are only advertised: they run with VAE_SWEEP_SIMULATED_GPUS=1, so
a process Ray gave a GPU runs on the CPU instead of refusing
(vae_sweep.devices.gpu_device).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sweep.cluster import LOOPBACK, LOOPBACK_ENV
from tests.helpers.data import ROOT, cifar_path
from tests.helpers.processes import listening, with_descendants
from vae_sweep.devices import SIMULATED_GPUS_ENV

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

SMOKE = str(ROOT / "grids" / "smoke.yaml")
TINY = [
    "--set", "fid.extractor=fid.standin:make_standin",
    "--set", "data.train_limit=2000",
    "--set", "data.test_limit=40",
    "--set", "grid.criterion=[random]",
    "--set", "model.latent_dim=4",
    "--set", "model.encoder_channels=[4, 8, 8, 8]",
    "--set", "model.decoder_channels=[8, 4]",
    "--set", "stage1.batch_size=100",
    "--set", "selection.reference_epochs=1",
    "--set", "fid.samples=20",
    "--set", "checkpoint_every=1",
    "--set", "resources.gpu=1",
    "--set", "resources.cpu=1",
    "--set", "fid_service.cpu=0.5",
    "--set", "storage_shared=true",
]  # fmt: skip


class SimCluster:
    """A head without GPUs and GPU workers, each node with its own cache folder,
    all listening on loopback only."""

    def __init__(self, root: Path, workers: int = 2, simulated: bool = True):
        from ray.cluster_utils import Cluster

        self.root, self.simulated, self.count = root, simulated, 0
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1, "num_gpus": 0, "env_vars": self._env("head"),
                "node_ip_address": LOOPBACK,  # no node listens on the network
                # notice a killed node in about a second, not Ray's 30 s
                "_system_config": {"health_check_period_ms": 200,
                                   "health_check_failure_threshold": 5},
            },
        )  # fmt: skip
        self.workers = [self.add_worker() for _ in range(workers)]

    def _env(self, name: str) -> dict:
        cache = self.root / f"cache-{name}"
        cache.mkdir(parents=True, exist_ok=True)
        env = {"VAE_SWEEP_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
        if self.simulated:
            env[SIMULATED_GPUS_ENV] = "1"
        return env

    def add_worker(self):
        self.count += 1
        node = self.cluster.add_node(
            num_cpus=2, num_gpus=1, env_vars=self._env(f"worker-{self.count}"),
            object_store_memory=200 * 1024 * 1024, node_ip_address=LOOPBACK,
        )  # fmt: skip
        node.cache = self.root / f"cache-worker-{self.count}"
        return node

    def node_of(self, pid: int):
        """The worker node whose raylet started process `pid` (None if another
        started it, or it has ended)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        parent = int(stat.split(")")[1].split()[1])
        for node in self.workers:
            if node.all_processes["raylet"][0].process.pid == parent:
                return node
        return None

    def on_workers(self, title: str) -> list[tuple[int, object]]:
        """(pid, node) of this cluster's worker-node processes titled `title`; a
        sweep of another test running beside this one has processes of that title
        too, on a Ray of its own."""
        found = [(pid, self.node_of(pid)) for pid in processes(title)]
        return [(pid, node) for pid, node in found if node is not None]

    def kill(self, node) -> None:
        """A spot preemption: every process of the node killed at once."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def shutdown(self) -> None:
        self.cluster.shutdown()


@pytest.fixture
def sim(tmp_path, small_cifar):  # the driver reads the small made-up CIFAR
    cluster = SimCluster(tmp_path)
    yield cluster
    cluster.shutdown()


def driver_env(sim) -> dict:
    """The environment of a driver that joins the simulated cluster: one that takes
    its loopback address as given (LOOPBACK_ENV; Ray would take it for this
    machine's outward address, where the cluster does not listen)."""
    env = {**os.environ, "VAE_SWEEP_DATA": str(cifar_path()), "PYTHONPATH": str(ROOT),
           "VAE_SWEEP_CACHE": str(sim.root / "cache-driver"),
           **LOOPBACK_ENV}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    return env


def start_sweep(sim, storage, *args, grid=SMOKE) -> subprocess.Popen:
    command = [sys.executable, "-m", "sweep.run", grid, "--address",
               sim.cluster.address, "--set", f"storage={storage}", *TINY,
               *args]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=driver_env(sim), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def finish(process, timeout=500) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out, err


def processes(title: str) -> list[int]:
    """Pids whose command line (Ray's process title) contains `title`: on this
    machine, so other tests' Rays among them (SimCluster.on_workers keeps ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if title in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(condition, timeout=300, what="a condition"):
    # generous: beside another worker's sweep on 2 cores, a simulated cluster's
    # sweep may take minutes to get there; a condition met returns at once
    deadline = time.time() + timeout
    torn = None
    while time.time() < deadline:
        try:
            value = condition()
        except (ValueError, IndexError, OSError) as error:
            # a result.json that Tune's sync rewrites in place, read half-written
            # (JSONDecodeError is a ValueError): not yet
            value, torn = None, error
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last read error: {torn!r}")


def raw_epochs(trial: Path) -> list[int]:
    """The stage-1 epochs Tune recorded for a trial, in order (before any clean-up
    by sweep/results.py)."""
    lines = (trial / "result.json").read_text().splitlines()
    results = [json.loads(line) for line in lines if line.strip()]
    return [r["epoch"] for r in results if r.get("phase") == "stage1"]


# The first kill comes at epoch 3 of a trial: 9 epochs are left to go on with. The
# second comes in a trial's stage 2, a few epochs in, with most of it left.
PREEMPTED_EPOCHS = 12
STAGE2_EPOCHS = 400


def stage2_state(folder: Path, trial_id: str) -> dict | None:
    import torch

    path = folder / "stage2" / f"{trial_id}.pt"
    return torch.load(path, weights_only=True) if path.is_file() else None


def test_a_preempted_node_loses_no_trial_and_no_work(sim, tmp_path):
    storage = tmp_path / "storage"
    sweep = start_sweep(sim, storage, "--set", "grid.n_train=[1000, 2000]",
                        "--set", f"stage1.epochs={PREEMPTED_EPOCHS}",
                        "--set", "priors=[gaussian, two_stage]",
                        "--set", "stage2.hidden=[16, 16, 16]",
                        "--set", "stage2.latent_dim=2",
                        "--set", f"stage2.epochs={STAGE2_EPOCHS}")  # fmt: skip
    folder = storage / "smoke"

    def node_of_trial(trial: Path):
        last = json.loads((trial / "result.json").read_text().splitlines()[-1])
        return sim.node_of(last["pid"])

    def trial_in_progress():
        for trial in folder.glob("trial_*"):
            if (trial / "result.json").exists() and len(raw_epochs(trial)) >= 3:
                node = node_of_trial(trial)
                if node is not None and raw_epochs(trial)[-1] < PREEMPTED_EPOCHS:
                    return trial, node
        return None

    trial, node = wait_for(trial_in_progress, what="a trial at epoch 3")
    sim.kill(node)  # the trial's node disappears, its processes with it
    killed_at = raw_epochs(trial)[-1]
    sim.add_worker()  # the autoscaler's replacement

    def trial_in_stage2():
        for trial in folder.glob("trial_*"):
            state = stage2_state(folder, trial.name.removeprefix("trial_"))
            if state is not None and 2 <= state["epoch"] <= STAGE2_EPOCHS // 2:
                node = node_of_trial(trial)
                if node is not None:
                    return trial, node
        return None

    in_stage2, node = wait_for(trial_in_stage2, what="a trial in stage 2")
    sim.kill(node)
    stage2_id = in_stage2.name.removeprefix("trial_")
    at_kill = stage2_state(folder, stage2_id)  # no process is left to write it
    sim.add_worker()
    finish(sweep)

    results = pd.read_parquet(folder / "results.parquet")
    assert len(results) == 2 * 2 and results["trial_id"].nunique() == 2
    assert (results["status"] == "ok").all() and (
        results["epochs_run"] == PREEMPTED_EPOCHS
    ).all()
    # Tune's own record of the killed trial: it went on from its last checkpoint,
    # so epoch 1 ran once, and at most the epoch in flight was run twice
    epochs = raw_epochs(trial)
    assert epochs.count(1) == 1 and epochs[-1] == PREEMPTED_EPOCHS
    assert len(epochs) - len(set(epochs)) <= 1, epochs
    assert killed_at < PREEMPTED_EPOCHS
    assert sorted(set(epochs)) == list(range(1, PREEMPTED_EPOCHS + 1))
    state = max(folder.glob("experiment_state-*.json")).read_text()
    failures = [int(n) for n in re.findall(r'num_failures\\": (\d+)', state)]
    # one retry per kill (a cluster grid's default allows 3 a trial): the same trial
    # twice, or each once
    assert sorted(failures) in ([0, 2], [1, 1]), failures

    # the trial killed in stage 2 went on from its last save: the epochs saved
    # before the kill are in its final state as they were (same end times), not
    # run again, and every stage-2 epoch is in its history once
    final = stage2_state(folder, stage2_id)
    assert final["epoch"] == STAGE2_EPOCHS
    done = at_kill["epoch"]
    assert [r["finished_at"] for r in final["history"][:done]] == \
        [r["finished_at"] for r in at_kill["history"]]  # fmt: skip
    two_stage = results[(results["trial_id"] == stage2_id)
                        & (results["prior"] == "two_stage")]  # fmt: skip
    assert two_stage["stage2_epochs_run"].tolist() == [STAGE2_EPOCHS]
    assert two_stage["fid"].notna().all()
    history = pd.read_parquet(folder / "history.parquet")
    second = history[
        (history["trial_id"] == stage2_id) & (history["phase"] == "stage2")
    ]
    assert sorted(second["epoch"]) == list(range(1, STAGE2_EPOCHS + 1))


def assert_fids_of_an_uninterrupted_run(sim, storage, args, results) -> None:
    """The same sweep run again on the cluster as it is, nothing lost (name
    `again`): each trial's FID per prior is the one in `results`."""
    finish(start_sweep(sim, storage, *args, "--set", "name=again"))
    again = pd.read_parquet(storage / "again" / "results.parquet")
    keys = ["n_train", "seed", "prior"]
    lost, whole = (t.set_index(keys)["fid"].sort_index() for t in (results, again))
    assert list(lost.index) == list(whole.index)
    assert lost.to_numpy() == pytest.approx(whole.to_numpy(), rel=1e-9)


def test_a_lost_fid_node_without_a_replacement_stalls_no_trial(sim, tmp_path):
    """The FID replica's node is lost while the other worker's GPU is full of trials
    waiting on their intermediate FIDs, and no node replaces it for a while: the
    standby replica on the head takes the calls, so a trial reports a new epoch
    within minutes (not the hour of fid_service.timeout_s). When a node comes, the
    sweep finishes: every trial ok, each epoch once, the FIDs an uninterrupted
    run's."""
    storage = tmp_path / "storage"
    # 4 trials of half a GPU and a replica of half a GPU on 2 one-GPU workers: the
    # worker without the replica runs two trials, so no GPU is left to restart on
    args = ["--set", "grid.n_train=[1000, 2000]", "--set", "grid.seed=[0, 1]",
            "--set", "stage1.epochs=10", "--set", "eval.every=1",
            "--set", "eval.samples=20", "--set", "resources.gpu=0.5",
            "--set", "fid_service.gpu=0.5",
            "--set", "fid_service.ping_timeout_s=2"]  # fmt: skip
    sweep = start_sweep(sim, storage, *args)
    folder = storage / "smoke"

    def running(trial: Path) -> bool:
        return (trial / "result.json").exists() and bool(raw_epochs(trial))

    def replica_beside_a_full_worker():
        replicas = sim.on_workers("ray::FIDServer")
        trials = [t for t in folder.glob("trial_*") if running(t)]
        if replicas and len(trials) >= 3:
            return replicas[0][1]
        return None

    node = wait_for(replica_beside_a_full_worker, what="the replica and 3 trials")
    sim.kill(node)  # nothing replaces it yet
    seen = {t: len(raw_epochs(t)) for t in folder.glob("trial_*") if running(t)}

    def two_new_epochs():  # one report may have been on its way at the kill
        return any(len(raw_epochs(t)) >= n + 2 for t, n in seen.items())

    wait_for(two_new_epochs, timeout=300, what="new epochs with the FID node lost")
    sim.add_worker()  # capacity returns
    finish(sweep)
    results = pd.read_parquet(folder / "results.parquet")
    assert results["trial_id"].nunique() == 4 and (results["status"] == "ok").all()
    history = pd.read_parquet(folder / "history.parquet")
    assert history["fid_intermediate"].notna().all()
    for _, trial in history[history["phase"] == "stage1"].groupby("trial_id"):
        assert sorted(trial["epoch"]) == list(range(1, 11))  # each epoch once

    # the stand-in network on the standby and on the replicas: the same FIDs
    assert_fids_of_an_uninterrupted_run(sim, storage, args, results)


def test_with_two_replicas_a_lost_fid_node_stalls_nothing(sim, tmp_path):
    """Two replicas, spread over the two workers, each beside a trial: one worker is
    lost with nothing to replace it; the other trial's calls go to the replica left
    (the standby is asked only while no replica answers: tests/test_service.py) and
    its epochs keep coming; the FIDs are an uninterrupted run's."""
    storage = tmp_path / "storage"
    args = ["--set", "grid.n_train=[1000, 2000]", "--set", "stage1.epochs=10",
            "--set", "eval.every=1", "--set", "eval.samples=20",
            "--set", "resources.gpu=0.5", "--set", "fid_service.gpu=0.5",
            "--set", "fid_service.replicas=2",
            "--set", "fid_service.ping_timeout_s=2"]  # fmt: skip
    sweep = start_sweep(sim, storage, *args)
    folder = storage / "smoke"

    def replicas_on_both_workers_and_trials_going():
        nodes = {node.node_id for _, node in sim.on_workers("ray::FIDServer")}
        trials = [t for t in folder.glob("trial_*")
                  if (t / "result.json").exists() and len(raw_epochs(t)) >= 1]
        return len(nodes) == 2 and len(trials) == 2

    wait_for(replicas_on_both_workers_and_trials_going,
             what="a replica on each worker and both trials")  # fmt: skip
    sim.kill(sim.workers[0])
    seen = {t: len(raw_epochs(t)) for t in folder.glob("trial_*")}
    wait_for(lambda: any(len(raw_epochs(t)) >= n + 2 for t, n in seen.items()),
             timeout=120, what="new epochs with one replica lost")  # fmt: skip
    sim.add_worker()
    finish(sweep)
    results = pd.read_parquet(folder / "results.parquet")
    assert results["trial_id"].nunique() == 2 and (results["status"] == "ok").all()
    assert_fids_of_an_uninterrupted_run(sim, storage, args, results)


def test_trials_need_nothing_from_the_drivers_disk_and_replicas_keep_off_the_head(
    sim, tmp_path
):
    storage = tmp_path / "storage"
    criteria = "grid.criterion=[random, lowest_recon, lowest_mahalanobis]"
    # two CPU replicas: they could run anywhere, the head included
    finish(start_sweep(sim, storage, "--set", "grid.n_train=[1000]",
                       "--set", "stage1.epochs=2", "--set", criteria,
                       "--set", "fid_service.gpu=0",
                       "--set", "fid_service.replicas=2"))  # fmt: skip
    first = pd.read_parquet(storage / "smoke" / "results.parquet")
    assert len(first) == 3 * 2 and (first["status"] == "ok").all()
    replicas = json.loads((storage / "smoke" / "timings.json").read_text())["runs"][0][
        "fid_replicas"
    ]
    nodes = {replica["node"] for replica in replicas}
    assert len(replicas) == 2 and sim.cluster.head_node.node_id not in nodes
    assert nodes <= {node.node_id for node in sim.workers}
    # the reference VAE's checkpoint is in shared storage, not on a node's disk
    assert list((storage / "smoke" / "prerequisites").glob("reference-*.pt"))
    for node in list(sim.workers):
        assert not (node.cache / "scores").exists()
        assert not (node.cache / "reference").exists()
        sim.kill(node)  # every worker gone: their disks with them
    sim.add_worker(), sim.add_worker()

    # fresh nodes with empty caches; the scores come from the driver's cache through
    # the object store, the x_test statistics are computed again where the replica is
    finish(start_sweep(sim, storage, "--set", "grid.n_train=[1000]",
                       "--set", "stage1.epochs=2", "--set", criteria,
                       "--set", "name=again"))  # fmt: skip
    again = pd.read_parquet(storage / "again" / "results.parquet")
    assert len(again) == 3 * 2 and (again["status"] == "ok").all()
    timings = json.loads((storage / "again" / "timings.json").read_text())
    # both score vectors came from the cache: no prerequisite task ran (None)
    prerequisites = timings["runs"][0]["prerequisites"]
    assert sorted(key.split("-")[0] for key in prerequisites) == [
        "mahalanobis",
        "recon",
    ]
    assert set(prerequisites.values()) == {None}


def test_the_reference_vae_survives_the_loss_of_its_node(sim, tmp_path):
    storage = tmp_path / "storage"
    sweep = start_sweep(sim, storage, "--set", "grid.criterion=[lowest_recon]",
                        "--set", "grid.n_train=[1000]", "--set", "stage1.epochs=1",
                        "--set", "selection.reference_epochs=12")  # fmt: skip
    checkpoints = storage / "smoke" / "prerequisites"

    def reference_in_progress():
        tasks = sim.on_workers("ray::recon_task")
        if tasks and list(checkpoints.glob("reference-*.pt")):
            return tasks[0][1]
        return None

    node = wait_for(reference_in_progress, what="a reference VAE checkpoint")
    sim.kill(node)
    sim.add_worker()
    finish(sweep)
    timings = json.loads((storage / "smoke" / "timings.json").read_text())
    (recon,) = [v for k, v in timings["runs"][0]["prerequisites"].items()
                if k.startswith("recon-")]  # fmt: skip
    assert recon["resumed_from_epoch"] >= 1  # the retry went on from shared storage
    results = pd.read_parquet(storage / "smoke" / "results.parquet")
    assert (results["status"] == "ok").all() and len(results) == 2


def test_a_gpu_that_is_not_there_is_one_clear_line(tmp_path, small_cifar):
    sim = SimCluster(tmp_path, workers=1, simulated=False)  # advertised, not real
    try:
        trial_gpu = ["--set", "resources.gpu=1"]
        replica_gpu = ["--set", "resources.gpu=0", "--set", "fid_service.gpu=1"]
        for number, settings in enumerate([trial_gpu, replica_gpu]):
            storage = tmp_path / f"storage-{number}"
            sweep = start_sweep(sim, storage, "--set", "grid.n_train=[1000]",
                                *settings)  # fmt: skip
            out, err = sweep.communicate(timeout=120)
            assert sweep.returncode == 2, err[-2000:]
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1, (settings, err[-3000:])
            assert "asked for a GPU but torch sees none" in lines[0]
            assert "Traceback" not in err
            assert not storage.exists()  # nothing written
    finally:
        sim.shutdown()


# a driver that joins the cluster at argv[1], as the sweep's does, and runs a task
JOIN = """import sys, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
task = ray.remote(ray.util.get_node_ip_address)
print(ray.get_runtime_context().gcs_address, ray.get(task.remote()))
"""


def test_the_simulated_cluster_listens_on_loopback_only(tmp_path):
    sim = SimCluster(tmp_path, workers=1)
    try:
        nodes = [sim.cluster.head_node, *sim.workers]
        assert {node.node_ip_address for node in nodes} == {LOOPBACK}
        joined = subprocess.run([sys.executable, "-c", JOIN, sim.cluster.address],
                                cwd=ROOT, env=driver_env(sim), capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        assert joined.returncode == 0, joined.stderr[-3000:]
        gcs, worker = joined.stdout.split()
        assert gcs == sim.cluster.address and gcs.startswith(f"{LOOPBACK}:")
        assert worker == LOOPBACK
        # every node's GCS, raylet (node and object manager) and workers
        pids = [info.process.pid for node in nodes
                for infos in node.all_processes.values() for info in infos]  # fmt: skip
        addresses = listening(with_descendants(pids))
        assert addresses and all(address.is_loopback for address in addresses)
    finally:
        sim.shutdown()
