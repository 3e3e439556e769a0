"""The shipped grids at the study's own size: `--rehearse` on all 50,000 / 10,000
images, with every axis, criterion, prior and scheduler of the grid, a tiny model and
the stand-in network; and the data paths that only break at that size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sweep.grid_file import load_grid
from sweep.prerequisites import score_need
from tests.helpers.data import ROOT, cifar_path
from vae.trainer import read_checkpoint

pytestmark = pytest.mark.ray

GRIDS = ROOT / "grids"


def rehearse(grid: str, storage, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "VAE_SWEEP_DATA": str(cifar_path())}
    result = subprocess.run(
        [sys.executable, "-m", "sweep.run", str(GRIDS / grid), "--rehearse",
         "--set", f"storage={storage}", *args],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rehearsal:" in result.stdout
    return result


def tables(folder):
    return (pd.read_parquet(folder / "results.parquet"),
            pd.read_parquet(folder / "history.parquet"),
            json.loads((folder / "timings.json").read_text()))  # fmt: skip


def test_table5_rehearses_at_full_size(tmp_path, full_cifar, fresh_cache):
    train, test = full_cifar
    # two of its three seeds: every size, criterion and prior on the full data, and
    # seeds that must stay apart; a third seed adds 4 trials of the same shapes
    rehearse("table5.yaml", tmp_path, "--set", "grid.seed=[0, 1]")
    results, history, timings = tables(tmp_path / "table5-rehearsal")
    trials = results.drop_duplicates("trial_id")
    # the whole set once per seed (criterion all), the half by 3 criteria: 4 x 2 seeds
    assert len(trials) == 8 and len(results) == 8 * 4
    assert (results["status"] == "ok").all(), results["error"].dropna().tolist()
    assert results["fid"].notna().all() and (results["fid_samples"] == 100).all()
    assert sorted(trials.groupby("criterion").size().items()) == [
        ("all", 2), ("lowest_mahalanobis", 2), ("lowest_recon", 2), ("random", 2),
    ]  # fmt: skip
    assert sorted(trials["seed"]) == [0] * 4 + [1] * 4
    assert set(trials["n_train"]) == {50_000, 25_000}
    assert set(results["prior"]) == {"gaussian", "gmm", "two_stage", "recon"}
    # on the real data: the full x_train and x_test, not a limit
    assert (results["dataset_sha256"] == train.sha256).all()
    assert (results["test_sha256"] == test.sha256).all()
    # one stage-1 epoch per trial, and one stage-2 epoch per trial (two_stage prior)
    assert sorted(history.groupby("phase").size().items()) == [
        ("stage1", 8),
        ("stage2", 8),
    ]
    assert (history["epoch"] == 1).all()
    # each trial saved its stage 2 in storage as it ended, at the full sizes
    for trial_id in trials["trial_id"]:
        state = read_checkpoint(tmp_path / "table5-rehearsal" / "stage2" /
                                f"{trial_id}.pt")  # fmt: skip
        assert (state["epoch"], state["outcome"]) == (1, "completed"), trial_id

    # the prerequisites ran beside the trials: a trial that needs no scores started
    # before the reference VAEs were done, and every recon trial only after its own
    # (one reference VAE per seed, selection.reference_per_seed), keyed by score key
    # ("recon-<hash of its settings and seed>"); one Mahalanobis score vector
    spans = timings["runs"][0]["prerequisites"]
    kinds = sorted(key.split("-")[0] for key in spans)
    # x_train's features once (for the Inception-space Mahalanobis scores)
    assert kinds == ["features", "mahalanobis", "recon", "recon"]  # two seeds

    def done(key: str) -> pd.Timestamp:
        return pd.Timestamp(spans[key]["finished_at"], unit="s", tz="UTC")

    grid = load_grid(tmp_path / "table5-rehearsal" / "grid.yaml")
    first_recon = min(done(key) for key in spans if key.startswith("recon"))
    started = trials.set_index("criterion")["started_at"]
    assert started.loc[["all", "random"]].min() < first_recon
    for trial in trials.itertuples():
        need = score_need(grid, {"n_train": trial.n_train,
                                 "criterion": trial.criterion, "seed": trial.seed})
        if need is not None:  # its own scores, done before it started
            assert trial.started_at >= done(need[0]), trial.trial_id


def test_early_stop_rehearses_with_its_scheduler(tmp_path, full_cifar, fresh_cache):
    # one seed and one learning rate of the grid's two each: every size and criterion
    # on the full data under ASHA; each further value adds 7 trials of the same
    # shapes and sizes (table5's rehearsal above keeps two seeds)
    rehearse("early_stop.yaml", tmp_path, "--set", "grid.seed=[0]",
             "--set", "grid.stage1.lr=[3.0e-4]")  # fmt: skip
    results, history, _ = tables(tmp_path / "early_stop_asha-rehearsal")
    trials = results.drop_duplicates("trial_id")
    # 1 whole set + 2 smaller sizes x 3 criteria
    assert len(trials) == 7 and len(results) == 7 * 2
    assert sorted(trials["n_train"].unique()) == [12_500, 25_000, 50_000]
    assert set(trials["status"]) == {"ok", "stopped"}  # ASHA stopped some, not all
    # the grid's step budget, rehearsed as 2 steps in rounds of 1: every size that ran
    # to the end took the same steps on the full data; ASHA stopped the others at a
    # step, not an epoch
    finished = trials[trials["status"] == "ok"]
    assert (finished["steps_run"] == 2).all() and (finished["images_seen"] == 200).all()
    assert (trials.loc[trials["status"] == "stopped", "steps_run"] == 1).all()
    stopped = trials[trials["status"] == "stopped"]
    assert (stopped["stop_reason"] == "scheduler").all()
    assert stopped["fid_intermediate"].notna().all()
    ok = results[results["status"] == "ok"]
    assert ok["fid"].notna().all()
    assert history["fid_intermediate"].notna().all()


def test_literature_criteria_select_from_all_50000_images(tmp_path, full_cifar,
                                                         fresh_cache):
    """class_density and k_center on the full training set: their scores come from
    x_train's features over all 50,000 images (the stand-in network's) and pick
    exactly half of it, class_density an equal share of each class."""
    rehearse("table5.yaml", tmp_path, "--set", "grid.seed=[0]",
             "--set", "grid.n_train=[0.5]",
             "--set", "grid.criterion=[class_density, k_center]",
             "--set", "priors=[gaussian]")  # fmt: skip
    results, _, timings = tables(tmp_path / "table5-rehearsal")
    assert len(results) == 2 and (results["status"] == "ok").all()
    assert (results["n_train"] == 25_000).all() and (results["retention"] == 0.5).all()
    spans = timings["runs"][0]["prerequisites"]
    assert sorted(k.split("-")[0] for k in spans) == ["class_density", "features",
                                                      "k_center"]  # fmt: skip
    density = results.set_index("criterion").loc["class_density", "class_counts"]
    assert set(json.loads(density).values()) == {2_500}  # 10 classes, equal shares


def test_fid_kinds_rehearse_with_their_real_sizes(tmp_path, full_cifar, fresh_cache):
    rehearse("fid_repeated.yaml", tmp_path)
    e1, _, _ = tables(tmp_path / "fid_repeated-rehearsal")
    sizes = [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10_000]
    assert sorted(e1["size"].unique()) == sizes and (e1["status"] == "ok").all()
    assert (e1["fid_samples"] == 10_000).all() and len(e1) == len(sizes) * 2
    rehearse("fid_scrambled.yaml", tmp_path)
    e2, _, _ = tables(tmp_path / "fid_scrambled-rehearsal")
    assert sorted(e2["tiles"].unique()) == [2, 4, 16, 64, 256, 1024]
    assert (e2["fid_samples"] == 10_000).all() and (e2["status"] == "ok").all()
    assert e2["fid"].notna().all() and len(e2) == 6 * 2


class _Probe:
    """A process that reads x_train as a trial does and says where it lives."""

    def look(self, holder):
        import ray

        images = ray.get(holder[0]).images  # as vae_trial: ray.get(data.train)
        address = images.ctypes.data
        with open("/proc/self/maps") as maps:
            for line in maps:
                low, high = (int(x, 16) for x in line.split()[0].split("-"))
                if low <= address < high:
                    mapping = line.split()
                    break
        return os.getpid(), images.flags.writeable, type(images).__name__, mapping


def test_trials_read_the_datasets_as_shared_read_only_views(full_cifar):
    import ray

    from sweep.cluster import start_local
    from sweep.trainable import share

    train, _ = full_cifar
    assert isinstance(train.images, np.memmap)  # how the decoded cache opens it
    start_local(num_cpus=2, include_dashboard=False, log_to_driver=False)  # on loopback
    try:
        probes = [ray.remote(num_cpus=0.5)(_Probe).remote() for _ in range(2)]
        shared = share(train)
        seen = ray.get([probe.look.remote([shared]) for probe in probes])
        # the naive way, for contrast: the memmap itself is pickled in-band
        naive = ray.get(probes[0].look.remote([ray.put(train)]))
    finally:
        ray.shutdown()
    assert seen[0][0] != seen[1][0]  # two trial processes
    for _pid, writeable, kind, mapping in seen:
        assert not writeable and kind == "ndarray"
        permissions, path = mapping[1], mapping[5]
        assert permissions.endswith("s") and "plasma" in path  # the object store
    assert seen[0][3][4] == seen[1][3][4]  # the same inode: one copy for both
    _pid, writeable, kind, mapping = naive
    assert writeable and kind == "memmap" and mapping[1].endswith("p")  # private
