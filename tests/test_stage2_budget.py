"""experiments.stage2_budget: a finished trial's stage 2 trained again at several
budgets. Its schedules by hand, its bad input, and end to end on a tiny sweep with
the stand-in network, where its row at the grid's own budget is the trial's own
two-stage prior: the same KID and FID as the sweep's results."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from experiments import stage2_budget
from sweep.config import GridConfig, resolved_yaml
from tests.helpers.sweeps import sweep, tables
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


def _fake_sweep(folder, criterion="random", priors=("two_stage",), outcome="completed"):
    grid = GridConfig.model_validate({
        "name": "s", "grid": {"criterion": [criterion], "seed": [0]},
        "priors": list(priors),
        "stage2": {"steps": 20, "round_steps": 10}})  # fmt: skip
    (folder / "grid.yaml").write_text(resolved_yaml(grid))
    trial = folder / "trial_abc"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(
        {"trial": {"criterion": criterion, "seed": 0, "n_train": None}}))  # fmt: skip
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


@pytest.mark.ray
def test_the_grids_own_budget_is_the_trials_own_two_stage_prior(
    tmp_path, cifar_root, monkeypatch
):
    sweep(tmp_path, "--set", "grid.n_train=[100]", "--set", "grid.criterion=[random]",
          "--set", "priors=[two_stage]", "--set", "stage2.steps=20",
          "--set", "stage2.round_steps=10", "--set", "stage2.hidden=[16, 16, 16]",
          "--set", "fid.metrics=[fid, kid]")  # fmt: skip
    results, _ = tables(tmp_path)
    row = results.iloc[0]
    assert len(results) == 1 and row["status"] == "ok"
    monkeypatch.setenv("VAE_SWEEP_DATA", str(cifar_root))
    out = tmp_path / "budget.json"
    stage2_budget.main([str(tmp_path / "smoke"), "--trial", row["trial_id"],
                        "--steps", "10,20", "--out", str(out)])  # fmt: skip
    report = pd.DataFrame(json.loads(out.read_text())["rows"]).set_index("steps")
    own = report.loc[20]
    assert own["sweep_kid"] == row["kid"]  # what the tool read: the trial's report
    assert own["kid"] == pytest.approx(row["kid"], rel=1e-9)
    assert own["fid"] == pytest.approx(row["fid"], rel=1e-6)
    assert report.loc[20, "stage2_mse"] == pytest.approx(row["stage2_loss_mse"])
    # half the budget is another stage 2: other samples, another score
    assert pd.isna(report.loc[10, "sweep_kid"]) and report.loc[10, "kid"] != row["kid"]
