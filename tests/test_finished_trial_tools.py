"""The tools that re-read a finished trial. experiments.stage2_budget (its stage 2
trained again at several budgets): its schedules by hand, its bad input, and end to
end on a tiny sweep with the stand-in network, where its row at the grid's own budget
is the trial's own two-stage prior (the same KID and FID as the sweep's results).
experiments.stage1_budget (its stage 1 trained again): on the same sweep, its row
at the grid's budget is the trial's own, and stage 1 trained afresh at that budget
is the trial's stage 1, weight for weight. experiments.latent_fit (each prior's
latents against the posterior draws): on the same sweep, its latents are the ones
the trial decoded (decoded and scored again, they give the sweep's KID per prior) and
its Frechet distances those of scipy's sqrtm on the same arrays."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from experiments import finished_trial, latent_fit, stage1_budget, stage2_budget
from fid.features import extract_features
from fid.sample_metrics import kid
from sweep.config import GridConfig, resolved_yaml
from tests.helpers.sweeps import sweep, tables
from vae.inference import decode, to_uint8
from vae.stage2 import TwoStageOptions
from vae.train_config import TrainConfig
from vae_sweep.errors import InputError


def test_a_stretched_schedule_halves_as_many_times_over_the_run():
    train = TrainConfig(epochs=None, steps=20_000, round_steps=500,
                        lr_schedule="step", lr_step=5_000)  # fmt: skip
    grid = TwoStageOptions(train=train)
    longer = stage2_budget.stretched(grid, 40_000, 20_000)
    assert (longer.train.steps, longer.train.lr_step) == (40_000, 10_000)
    assert longer.train.round_steps == 500 and longer.train.lr == grid.train.lr
    shorter = stage2_budget.stretched(grid, 10_000, 20_000)
    assert (shorter.train.steps, shorter.train.lr_step) == (10_000, 2_500)
    assert stage2_budget.stretched(grid, 20_000, 20_000) == grid  # the trial's own
    # an odd budget: the step rounded to whole rounds, the rounds kept
    odd = stage2_budget.stretched(grid, 12_345, 20_000)  # 3,086.25 -> 6 rounds
    assert (odd.train.lr_step, odd.train.round_steps) == (3_000, 500)
    # a step shorter than a round: the rounds shrink to it, gcd(75, 300)
    tiny = stage2_budget.stretched(grid, 300, 20_000)
    assert (tiny.train.steps, tiny.train.lr_step, tiny.train.round_steps) == (300, 75,
                                                                               75)
    plateau = TwoStageOptions(train=TrainConfig(epochs=None, steps=20_000,
                                                round_steps=500))  # fmt: skip
    assert stage2_budget.stretched(plateau, 40_000, 20_000).train.lr_step is None


def _fake_sweep(folder, criterion="random", priors=("two_stage",), outcome="completed",
                stage1=None, n_train=None):  # fmt: skip
    grid = GridConfig.model_validate({
        "name": "s", "grid": {"criterion": [criterion], "seed": [0]},
        "priors": list(priors),
        "stage1": stage1 or {"epochs": None, "steps": 8, "round_steps": 2},
        "stage2": {"steps": 20, "round_steps": 10}})  # fmt: skip
    (folder / "grid.yaml").write_text(resolved_yaml(grid))
    trial = folder / "trial_abc"
    (trial / "checkpoint_000000").mkdir(parents=True)
    params = {"criterion": criterion, "seed": 0, "n_train": n_train}
    (trial / "params.json").write_text(json.dumps({"trial": params}))
    torch.save({"outcome": outcome}, trial / "checkpoint_000000" / "trial.pt")
    return folder


@pytest.mark.parametrize("argv, fake, needle", [
    (["--trial", "nope"], {}, "no such trial"),
    (["--trial", "abc", "--steps", "1e4"], {}, "--steps '1e4'"),
    (["--trial", "abc", "--steps", "0,10"], {}, "at least 1 step"),
    (["--trial", "abc", "--samples", "6"], {}, "--samples 6: at least 7"),
    (["--trial", "abc", "--threads", "0"], {}, "--threads 0: at least 1"),
    (["--trial", "abc"], {"criterion": "lowest_recon"}, "reads scores; pick a trial"),
    (["--trial", "abc"], {"priors": ("gaussian",)}, "wants the two_stage prior"),
    (["--trial", "abc"], {"outcome": "stopped"}, "did not finish (outcome stopped)"),
])  # fmt: skip
def test_bad_input_is_one_line_before_any_work(tmp_path, argv, fake, needle):
    folder = _fake_sweep(tmp_path, **fake)
    with pytest.raises(InputError) as raised:
        stage2_budget.main([str(folder), *argv])
    assert needle in str(raised.value) and "\n" not in str(raised.value)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cifar_root):
    """A tiny finished sweep of one trial with every generative prior, and its
    results' row of each prior."""
    storage = tmp_path_factory.mktemp("finished")
    sweep(storage, "--set", "grid.n_train=[100]", "--set", "grid.criterion=[random]",
          "--set", "priors=[gaussian, gmm, two_stage]", "--set", "stage2.steps=20",
          "--set", "stage2.round_steps=10", "--set", "stage2.hidden=[16, 16, 16]",
          "--set", "gmm.components=3", "--set", "fid.metrics=[fid, kid]",
          # stage 1 in steps, its rate halved every 4 (stage1_budget stretches it)
          "--set", "stage1.epochs=null", "--set", "stage1.steps=8",
          "--set", "stage1.round_steps=2", "--set", "stage1.lr_schedule=step",
          "--set", "stage1.lr_step=4", "--set", "checkpoint_every=4")  # fmt: skip
    results, _ = tables(storage)
    assert len(results) == 3 and (results["status"] == "ok").all()
    return storage / "smoke", results.set_index("prior")


@pytest.mark.ray
def test_the_grids_own_budget_is_the_trials_own_two_stage_prior(
    finished, tmp_path, cifar_root, monkeypatch
):
    folder, results = finished
    row = results.loc["two_stage"]
    monkeypatch.setenv("VAE_SWEEP_DATA", str(cifar_root))
    out = tmp_path / "budget.json"
    stage2_budget.main([str(folder), "--trial", row["trial_id"],
                        "--steps", "10,20", "--out", str(out)])  # fmt: skip
    report = pd.DataFrame(json.loads(out.read_text())["rows"]).set_index("steps")
    own = report.loc[20]
    assert own["sweep_kid"] == row["kid"]  # what the tool read: the trial's report
    assert own["kid"] == pytest.approx(row["kid"], rel=1e-9)
    assert own["fid"] == pytest.approx(row["fid"], rel=1e-6)
    assert report.loc[20, "stage2_mse"] == pytest.approx(row["stage2_loss_mse"])
    # half the budget is another stage 2: other samples, another score
    assert pd.isna(report.loc[10, "sweep_kid"]) and report.loc[10, "kid"] != row["kid"]


def _frechet_by_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    """FID's formula, transcribed with scipy's general matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * cross))


@pytest.mark.ray
def test_latent_fit_draws_the_trials_own_latents(finished, tmp_path, cifar_root,
                                                  monkeypatch):  # fmt: skip
    folder, results = finished
    trial_id = results["trial_id"].iloc[0]
    monkeypatch.setenv("VAE_SWEEP_DATA", str(cifar_root))
    out = tmp_path / "latent.json"
    # 60 latents (more than the 32 dimensions: full-rank covariances for sqrtm)
    latent_fit.main([str(folder), "--trial", trial_id, "--samples", "60",
                     "--out", str(out)])  # fmt: skip
    rows = pd.DataFrame(json.loads(out.read_text())["rows"]).set_index("prior")
    assert list(rows.index) == ["gaussian", "gmm", "two_stage"]
    assert (rows["samples"] == 60).all()
    # what it draws: the priors' latents, at the sweep's own count (fid.samples 20)
    # decoded and scored as the sweep scored them, give the sweep's KID
    grid, params, state = finished_trial.check_trial(folder, trial_id)
    trial = finished_trial.load_trial(folder, trial_id, grid, params, state)
    extractor = finished_trial.extractor(grid)
    real = extract_features(trial.test_images, extractor, progress=False)
    means = np.asarray(trial.means, dtype=np.float64)
    log_vars = np.asarray(trial.log_vars, dtype=np.float64)
    draws = latent_fit.posterior_draws(means, log_vars, 60, trial.settings.seed)
    stage2 = latent_fit.saved_stage2(folder, trial_id)
    for prior in rows.index:
        latents = latent_fit.prior_latents(trial, prior, 20, stage2)
        images = to_uint8(decode(trial.model, torch.as_tensor(latents,
                                                              dtype=torch.float32)))
        features = extract_features(images, extractor, progress=False)
        assert kid(features, real, seed=trial.settings.seed).mean == pytest.approx(
            results.loc[prior, "kid"], rel=1e-9), prior
        # and what it measured of the 60, by a slow transcription
        latents = latent_fit.prior_latents(trial, prior, 60, stage2)
        assert rows.loc[prior, "frechet"] == pytest.approx(
            _frechet_by_sqrtm(draws, latents), rel=1e-6, abs=1e-9), prior
        assert rows.loc[prior, "total_variance"] == pytest.approx(
            np.trace(np.cov(latents, rowvar=False)))
    assert rows["posterior_total_variance"].iloc[0] == pytest.approx(
        np.trace(np.cov(draws, rowvar=False)))
    again = latent_fit.posterior_draws(means, log_vars, 60, trial.settings.seed + 1)
    assert rows["posterior_floor"].iloc[0] == pytest.approx(
        _frechet_by_sqrtm(draws, again), rel=1e-6)


@pytest.mark.parametrize("argv, fake, needle", [
    (["--trial", "abc", "--samples", "6"], {}, "--samples 6: at least 7"),
    (["--trial", "abc"], {"outcome": "stopped"}, "did not finish (outcome stopped)"),
    (["--trial", "abc", "--trial", "nope"], {}, "no such trial"),
    (["--trial", "abc"], {"criterion": "k_center"}, "reads scores; pick a trial"),
    (["--trial", "abc", "--samples", "101"], {"n_train": 100},
     "--samples 101: trial abc trained on 100 images"),
    (["--trial", "abc", "--samples", "50001"], {},  # n_train None: the whole x_train
     "--samples 50001: trial abc trained on 50000 images"),
])  # fmt: skip
def test_latent_fit_bad_input_is_one_line_before_any_work(tmp_path, argv, fake,
                                                           needle):  # fmt: skip
    folder = _fake_sweep(tmp_path, **fake)
    with pytest.raises(InputError) as raised:
        latent_fit.main([str(folder), *argv])
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    assert not (folder / "latent_fit.json").exists()


def test_posterior_draws_are_one_draw_each_of_distinct_images():
    n, dim = 4000, 3
    means = np.repeat(np.arange(n, dtype=float)[:, None] * 100, dim, axis=1)
    log_vars = np.full((n, dim), np.log(4.0))  # sigma 2
    draws = latent_fit.posterior_draws(means, log_vars, 3000, seed=5)
    rows = np.rint(draws[:, 0] / 100).astype(int)  # the image each draw came from
    noise = draws - means[rows]
    assert len(set(rows)) == 3000 and (np.abs(noise) < 50).all()
    # sigma 2 per coordinate: the sample sd within 5% (9,000 values: 1.3% sd)
    assert noise.std() == pytest.approx(2.0, rel=0.05)
    assert abs(noise.mean()) < 0.15


@pytest.mark.ray
def test_stage1_budget_retrains_the_trials_own_stage1(
    finished, tmp_path, cifar_root, monkeypatch
):
    folder, results = finished
    trial_id = results["trial_id"].iloc[0]
    monkeypatch.setenv("VAE_SWEEP_DATA", str(cifar_root))
    out = tmp_path / "stage1.json"
    stage1_budget.main([str(folder), "--trial", trial_id, "--steps", "8,16",
                        "--out", str(out)])  # fmt: skip
    rows = pd.DataFrame(json.loads(out.read_text())["rows"]).set_index(
        ["steps", "prior"])
    for prior in ("gaussian", "gmm"):  # at the grid's budget: the trial's own
        own = rows.loc[(8, prior)]
        assert own["sweep_kid"] == results.loc[prior, "kid"]
        assert own["kid"] == pytest.approx(results.loc[prior, "kid"], rel=1e-9)
        assert own["fid"] == pytest.approx(results.loc[prior, "fid"], rel=1e-6)
        assert own["mse"] == pytest.approx(results.loc[prior, "loss_mse"])
        assert rows.loc[(16, prior), "kid"] != own["kid"]  # another stage 1
    assert (rows.loc[16, "lr_step"] == 8).all()  # the schedule stretched: 4 x 16 / 8
    # trained afresh at the grid's own budget, stage 1 is the trial's
    grid, params, state = finished_trial.check_trial(folder, trial_id)
    trial = finished_trial.load_trial(folder, trial_id, grid, params, state)
    # weight for weight (what every other budget's row rests on) at the trial's one
    # thread (Ray's OMP_NUM_THREADS for a one-CPU trial; at two the sums differ in
    # the last bits, about 1e-5 of the weights after 8 steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, *_ = stage1_budget.trained_stage1(trial, 8)
    finally:
        torch.set_num_threads(threads)
    for name, tensor in trial.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


@pytest.mark.parametrize("argv, fake, needle", [
    (["--priors", "two_stage"], {}, "--priors 'two_stage': choose from gaussian, gmm"),
    (["--steps", "0"], {}, "at least 1 step"),
    (["--samples", "3"], {}, "--samples 3: at least 7"),
    (["--threads", "0"], {}, "--threads 0: at least 1"),
    ([], {"stage1": {"epochs": 3}}, "budgeted in epochs"),
    ([], {"criterion": "class_density"}, "reads scores; pick a trial"),
    ([], {"outcome": "diverged"}, "did not finish (outcome diverged)"),
])  # fmt: skip
def test_stage1_budget_bad_input_is_one_line_before_any_work(tmp_path, argv, fake,
                                                             needle):  # fmt: skip
    folder = _fake_sweep(tmp_path, **fake)
    with pytest.raises(InputError) as raised:
        stage1_budget.main([str(folder), "--trial", "abc", *argv])
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    assert not list(folder.glob("*.json"))
