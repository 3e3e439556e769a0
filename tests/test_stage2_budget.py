"""experiments.stage2_budget: its stretched schedules by hand and its bad input. Its
whole run (a trial's stage 2 trained again and scored through the FID network) is a
study's check, not a test's: it reproduces the trial's own KID at the grid's budget,
which the study's README quotes."""

from __future__ import annotations

import json

import pytest

from experiments import stage2_budget
from sweep.config import GridConfig, resolved_yaml
from vae.stage2 import TwoStageOptions
from vae.train_config import TrainConfig
from vae_sweep.errors import InputError


def test_a_stretched_schedule_halves_as_often_per_step():
    train = TrainConfig(epochs=None, steps=20_000, round_steps=500,
                        lr_schedule="step", lr_step=5_000)  # fmt: skip
    grid = TwoStageOptions(train=train)
    longer = stage2_budget.stretched(grid, 40_000, 20_000)
    assert (longer.train.steps, longer.train.lr_step) == (40_000, 10_000)
    assert longer.train.round_steps == 500 and longer.train.lr == grid.train.lr
    shorter = stage2_budget.stretched(grid, 10_000, 20_000)
    assert (shorter.train.steps, shorter.train.lr_step) == (10_000, 2_500)
    same = stage2_budget.stretched(grid, 20_000, 20_000)
    assert same == grid  # the grid's own budget is the trial's own stage 2
    tiny = stage2_budget.stretched(grid, 300, 20_000)
    # rounds divide the budget and the schedule's step: gcd(300, 75, 500)
    assert (tiny.train.steps, tiny.train.lr_step, tiny.train.round_steps) == (300, 75,
                                                                               25)


def _sweep(tmp_path, criterion="random"):
    grid = GridConfig.model_validate({"name": "s", "grid": {"criterion": [criterion],
                                                            "seed": [0]}})  # fmt: skip
    (tmp_path / "grid.yaml").write_text(resolved_yaml(grid))
    trial = tmp_path / "trial_abc"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps(
        {"trial": {"criterion": criterion, "seed": 0, "n_train": None}}))  # fmt: skip
    (trial / "result.json").write_text("{}\n")
    return tmp_path


@pytest.mark.parametrize("argv, needle", [
    (["--trial", "nope"], "no such trial"),
    (["--trial", "abc", "--steps", "1e4"], "--steps '1e4'"),
    (["--trial", "abc", "--steps", "0,10"], "at least 1 step"),
    (["--trial", "abc", "--samples", "1"], "--samples 1"),
])  # fmt: skip
def test_bad_input_is_one_line_before_any_work(tmp_path, argv, needle):
    folder = _sweep(tmp_path)
    with pytest.raises(InputError) as raised:
        stage2_budget.main([str(folder), *argv])
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_a_trial_whose_criterion_reads_scores_is_refused(tmp_path):
    folder = _sweep(tmp_path, criterion="lowest_recon")
    with pytest.raises(InputError, match="reads scores; pick a trial of random"):
        stage2_budget.main([str(folder), "--trial", "abc"])
