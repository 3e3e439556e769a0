"""`python -m sweep.run` end to end on a local Ray: the smoke grid with tiny settings,
the schedulers, the E1/E2 kinds and the Mahalanobis prerequisites (the fault cases
are in tests/test_sweep_faults.py). Trials use the stand-in feature network."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from experiments.early_stopping import check_replay
from experiments.replay import REPLAYABLE
from sweep.reader import load_sweep
from tests.helpers.commands import run_command
from tests.helpers.data import cifar_path, empty_cache
from tests.helpers.sweeps import SMOKE, TINY, sweep, sweep_env, tables

pytestmark = pytest.mark.ray

RESULT_COLUMNS = {
    "experiment", "trial_id", "n_train", "criterion", "seed", "prior", "fid",
    "fid_samples", "loss_mse", "variance_law", "inactive_dims", "epochs_run",
    "stop_reason", "status", "error", "wall_seconds", "gpu_seconds", "config_hash",
    "package_version", "dataset_sha256", "fid_network", "started_at", "finished_at",
}  # fmt: skip


def test_smoke_grid_end_to_end(tmp_path, small_cifar, fresh_cache):
    from importlib.metadata import version

    from selection.datasets import load_cifar10

    storage = f"file://{tmp_path}"  # a URI storage, as on a cluster's shared disk
    result = sweep(tmp_path, storage=storage)
    results, history = tables(tmp_path)
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
    # the Mahalanobis settings belong to its criterion's rows only
    assert results[["mahalanobis_space", "mahalanobis_covariance"]].isna().all().all()
    assert results["fid_network"].eq("standin-v1").all()
    # one history row per trial and epoch
    assert len(history) == 4 * 2 and not history.duplicated(["trial_id", "epoch"]).any()
    assert (tmp_path / "smoke" / "grid.yaml").is_file()
    assert "trials: 4 (4 ok)" in result.stdout
    # the compact console (sweep/console.py), not Tune's tables: a line per trial
    # start and end, the overall line, the summary
    out = result.stdout.splitlines()
    assert len(out) + len(result.stderr.splitlines()) <= 40, result.stdout
    assert not [line for line in out if "Trial status" in line or "│" in line
                or "history_json" in line]  # fmt: skip
    ended = [line for line in out if "] done " in line]
    assert len(ended) == 4 and all(" fid gaussian " in line for line in ended)
    assert any("trials: 4 done, 0 running, 0 pending, 0 errored of 4" in line
               for line in out)  # fmt: skip
    # the columns' values, each against another source
    trials = results.drop_duplicates("trial_id").set_index("trial_id")
    last = history.sort_values("epoch").groupby("trial_id").last()
    np.testing.assert_allclose(trials["loss_mse"], last.loc[trials.index, "loss_mse"])
    assert (trials["stop_reason"] == "completed").all()
    span = (trials["finished_at"] - trials["started_at"]).dt.total_seconds()
    assert (trials["wall_seconds"] > 0).all()
    np.testing.assert_allclose(trials["wall_seconds"], span, atol=1e-3)
    # each trial's interval holds its epochs, to the trial's own clock (Tune's
    # timestamps are whole seconds: the replay ordered trials wrongly by them)
    epochs = history.groupby("trial_id")["finished_at"]
    started = trials["started_at"].map(pd.Timestamp.timestamp)
    finished = trials["finished_at"].map(pd.Timestamp.timestamp)
    assert (started <= epochs.min().loc[trials.index]).all()
    assert (finished >= epochs.max().loc[trials.index]).all()
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
    # the same command again refuses to overwrite the sweep (in this process: it
    # stops at its checks)
    again = run_command("sweep.run", SMOKE, "--set", f"storage={storage}", *TINY)
    assert again.returncode == 2 and "pass --resume" in again.stderr


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


# a step budget: the schedulers (live and replayed) compare trials at equal steps;
# 100 images in batches of 50 are 2 steps a pass, one round
SCHEDULER_GRID = ["--set", "scheduler.grace_period=2",
                  "--set", "scheduler.min_samples_required=1",
                  "--set", "eval.every=2", "--set", "eval.samples=20",
                  "--set", "stage1.epochs=null", "--set", "stage1.steps=8",
                  "--set", "stage1.round_steps=2", "--set", "checkpoint_every=2",
                  "--set", "grid.n_train=[100]",
                  "--set", "grid.criterion=[random]"]  # fmt: skip


EPOCH_GRID = ["--set", "stage1.steps=null", "--set", "stage1.epochs=4",
              "--set", "eval.every=1", "--set", "scheduler.grace_period=1",
              "--set", "checkpoint_every=1"]  # fmt: skip


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
    # HyperBand's synchronous brackets run in its own units: kept on epochs (4, one
    # a round), where its bracket sizes fall on the reports
    units = (EPOCH_GRID if scheduler == "hyperband" else [])
    result = sweep(tmp_path, "--set", f"scheduler.name={scheduler}",
                   "--set", f"scheduler.reduction_factor={eta}", *SCHEDULER_GRID,
                   "--set", f"grid.stage1.lr={lrs}", *units)  # fmt: skip
    results, history = tables(tmp_path)
    trials = results.drop_duplicates("trial_id").set_index("stage1.lr")
    count = lrs.count(",") + 1
    assert len(trials) == count and len(results) == count * 2, result.stdout[-2000:]
    assert set(trials["status"]) <= {"ok", "stopped"}
    stopped = trials[trials["status"] == "stopped"]
    # the two poor trials are stopped, the best one never is;
    # HyperBand may also stop the last survivor of its halving bracket at its end
    assert poor <= set(stopped.index), trials["status"].tolist()
    assert trials.loc[best, "status"] == "ok"
    assert (stopped["steps_run"] < 8).all() and (stopped["steps_run"] % 2 == 0).all()
    assert (stopped["epochs_run"] < 4).all()
    assert (trials.loc[trials["status"] == "ok", "steps_run"] == 8).all()
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


def test_a_step_budget_gives_every_training_set_size_the_same_steps(
    tmp_path, small_cifar, fresh_cache
):
    run = sweep(tmp_path, "--set", "grid.criterion=[random]",
                "--set", "priors=[gaussian]", "--set", "stage1.epochs=null",
                "--set", "stage1.steps=6",
                "--set", "stage1.round_steps=2", "--set", "eval.every=2",
                "--set", "checkpoint_every=2", "--set", "eval.samples=20",
                "--set", "stage1.loss=optimal_gamma", "--verbose")  # fmt: skip
    # --verbose: Tune's own status tables, not the compact view's lines
    assert "Trial status" in run.stdout and "] done " not in run.stdout
    results, history = tables(tmp_path)
    trials = results.drop_duplicates("trial_id").set_index("n_train")
    assert sorted(trials.index) == [100, 200] and (trials["status"] == "ok").all()
    # batches of 50: 6 steps are 300 images whatever the set, 3 passes over 100
    # images and 1.5 over 200
    assert (trials["steps_run"] == 6).all() and (trials["images_seen"] == 300).all()
    assert trials.loc[100, "epochs_run"] == trials.loc[200, "epochs_run"] == 3  # rounds
    assert trials["gamma"].between(0, 1).all() and trials["converged"].notna().all()
    rounds = history[history["phase"] == "stage1"].sort_values(["n_train", "step"])
    for n_train, rows in rounds.groupby("n_train"):
        assert rows["step"].tolist() == [2, 4, 6], n_train
        assert rows["images_seen"].tolist() == [100, 200, 300]
        assert rows["gamma"].notna().all() and rows["fid_intermediate"].notna().all()


def _command_table(module, args, monkeypatch, tmp_path, name):
    import fid.options
    from tests.helpers.standin import StandInExtractor

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
    results, _ = tables(tmp_path, "e1")
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
    results, _ = tables(tmp_path, "e2")
    assert len(results) == 2 * 2 and (results["fid_samples"] == 12).all()
    expected = _command_table(fid_scrambled, ["--tiles", "2,16", "--count", "12",
                              "--repetitions", "2"], monkeypatch, tmp_path,
                              "fid_scrambled")  # fmt: skip
    for row in expected.itertuples():
        got = results[results["tiles"] == row.tiles].sort_values("repetition")["fid"]
        np.testing.assert_allclose(got, row.fid_values, rtol=1e-9)


@pytest.fixture(scope="module")
def mahalanobis_run(small_cifar_root, tmp_path_factory):
    """One sweep for the tests below: both Mahalanobis criteria in both feature
    spaces (4 trials), every generative prior, KID and FID-infinity (on 10,000
    samples, its minimum), with a cache of its own."""
    folder = tmp_path_factory.mktemp("mahalanobis")
    cache = empty_cache(folder / "cache", tmp_path_factory)
    sweep(folder, "--set", "grid.criterion=[lowest_mahalanobis, highest_mahalanobis]",
          "--set", "grid.selection.mahalanobis_space=[inception, pixel]",
          "--set", "grid.n_train=[100]", "--set", "priors=[gaussian, gmm, two_stage]",
          "--set", "stage2.epochs=3", "--set", "stage2.hidden=[16, 16, 16]",
          "--set", "stage2.latent_dim=2",
          "--set", "fid.metrics=[fid, kid, fid_inf, prdc, memorization]",
          "--set", "fid.samples=10000",  # FID-infinity's minimum
          "--set", "fid.bootstrap=20",
          "--set", "gmm.components=2",
          env=sweep_env(VAE_SWEEP_DATA=str(small_cifar_root),
                        VAE_SWEEP_CACHE=str(cache)))  # fmt: skip
    results, history = tables(folder)
    assert (results["status"] == "ok").all() and results["trial_id"].nunique() == 4
    return folder, cache, results, history


def test_mahalanobis_scores_come_once_per_space_from_the_driver(
    mahalanobis_run, small_cifar_root
):
    from sklearn.covariance import OAS

    from selection.datasets import load_cifar10
    from tests.helpers.standin import StandInExtractor

    folder, cache, results, _ = mahalanobis_run
    assert set(results["mahalanobis_space"]) == {"inception", "pixel"}
    # every trial here is a Mahalanobis one (the other criteria's rows carry neither
    # column: test_smoke_grid_end_to_end)
    assert results["mahalanobis_space"].notna().all()
    assert set(results["mahalanobis_covariance"]) == {"oas"}
    # one score vector per space, for both criteria
    cached = sorted((cache / "scores").glob("mahalanobis-*"))
    assert len(cached) == 2, cached
    # computed once each: one prerequisite task per space for the four trials (a
    # recomputation would overwrite the same score file, so files cannot tell)
    runs = json.loads((folder / "smoke" / "timings.json").read_text())["runs"]
    tasks = [k for run in runs for k in run["prerequisites"]]
    # and x_train's features once, for memorization
    assert sorted(t.split("-")[0] for t in tasks) == ["features", "mahalanobis",
                                                       "mahalanobis"], tasks
    # the same distances, worked out here with scikit-learn's OAS fitted on the
    # x_test samples themselves: from the stand-in features, and from the pixels
    train = np.asarray(load_cifar10(small_cifar_root, "train", limit=300,
                                    progress=False).images)  # fmt: skip
    test = np.asarray(load_cifar10(small_cifar_root, "test", limit=40,
                                   progress=False).images)  # fmt: skip
    extractor = StandInExtractor()

    def oas_distances(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
        fit = OAS().fit(reference.astype(np.float64))
        diff = points.astype(np.float64) - fit.location_
        return np.sqrt(np.sum(diff * np.linalg.solve(fit.covariance_, diff.T).T, 1))

    inception = oas_distances(extractor(train), extractor(test))
    pixel = oas_distances(train.reshape(len(train), -1), test.reshape(len(test), -1))
    vectors = [np.load(file) for file in cached]
    matches = [[np.allclose(v, expected, rtol=1e-7) for expected in (inception, pixel)]
               for v in vectors]  # fmt: skip
    assert sorted(matches) == [[False, True], [True, False]], matches


def test_stage2_gmm_kid_and_provenance_reach_thetables(mahalanobis_run):
    folder, _, results, history = mahalanobis_run
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
    # bootstrap intervals of each model's FID; KID's and precision/recall's need
    # (n, n) matrices, which 10,000 samples exceed (fid.bootstrap's *_MAX)
    assert (results["fid_ci_low"] < results["fid_ci_high"]).all()
    assert results[["kid_ci_low", "kid_ci_high"]].isna().all().all()
    assert "precision_ci_low" not in results or results["precision_ci_low"].isna().all()
    assert (results["retention"] == 100 / 300).all()  # of the 300-image pool
    # precision, recall, density and coverage, and memorization, per prior, with
    # each prior's samples beside their nearest training images
    assert results[["precision", "recall", "density", "coverage",
                    "memorization"]].notna().all().all()  # fmt: skip
    assert results[["precision", "recall", "memorization"]].stack().between(0, 1).all()
    for row in results.itertuples():
        name = f"memorization_{row.prior}.png"
        png = folder / "smoke" / "samples" / row.trial_id / name
        assert png.stat().st_size > 0, png
    # each trial's subset by class: 100 images, the criterion's own make-up
    for counts in results.drop_duplicates("trial_id")["class_counts"]:
        assert sum(json.loads(counts).values()) == 100
    # the made-up CIFAR is PNG files, and the results say so (a JPEG copy's rows say
    # jpeg and not lossless: tests/test_datasets.py)
    assert (results["data_encoding"] == "png").all() and results["data_lossless"].all()
    # stage 2's loss history, after stage 1's, per trial
    assert set(history["phase"]) == {"stage1", "stage2"}
    per_trial = history.groupby(["trial_id", "phase"]).size().unstack()
    assert (per_trial["stage1"] == 2).all() and (per_trial["stage2"] == 3).all()


def test_literature_criteria_select_from_prerequisite_scores(tmp_path, small_cifar,
                                                             fresh_cache):
    """class_density and k_center in both spaces: their scores computed once each
    before the trials that read them (x_train's features once, for Inception), and
    each trial's subset the one the criterion picks from scores worked out here."""
    from selection.criteria import ScoreBook, select
    from selection.datasets import load_cifar10
    from selection.feature_scores import feature_scores, pixel_features
    from tests.helpers.standin import StandInExtractor

    sweep(tmp_path, "--set", "grid.criterion=[class_density, k_center]",
          "--set", "grid.selection.space=[inception, pixel]",
          "--set", "grid.n_train=[100]", "--set", "priors=[gaussian]")  # fmt: skip
    results, _ = tables(tmp_path)
    assert len(results) == 4 and (results["status"] == "ok").all()
    runs = json.loads((tmp_path / "smoke" / "timings.json").read_text())["runs"]
    tasks = sorted(k.split("-")[0] for run in runs for k in run["prerequisites"])
    assert tasks == ["class_density", "class_density", "features", "k_center",
                     "k_center"], tasks  # fmt: skip
    train = load_cifar10(small_cifar, "train", limit=300, progress=False)
    spaces = {"inception": StandInExtractor()(np.asarray(train.images)),
              "pixel": pixel_features(train.images)}
    for _, row in results.iterrows():
        criterion, space = row["criterion"], row["selection.space"]
        kind = "class_density" if criterion == "class_density" else "k_center"
        scores = feature_scores(kind, spaces[space], np.asarray(train.labels), seed=0)
        chosen = select(criterion, train, 100, seed=0,
                        scores=ScoreBook.in_memory({kind: scores}))  # fmt: skip
        counts = np.bincount(np.asarray(train.labels)[chosen.indices], minlength=10)
        assert json.loads(row["class_counts"]) == dict(
            zip(train.classes, counts.tolist(), strict=True)), (criterion, space)
