"""experiments.cross_sweep: one arm of a sweep against the arms of another, paired by
seed, checked by hand (scipy's t distribution, Holm's rule written out) on synthetic
sweeps of two recipes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments import cross_sweep
from tests.helpers.commands import assert_one_line_error, run_command
from tests.test_analysis import synthetic_grid, synthetic_results, write_sweep
from vae_sweep.errors import InputError

# tests/test_analysis.py's synthetic FIDs: the whole pool (400 images) and halves of
# 100 by random and lowest_recon, seeds 0-2
ALL = {"gaussian": [6.0, 7.0, 8.0], "gmm": [5.0, 5.0, 8.0]}
HALVES = {
    "random": {"gaussian": [10.0, 12.0, 14.0], "gmm": [8.0, 9.0, 10.0]},
    "lowest_recon": {"gaussian": [9.0, 10.0, 13.0], "gmm": [8.0, 9.0, 10.0]},
}


def _with_budget(results: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Stage-1 steps of 100 images, as a step-budget sweep records them."""
    return results.assign(steps_run=steps, images_seen=100 * steps)


@pytest.fixture()
def sweeps(tmp_path):
    """A: the recipe at 8 epochs (its `all` arm: 32 steps of 100, 8 passes over
    400 images); B: at 4 epochs (its halves: 16 steps, 16 passes over 100)."""
    long = synthetic_grid("long", stage1={"epochs": 8})
    a = write_sweep(tmp_path / "long", grid=long,
                    results=_with_budget(synthetic_results(), 32))  # fmt: skip
    b = write_sweep(tmp_path / "short", grid=synthetic_grid("short"),
                    results=_with_budget(synthetic_results(), 16))  # fmt: skip
    return str(a), str(b)


def _holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out: the i-th smallest p times (m - i),
    never below the one before, at most 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def test_each_half_against_the_whole_pool_by_hand(sweeps, tmp_path):
    a, b = sweeps
    out = tmp_path / "out"
    cross_sweep.main([a, b, "--arm", "criterion=all", "--against", "n_train=100",
                      "--labels", "8 epochs,4 epochs", "--out", str(out)])  # fmt: skip
    table = pd.read_csv(out / cross_sweep.TABLE)
    assert set(table["metric"]) == {"fid"}  # the only metric both measured
    rows = table.set_index(["against", "prior"])
    p_values = []
    for criterion, priors in HALVES.items():
        for prior, fids in priors.items():
            row = rows.loc[(f"n_train=100 criterion={criterion}", prior)]
            d = np.array(ALL[prior]) - np.array(fids)
            sd = math.sqrt(sum((x - d.mean()) ** 2 for x in d) / 2)
            half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
            assert row["pairs"] == 3 and row["seeds"] == "0,1,2"
            assert row["difference"] == pytest.approx(d.mean())
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(
                (d.mean() - half, d.mean() + half))
            p = 2 * stats.t.sf(abs(d.mean() / (sd / math.sqrt(3))), 2)
            assert row["p_value"] == pytest.approx(p)
            assert row["a_mean"] == pytest.approx(np.mean(ALL[prior]))
            p_values.append((row.name, p))
    expected = dict(zip([k for k, _ in p_values], _holm([p for _, p in p_values]),
                        strict=True))  # fmt: skip
    for key, adjusted in expected.items():
        assert rows.loc[key, "p_holm"] == pytest.approx(adjusted)
    report = (out / "cross_sweep.md").read_text()
    # the budgets: 32 steps of 100 over 400 images, 16 over 100
    assert "| 8 epochs | n_train=400 criterion=all | 32 steps, 8 epochs |" in report
    assert "| 4 epochs | n_train=100 criterion=random | 16 steps, 16 epochs |" in report
    assert "The sweeps' base settings differ in: stage1.epochs: 8 / 4." in report
    assert "## FID (lower is better)" in report and "PARTIAL" not in report


def test_only_seeds_both_finished_are_paired(tmp_path):
    """B's random seed 0 did not end: that arm is paired on seeds 1 and 2 (by
    seed, not by position)."""
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    b = write_sweep(tmp_path / "b", grid=synthetic_grid("b"),
                    results=synthetic_results({"ran100s0": "unfinished"}))  # fmt: skip
    out = tmp_path / "out"
    cross_sweep.main([str(a), str(b), "--arm", "n_train=400", "--out", str(out)])
    rows = pd.read_csv(out / cross_sweep.TABLE).set_index(["against", "prior"])
    random = rows.loc[("n_train=100 criterion=random", "gaussian")]
    assert random["pairs"] == 2 and random["seeds"] == "1,2"
    assert random["difference"] == pytest.approx(((7 - 12) + (8 - 14)) / 2)
    # every arm of B when --against is not given, the whole pool's own included
    assert rows.loc[("n_train=400 criterion=all", "gaussian"), "difference"] == 0


def _bad(tmp_path, case: str) -> list[str]:
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    changes = {"fid": {"samples": 60}} if case == "scores" else {}
    b = write_sweep(tmp_path / "b", grid=synthetic_grid("b", **changes))
    return [str(a), str(b)]


def test_scores_measured_alike_compare_whatever_else_was_measured(tmp_path):
    """Sweeps that differ in which other metrics they measured, their bootstrap and
    where their data lie still score alike; an arm whose every seed differs by the
    same amount shows the value with no interval (not a zero-width one)."""
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    other = synthetic_grid("b", fid={"samples": 50, "metrics": ["fid", "kid"],
                                     "bootstrap": 20},
                           data={"train_limit": 400, "root": str(tmp_path)})
    shifted = synthetic_results()
    shifted["fid"] = shifted["fid"] + 0.5
    b = write_sweep(tmp_path / "b", grid=other, results=shifted)
    out = tmp_path / "out"
    cross_sweep.main([str(a), str(b), "--arm", "criterion=all", "--level", "0.1",
                      "--out", str(out)])  # fmt: skip
    report = (out / "cross_sweep.md").read_text()
    assert "| n_train=400 criterion=all | gaussian | 3 | 7 | 7.5 | -0.5 (no spread) |" \
        in report  # fmt: skip
    # level 0.1 (alpha 0.9, a slip for alpha 0.1): every delta has 80% power
    table = pd.read_csv(out / cross_sweep.TABLE)
    assert (table.loc[table["against"].str.contains("random"), "resolvable"] == 0).all()


def test_out_never_replaces_a_sweep_or_a_folder_of_other_files(sweeps, tmp_path):
    """The report folder is replaced whole: --out set to a sweep, to the folder
    holding the sweeps, or to one with other files in it would delete them."""
    a, b = sweeps
    args = [a, b, "--arm", "criterion=all"]
    kept = sorted(p.name for p in tmp_path.rglob("*"))
    for out, needle in [(b, "would replace"), (str(tmp_path), "would replace"),
                        (str(tmp_path / "short" / ".."), "would replace")]:  # fmt: skip
        with pytest.raises(InputError, match=needle):
            cross_sweep.main([*args, "--out", out])
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(InputError, match="a folder holding other files"):
        cross_sweep.main([*args, "--out", str(notes)])
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([*kept, "notes",
                                                                  "todo.txt"])
    # an earlier report is replaced, and so is an empty folder
    for out in (tmp_path / "report", tmp_path / "report", tmp_path / "empty"):
        out.mkdir(exist_ok=True)
        cross_sweep.main([*args, "--out", str(out)])
        assert (out / "cross_sweep.md").is_file()


@pytest.mark.parametrize("extra, needle", [
    (["--arm", "criterion=all"], "its scores do not compare with"),  # case "scores"
    (["--arm", "width=3"], "--arm: width is not an arm's key"),
    (["--arm", "criterion"], "--arm 'criterion': KEY=VALUE pairs"),
    (["--arm", "criterion=all,criterion=random"], "criterion given twice"),
    (["--arm", "n_train=100"], "2 arms of"),
    (["--arm", "criterion=k_center"], "no such arm"),
    (["--arm", "criterion=all", "--against", "n_train=7"], "--against n_train=7: no "
                                                            "such arm"),
    (["--arm", "criterion=all", "--labels", "x"], "--labels 'x': two different"),
    (["--arm", "criterion=all", "--metric", "kid"], "--metric kid: not measured in "
                                                     "both sweeps (both have fid)"),
    (["--arm", "criterion=all", "--level", "1.5"], "--level 1.5"),
    (["--arm", "criterion=all", "--labels", "prior,B"], "'prior' is a column name"),
    (["--arm", "criterion=all", "--labels", "a|b,c"], "'a|b' is a column name"),
])  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, extra, needle):
    folders = _bad(tmp_path, "scores" if "compare" in needle else "")
    out = tmp_path / "out"
    with pytest.raises(InputError) as raised:
        cross_sweep.main([*folders, *extra, "--out", str(out)])
    message = str(raised.value)
    assert needle in message and "\n" not in message, message
    if "compare" in needle:
        assert "fid.samples" in message
    assert not out.exists()


def test_the_command_exits_2_with_one_line(tmp_path):
    folders = _bad(tmp_path, "")
    result = run_command("experiments.cross_sweep", *folders, "--arm", "seed=0")
    assert_one_line_error(result, "--arm: seed is not an arm's key")


def test_two_trials_of_one_seed_in_an_arm_are_refused(tmp_path):
    """An axis the results do not record leaves two trials per seed in an arm: paired
    by seed they would make a cross product."""
    twice = synthetic_results()
    copy = twice[twice["criterion"] == "random"].assign(
        trial_id=lambda t: t["trial_id"] + "x")
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    b = write_sweep(tmp_path / "b", grid=synthetic_grid("b"),
                    results=pd.concat([twice, copy]))  # fmt: skip
    with pytest.raises(InputError, match="holds 2 trials of seed 0"):
        cross_sweep.main([str(a), str(b), "--arm", "criterion=all",
                          "--out", str(tmp_path / "out")])  # fmt: skip


def test_one_sweep_against_itself_needs_labels(tmp_path):
    a = write_sweep(tmp_path / "a", grid=synthetic_grid("a"))
    with pytest.raises(InputError, match="both sweeps are named a: tell them apart"):
        cross_sweep.main([str(a), str(a), "--arm", "criterion=all"])
    out = tmp_path / "out"
    cross_sweep.main([str(a), str(a), "--arm", "criterion=all", "--labels", "x,y",
                      "--out", str(out)])  # fmt: skip
    table = pd.read_csv(out / cross_sweep.TABLE)
    mine = table[table["against"] == "n_train=400 criterion=all"]
    assert (mine["difference"] == 0).all() and len(mine) == 2
