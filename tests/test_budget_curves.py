"""experiments.budget_curves: each arm's metric against its stage-1 steps over sweeps
of one recipe at two budgets, checked by hand (scipy's t quantile) on the synthetic
sweeps of tests/test_analysis.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments import budget_curves
from tests.helpers.commands import assert_one_line_error, run_command
from tests.test_analysis import synthetic_grid, synthetic_results, write_sweep
from vae_sweep.errors import InputError

# tests/test_analysis.py's synthetic FIDs of the random half (n_train 100), seeds 0-2
RANDOM_GAUSSIAN = [10.0, 12.0, 14.0]


def _at(results: pd.DataFrame, steps: int, better: float) -> pd.DataFrame:
    """The synthetic results as a sweep of `steps` stage-1 steps whose FIDs are
    `better` lower, with KID = FID / 1000 (so KID x 1000, as printed, is the FID)."""
    fid = results["fid"] - better
    return results.assign(steps_run=steps, fid=fid, kid=fid / 1000)


@pytest.fixture()
def sweeps(tmp_path):
    short = write_sweep(tmp_path / "short", grid=synthetic_grid("short"),
                        results=_at(synthetic_results(), 16, 0.0))  # fmt: skip
    long = write_sweep(tmp_path / "long", grid=synthetic_grid("long"),
                       results=_at(synthetic_results(), 32, 5.0))  # fmt: skip
    return str(short), str(long)


def test_each_arms_mean_and_interval_at_each_budget_by_hand(sweeps, tmp_path):
    out = tmp_path / "out"
    budget_curves.main([*sweeps, "--metric", "kid", "--out", str(out)])
    table = pd.read_csv(out / "budget_curves.csv")
    rows = table.set_index(["n_train", "criterion", "prior", "steps_run"])
    for steps, better in ((16, 0.0), (32, 5.0)):
        values = np.array(RANDOM_GAUSSIAN) - better
        mean = sum(values) / 3
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
        row = rows.loc[(100, "random", "gaussian", steps)]
        assert row["kid_mean"] == pytest.approx(mean)  # printed: KID x 1000
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((mean - half,
                                                                 mean + half))
        assert row["seeds"] == 3
    # every arm and generative prior at both budgets, nothing else
    arms = synthetic_results().drop_duplicates(["n_train", "criterion", "prior"])
    assert len(table) == 2 * len(arms)
    assert set(table["steps_run"]) == {16, 32}
    assert (out / "budget_curves.png").stat().st_size > 0


@pytest.mark.parametrize("case, extra, needle", [
    ("scores", [], "its scores do not compare with"),
    ("", ["--metric", "precision"], "--metric precision:"),
    ("", ["--level", "1.5"], "--level 1.5"),
])  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case, extra, needle):
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    changes = {"fid": {"samples": 60}} if case == "scores" else {}
    b = write_sweep(tmp_path / "b", grid=synthetic_grid("b", **changes))
    out = tmp_path / "out"
    with pytest.raises(InputError) as raised:
        budget_curves.main([str(a), str(b), *extra, "--out", str(out)])
    message = str(raised.value)
    assert needle in message and "\n" not in message, message
    assert not out.exists()


def test_a_sweep_that_recorded_no_steps_is_one_line(tmp_path):
    """Sweeps from before `steps_run` was recorded (reports/study_cpu) have none."""
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"),
                    results=synthetic_results().drop(columns="steps_run",
                                                     errors="ignore"))  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(InputError, match="results record no steps_run") as raised:
        budget_curves.main([str(a), "--metric", "fid", "--out", str(out)])
    assert "\n" not in str(raised.value)
    assert not out.exists()


def test_the_command_exits_2_with_one_line(tmp_path):
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    result = run_command("experiments.budget_curves", str(a), "--level", "2")
    assert_one_line_error(result, "--level 2")
