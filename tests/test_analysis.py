"""The analysis report and the early-stopping replay on small synthetic sweeps whose
answers are worked out by hand (experiments.significance, .tables, .analysis,
.replay, .early_stopping)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from experiments import analysis, early_stopping
from experiments.figures import CRITERION_COLOURS, UNLISTED_COLOUR
from experiments.replay import replay, round_seconds
from experiments.significance import (
    holm,
    kendall_tau,
    paired_difference,
    resolvable_difference,
    sign_flip_p_value,
    t_interval,
    top_k_overlap,
)
from experiments.tables import comparisons, fid_table, row_keys, wide_fid_table
from selection.criteria import CRITERIA
from sweep.config import GridConfig, resolved_yaml
from sweep.reader import load_sweep
from tests.helpers.commands import assert_one_line_error, run_command
from vae_sweep.errors import InputError

# Student t's 97.5% quantile with 2 degrees of freedom, whose CDF is
# 1/2 + t / (2 sqrt(2 + t^2)): t / sqrt(2 + t^2) = 0.95
T_975_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))


# -- the statistics, by hand ---------------------------------------------------------


def test_t_interval_by_hand():
    interval = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1
    half = T_975_DF2 / math.sqrt(3)
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.low == pytest.approx(2 - half, rel=1e-12)
    assert interval.high == pytest.approx(2 + half, rel=1e-12)
    one = t_interval([5.0, float("nan")])  # NaN dropped; one value has no spread
    assert one.mean == 5.0 and one.n == 1 and math.isnan(one.low)


def test_paired_t_by_hand():
    # d = [2, 3, 2]: mean 7/3, sd sqrt(1/3), t = 7; with 2 degrees of freedom the
    # two-sided p is 1 - t / sqrt(2 + t^2)
    result = paired_difference([3, 5, 4], [1, 2, 2])
    assert result.difference.mean == pytest.approx(7 / 3)
    assert result.p_value == pytest.approx(1 - 7 / math.sqrt(51), rel=1e-9)
    half = T_975_DF2 * math.sqrt(1 / 3) / math.sqrt(3)
    assert result.difference.low == pytest.approx(7 / 3 - half)


def test_differences_equal_to_rounding_have_no_spread():
    # 0.3 - 0.2 is 0.09999999999999998 in binary: the same difference in every pair
    # up to its last bit (scipy's t test warns of catastrophic cancellation); t is
    # undefined there, and the exact sign-flip test answers: 2 of the 2^3 sign
    # patterns reach |mean| 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paired_difference([0.3, 0.2, 0.1], [0.2, 0.1, 0.0]).p_value == 0.25
        assert paired_difference([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]).p_value == 1.0
        # the study's recall: one image in 10,000 more on both seeds is no evidence
        assert paired_difference([1e-4, 3e-4], [0.0, 2e-4]).p_value == 0.5


def test_sign_flip_permutation_by_hand():
    # 8 sign patterns of [2, 3, 2]: only all-plus and all-minus reach |mean| 7/3
    assert sign_flip_p_value([2, 3, 2]) == 0.25
    assert paired_difference([3, 5, 4], [1, 2, 2], test="permutation").p_value == 0.25
    # [1, -1]: every pattern has |mean| >= 0
    assert sign_flip_p_value([1, -1]) == 1.0


def test_holm_by_hand():
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1, but not below 0.06)
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_kendall_tau_and_top_k_by_hand():
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    a = {"w": 1.0, "x": 2.0, "y": 3.0, "z": 4.0}
    b = {"w": 2.0, "x": 1.0, "y": 4.0}
    assert top_k_overlap(b, a, 2) == 1.0  # {w, x} both
    assert top_k_overlap(b, a, 1) == 0.0  # x against w
    assert top_k_overlap({"y": 1.0, "z": 0.5}, a, 2) == 0.0


# -- a synthetic sweep folder ---------------------------------------------------------

# n_train 100 of a 400-image pool by random and lowest_recon, and the full pool
# ("all"), 3 seeds, 2 priors: FIDs picked so that the answers are easy to work out
FIDS = {
    (100, "random"): {"gaussian": [10.0, 12.0, 14.0], "gmm": [8.0, 9.0, 10.0]},
    (100, "lowest_recon"): {"gaussian": [9.0, 10.0, 13.0], "gmm": [8.0, 9.0, 10.0]},
    (400, "all"): {"gaussian": [6.0, 7.0, 8.0], "gmm": [5.0, 5.0, 8.0]},
}


def synthetic_grid(name="syn", **changes) -> GridConfig:
    raw = {
        "name": name,
        "data": {"train_limit": 400},
        "grid": {"n_train": [100, None], "criterion": ["random", "lowest_recon"],
                 "seed": [0, 1, 2]},
        "priors": ["gaussian", "gmm"],
        "eval": {"every": 1, "samples": 10},
        "stage1": {"epochs": 4},
        "fid": {"samples": 50},
        **changes,
    }  # fmt: skip
    return GridConfig.model_validate(raw)


def synthetic_results(statuses=None) -> pd.DataFrame:
    statuses = statuses or {}
    rows = []
    for (n, criterion), priors in FIDS.items():
        for seed in range(3):
            trial = f"{criterion[:3]}{n}s{seed}"
            status = statuses.get(trial, "ok")
            for prior, fids in priors.items():
                rows.append({
                    "experiment": "syn", "trial_id": trial, "n_train": n,
                    "criterion": criterion, "seed": seed, "prior": prior,
                    "fid": fids[seed] if status == "ok" else None,
                    "fid_samples": 50, "status": status, "epochs_run": 4,
                    "loss_mse": 0.01 * (seed + 1), "variance_law": 1.0,
                    "inactive_dims": 2, "wall_seconds": 60.0,
                    "started_at": pd.Timestamp(1000 + 100 * len(rows), unit="s",
                                               tz="UTC"),
                    "finished_at": pd.Timestamp(1060 + 100 * len(rows), unit="s",
                                                tz="UTC"),
                })  # fmt: skip
    return pd.DataFrame(rows)


def synthetic_history(results: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for trial in results.drop_duplicates("trial_id").itertuples():
        for epoch in range(1, 5):
            rows.append({"experiment": "syn", "trial_id": trial.trial_id,
                         "phase": "stage1", "epoch": epoch, "loss_mse": 0.1 / epoch,
                         "fid_intermediate": 20.0 / epoch + trial.seed,
                         "finished_at": trial.started_at.timestamp() + 10 * epoch,
                         "n_train": trial.n_train, "criterion": trial.criterion,
                         "seed": trial.seed})  # fmt: skip
    return pd.DataFrame(rows)


def write_sweep(folder, grid=None, results=None, history=None):
    folder.mkdir(parents=True)
    grid = grid or synthetic_grid()
    results = synthetic_results() if results is None else results
    (folder / "grid.yaml").write_text(resolved_yaml(grid))
    results.to_parquet(folder / "results.parquet")
    history = synthetic_history(results) if history is None else history
    history.to_parquet(folder / "history.parquet")
    return folder


# -- the tables ---------------------------------------------------------------------


def test_small_metrics_keep_their_digits_in_the_tables():
    """A cell shows about two significant digits of its interval's width: a FID
    interval 10 wide keeps 2 decimals, a precision interval 0.064 wide 3, a recall
    interval 0.0013 wide 4; one seed, the value's own."""
    from experiments.tables import _cell, decimals

    assert [decimals(w) for w in (10.0, 75.4, 0.064, 0.0013, 0.0, float("nan"))] == [
        2, 2, 3, 4, 2, 2]  # fmt: skip
    from types import SimpleNamespace as Row  # as itertuples gives them

    row = Row(precision_mean=0.0111, ci_low=-0.0213, ci_high=0.0427, seeds=2)
    assert _cell(row, "precision") == "0.011 [-0.021, 0.043] n=2"
    one = Row(recall_mean=0.00012, seeds=1)
    assert _cell(one, "recall") == "0.00012 (1 seed)"
    same = Row(recall_mean=0.0001, ci_low=0.0001, ci_high=0.0001, seeds=5)
    assert _cell(same, "recall") == "0.00010 [0.00010, 0.00010] n=5"


def test_fid_table_cells_by_hand():
    results = synthetic_results({"ran100s2": "stopped"})  # random, seed 2: stopped
    keys = row_keys(results, {"n_train", "criterion", "seed"})
    long = fid_table(results, keys).set_index(["n_train", "criterion", "prior"])
    cell = long.loc[(100, "lowest_recon", "gaussian")]  # 9, 10, 13: mean 32/3
    sd = np.std([9.0, 10.0, 13.0], ddof=1)
    assert cell["fid_mean"] == pytest.approx(32 / 3)
    assert cell["ci_high"] - cell["fid_mean"] == pytest.approx(T_975_DF2 * sd / 3**0.5)
    assert cell["seeds"] == 3 and cell["samples"] == 50 and cell["stopped"] == 0
    stopped = long.loc[(100, "random", "gaussian")]  # 10, 12 only: the stop is apart
    assert stopped["fid_mean"] == 11.0 and stopped["seeds"] == 2
    assert stopped["stopped"] == 1
    wide = wide_fid_table(long.reset_index(), keys, ["gaussian", "gmm"])
    row = wide[(wide["n_train"] == 100) & (wide["criterion"] == "random")].iloc[0]
    assert row["not averaged"] == "1 stopped"
    assert row["gaussian"].startswith("11.00 [") and row["gaussian"].endswith("n=2")


@pytest.mark.parametrize("difference", [[2.0, 3.0, 2.0], [0.4, -0.1, 0.9, 0.3, 0.2]])
def test_resolvable_difference_is_statsmodels_power_solution(difference):
    """The delta a paired t test detects with 80% power: statsmodels' TTestPower
    solved for the effect size, times the differences' standard deviation."""
    power = pytest.importorskip("statsmodels.stats.power")
    n, sd = len(difference), np.std(difference, ddof=1)
    effect = power.TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8,
                                            alternative="two-sided")  # fmt: skip
    assert resolvable_difference(difference) == pytest.approx(effect * sd, rel=1e-6)
    assert math.isnan(resolvable_difference([1.0]))
    assert math.isnan(resolvable_difference([2, 2]))  # no spread: no power read
    assert math.isnan(resolvable_difference([0.3 - 0.2, 0.1]))  # to rounding


def test_resolvable_difference_is_zero_where_the_level_rejects_that_often():
    """At level 0.1 (alpha 0.9, a slip for alpha 0.1) a test rejects 90% of the time
    with no difference at all: every delta, 0 included, is found with 80% power
    (before: brentq found no sign change and raised)."""
    assert resolvable_difference([2.0, 3.0, 2.0], level=0.1) == 0.0
    assert resolvable_difference([2.0, 3.0, 2.0], level=0.25) > 0


def test_resolvable_difference_is_detected_at_its_power(rng):
    """Simulated: pairs whose true mean difference is the resolvable one reject at a
    rate of 80% (5 pairs, unit spread; the resolvable delta for the true spread)."""
    from scipy import stats

    delta = resolvable_difference(stats.norm.ppf(np.linspace(0.05, 0.95, 5)),
                                  power=0.8)  # fmt: skip
    spread = np.std(stats.norm.ppf(np.linspace(0.05, 0.95, 5)), ddof=1)
    draws = rng.standard_normal((20_000, 5)) * spread + delta
    p = stats.ttest_1samp(draws, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.01)


def test_comparisons_by_hand():
    results = synthetic_results()
    keys = row_keys(results, {"n_train", "criterion", "seed"})
    table = comparisons(results, keys).set_index(["comparison", "criterion", "prior"])
    # lowest_recon - random, gaussian: d = [-1, -2, -1], t = -4 with 2 degrees of
    # freedom: p = 1 - 4 / sqrt(18)
    recon = table.loc[("criterion vs random", "lowest_recon", "gaussian")]
    assert recon["difference"] == pytest.approx(-4 / 3)
    assert recon["p_value"] == pytest.approx(1 - 4 / math.sqrt(18), rel=1e-9)
    # equal FIDs: no difference, p = 1
    same = table.loc[("criterion vs random", "lowest_recon", "gmm")]
    assert same["difference"] == 0 and same["p_value"] == 1.0
    # random at 100 - the full set, gaussian: d = [4, 5, 6], t = 5 * sqrt(3)
    full = table.loc[("n_train vs full set", "random", "gaussian")]
    t = 5 * math.sqrt(3)
    assert full["difference"] == pytest.approx(5.0)
    assert full["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t**2), rel=1e-9)
    # what each can resolve (80% power): d = [4, 5, 6] has sd 1
    assert full["resolvable"] == pytest.approx(resolvable_difference([4, 5, 6]))
    assert math.isnan(same["resolvable"])
    # 2 criterion comparisons + 4 against the full set, adjusted together
    assert len(table) == 6
    assert table["p_holm"].to_numpy() == pytest.approx(holm(table["p_value"]))


# -- the command ----------------------------------------------------------------------


def test_report_of_a_synthetic_sweep(tmp_path):
    folder = write_sweep(tmp_path / "syn")
    out = tmp_path / "report"
    analysis.main([str(folder), "--out", str(out)])
    report = (out / "report.md").read_text()
    assert "complete; 9 of 9 trials reported (9 ok)" in report
    mean, sd = 32 / 3, np.std([9.0, 10.0, 13.0], ddof=1)
    half = T_975_DF2 * sd / 3**0.5
    assert f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}] n=3" in report
    assert "Primary metric: **FID** (`--metric fid`)" in report
    assert "Holm-adjusted within each family" in report
    for name in ("fid.csv", "diagnostics.csv", "comparisons.csv",
                 "fid_vs_n_train.png", "learning_curves.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    fid = pd.read_csv(out / "fid.csv")
    assert len(fid) == 6 and set(fid["seeds"]) == {3}


def _with_recon_and_kid(results: pd.DataFrame) -> pd.DataFrame:
    """The synthetic sweep with a recon row per trial (FID 1 + seed: far below every
    prior, as a ceiling is) and a KID column (FID / 1000 + 0.001 * seed on the recon
    rows too)."""
    recon = results[results["prior"] == "gmm"].assign(
        prior="recon", fid=lambda f: 1.0 + f["seed"])
    both = pd.concat([results, recon], ignore_index=True)
    return both.assign(kid=both["fid"] / 1000 + 0.001 * both["seed"])


def test_recon_is_kept_apart_as_the_decoders_ceiling(tmp_path):
    results = _with_recon_and_kid(synthetic_results())
    grid = synthetic_grid(priors=["gaussian", "gmm", "recon"])
    folder = write_sweep(tmp_path / "syn", grid=grid, results=results)
    for row in results.itertuples():  # every trial saved a sample grid per prior
        grid_png = folder / "samples" / row.trial_id / f"{row.prior}.png"
        grid_png.parent.mkdir(parents=True, exist_ok=True)
        grid_png.write_bytes(b"png")
    analysis.main([str(folder), "--out", str(tmp_path / "r")])
    report = (tmp_path / "r" / "report.md").read_text()
    tables_ = [t for t in report.split("\n\n") if t.startswith("| n_train")]
    main_fid = tables_[0]
    header = main_fid.splitlines()[0]
    assert "| gaussian | gmm |" in header and "| recon |" not in header
    assert "The decoder's ceiling (`recon`" in report
    # the best trial is generative: recon's FIDs (1-3) never count as best
    assert "gmm prior, FID 5)" in report and "recon prior" not in report
    compared = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    assert set(compared["family"]) == {"generative", "ceiling"}
    for _, family in compared.groupby("family"):  # Holm within each family
        assert family["p_holm"].to_numpy() == pytest.approx(holm(family["p_value"]))
    assert (compared.loc[compared["family"] == "ceiling", "prior"] == "recon").all()


def test_a_sweep_of_the_ceiling_alone_is_analysed(tmp_path):
    """The study's ceiling sweep (`priors: [recon]`, fidelity metrics measured): its
    report tabulates the ceiling and draws no fidelity-against-diversity figure, which
    is of generative priors only (it had one column per prior: none, and a crash)."""
    both = _with_recon_and_kid(synthetic_results())
    ceiling = both[both["prior"] == "recon"]
    ceiling = ceiling.assign(precision=0.1 + 0.01 * ceiling["seed"], recall=0.001,
                             density=0.05, coverage=0.002)  # fmt: skip
    grid = synthetic_grid(priors=["recon"])
    folder = write_sweep(tmp_path / "ceiling", grid=grid, results=ceiling)
    analysis.main([str(folder), "--metric", "kid", "--out", str(tmp_path / "r")])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "The decoder's ceiling (`recon`" in report
    assert "precision_recall.png" not in report
    assert not list((tmp_path / "r").glob("*_recall.png"))
    compared = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    assert set(compared["family"]) == {"ceiling"}
    # lowest_recon against random and against the full pool, on recon rows: KID is
    # (1 + seed) / 1000 + 0.001 seed on every side, so every difference is 0
    rows = compared[compared["criterion"] == "lowest_recon"]
    assert len(rows) == 2 and rows["difference"].to_numpy() == pytest.approx([0, 0])


def test_the_best_and_worst_trials_memorization_grids_are_shown(tmp_path):
    """Where the sweep measured memorization, the report copies the best and the
    worst trial's memorization grid (samples/<trial>/memorization_<prior>.png) beside
    their samples, with the trial's share of copies."""
    results = synthetic_results().assign(memorization=lambda f: f["seed"] / 100)
    folder = write_sweep(tmp_path / "syn", results=results)
    for row in results.itertuples():
        trial = folder / "samples" / row.trial_id
        trial.mkdir(parents=True, exist_ok=True)
        (trial / f"{row.prior}.png").write_bytes(b"samples")
        (trial / f"memorization_{row.prior}.png").write_bytes(
            f"copies {row.trial_id} {row.prior}".encode())  # fmt: skip
    out = tmp_path / "r"
    analysis.main([str(folder), "--out", str(out)])
    report = (out / "report.md").read_text()
    fids = results.set_index(["trial_id", "prior"])["fid"]
    for label, (trial, prior) in (("best", fids.idxmin()), ("worst", fids.idxmax())):
        copied = (out / f"memorization_{label}.png").read_bytes()
        assert copied == f"copies {trial} {prior}".encode()
        seed = int(results.loc[results["trial_id"] == trial, "seed"].iloc[0])
        assert f"(share of copies {seed / 100:.3g})" in report
        assert f"![memorization](memorization_{label}.png)" in report


def test_every_criterion_draws_in_a_colour_of_its_own():
    # the study's learning curves drew class_density and k_center in the same grey
    colours = [to_rgb(CRITERION_COLOURS.get(c, UNLISTED_COLOUR)) for c in CRITERIA]
    assert len(set(colours)) == len(CRITERIA)
    assert to_rgb(UNLISTED_COLOUR) not in colours


def test_precision_and_recall_tabulate_higher_is_better_and_draw(tmp_path):
    results = synthetic_results()
    # precision falls as FID rises: the best FID trial is the best precision trial
    results = results.assign(precision=1 - results["fid"] / 100,
                             recall=0.2 + 0.01 * results["seed"])
    folder = write_sweep(tmp_path / "syn", results=results)
    out = tmp_path / "r"
    analysis.main([str(folder), "--out", str(out), "--metric", "precision"])
    report = (out / "report.md").read_text()
    assert "## precision (mean [95% Student-t interval] over n seeds; higher" in report
    assert (tmp_path / "r" / "precision_recall.png").stat().st_size > 0
    # no density or coverage measured: no such figure
    assert "density_coverage.png" not in report
    assert not (out / "density_coverage.png").exists()
    # with them, density against coverage beside precision against recall
    both = write_sweep(tmp_path / "prdc", results=results.assign(
        density=results["precision"] / 2, coverage=results["recall"] / 2))
    analysis.main([str(both), "--out", str(tmp_path / "d")])
    report = (tmp_path / "d" / "report.md").read_text()
    assert "![density and coverage](density_coverage.png)" in report
    assert (tmp_path / "d" / "density_coverage.png").stat().st_size > 0
    compared = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    row = compared[(compared["criterion"] == "lowest_recon")
                   & (compared["prior"] == "gaussian")].iloc[0]  # fmt: skip
    # precision = 1 - FID / 100: differences of FID (-1, -2, -1) become +0.01 ...
    assert row["difference"] == pytest.approx(4 / 300)


def test_every_measured_metric_is_paired_beside_the_primary(tmp_path):
    """comparisons_by_metric.csv pairs every metric the sweep measured, each its own
    Holm family, in the metric's printed units; the report lays the other metrics
    beside each other. Here precision = 1 - FID / 100, KID = FID / 1000 (printed x
    1000: FID itself) and recall is the same on both sides of every pair."""
    results = synthetic_results()
    results = results.assign(precision=1 - results["fid"] / 100,
                             kid=results["fid"] / 1000,
                             recall=0.2 + 0.01 * results["seed"])
    folder = write_sweep(tmp_path / "syn", results=results)
    out = tmp_path / "r"
    analysis.main([str(folder), "--out", str(out)])
    table = pd.read_csv(out / "comparisons_by_metric.csv")
    assert set(table["metric"]) == {"fid", "kid", "precision", "recall"}
    by = {m: part.set_index(["label", "prior"]).sort_index()
          for m, part in table.groupby("metric")}  # fmt: skip
    # lowest_recon - random, gaussian: FID differences -1, -2, -1 over the seeds
    row = ("n=100 lowest_recon vs random", "gaussian")
    assert by["fid"].loc[row, "difference"] == pytest.approx(-4 / 3)
    assert by["kid"].loc[row, "difference"] == pytest.approx(-4 / 3)
    assert by["precision"].loc[row, "difference"] == pytest.approx(4 / 300)
    assert (by["recall"]["difference"] == 0).all()
    assert (by["recall"]["p_value"] == 1).all()
    # a t test does not see an affine change: the same p-values, and the same Holm
    # adjustment within each metric's own family (recall's all 1 would change it)
    for name in ("kid", "precision"):
        np.testing.assert_allclose(by[name]["p_holm"], by["fid"]["p_holm"])
    report = (out / "report.md").read_text()
    section = report.split("## Paired comparisons on the other metrics")[1]
    head = section.split("| comparison | prior |")[1].split("\n")[0]
    assert head.split("|")[:-1] == [" KID x 1000 ", " precision ", " recall "]
    assert "| n=100 lowest_recon vs random | gaussian | -1.3" in section


def test_a_table5_shaped_sweep_is_set_beside_the_studys_table5(tmp_path):
    """Half of the pool by random and lowest_recon, and the whole pool: the shape of
    the thesis's Table 5, whose rows come beside this sweep's means."""
    results = synthetic_results()
    results.loc[results["n_train"] == 100, "n_train"] = 200  # half of the 400 pool
    results["data_encoding"] = "jpeg"
    grid = synthetic_grid(grid={"n_train": [200, None],
                                "criterion": ["random", "lowest_recon"],
                                "seed": [0, 1, 2]})  # fmt: skip
    folder = write_sweep(tmp_path / "syn", grid=grid, results=results)
    analysis.main([str(folder), "--out", str(tmp_path / "r")])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## The study's Table 5 beside this sweep" in report
    assert "read a jpeg copy of CIFAR-10" in report and "scored 50 samples" in report
    # VAE-H: random, half, gaussian: the thesis's 117.867 beside our mean of 10, 12, 14
    assert "| VAE-H | random | half | gaussian | 118 | 12 | 3 |" in report
    assert "| VAE | all | all | gmm | 83 | 6 | 3 |" in report
    assert "VAE-MD" not in report  # no lowest_mahalanobis trials: no row


def test_sampling_error_sits_beside_the_seed_interval(tmp_path):
    results = synthetic_results()
    # each trial's bootstrap interval: FID +- (1 + seed) / 2, so widths 1, 2, 3
    results = results.assign(fid_ci_low=results["fid"] - (1 + results["seed"]) / 2,
                             fid_ci_high=results["fid"] + (1 + results["seed"]) / 2)
    counts = {"airplane": 30, "cat": 70}
    results["class_counts"] = json.dumps(counts)
    folder = write_sweep(tmp_path / "syn", results=results)
    analysis.main([str(folder), "--out", str(tmp_path / "r")])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Sampling error of one model (FID)" in report
    half = T_975_DF2 * np.std([9.0, 10.0, 13.0], ddof=1) / 3**0.5
    # lowest_recon at 100, gaussian: seed interval 2 x half, bootstrap median 2
    assert f"| 100 | lowest_recon | gaussian | {2 * half:.3g} | 2 | 3 |" in report
    makeup = pd.read_csv(tmp_path / "r" / "class_makeup.csv")
    assert makeup["airplane"].tolist() == [30.0] * 3 and (makeup["cat"] == 70).all()
    assert (tmp_path / "r" / "class_makeup.png").stat().st_size > 0


def test_metric_kid_pairs_and_tabulates_on_kid(tmp_path):
    results = _with_recon_and_kid(synthetic_results())
    grid = synthetic_grid(priors=["gaussian", "gmm", "recon"])
    folder = write_sweep(tmp_path / "syn", grid=grid, results=results)
    analysis.main([str(folder), "--out", str(tmp_path / "r"), "--metric", "kid"])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Primary metric: **KID x 1000** (`--metric kid`)" in report
    assert report.index("## KID x 1000") < report.index("## FID")
    compared = pd.read_csv(tmp_path / "r" / "comparisons.csv")
    # lowest_recon - random, gaussian: KID = FID / 1000 + 0.001 seed on both sides,
    # so the seed terms cancel: (-1, -2, -1) / 1000, in the report's KID x 1000
    row = compared[(compared["criterion"] == "lowest_recon")
                   & (compared["prior"] == "gaussian")].iloc[0]  # fmt: skip
    assert row["metric"] == "kid" and row["difference"] == pytest.approx(-4 / 3)
    half = T_975_DF2 * np.std([-1.0, -2.0, -1.0], ddof=1) / 3**0.5
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-4 / 3 - half,
                                                             -4 / 3 + half))
    kid = pd.read_csv(tmp_path / "r" / "kid.csv").set_index(
        ["n_train", "criterion", "prior"])
    assert kid.loc[(100, "lowest_recon", "gaussian"), "kid_mean"] == pytest.approx(
        (32 / 3 / 1000 + 0.001) * 1000)  # printed x 1000: mean seed term 0.001
    # a metric the sweep did not measure: one line before anything is written
    plain = write_sweep(tmp_path / "plain")
    result = run_command("experiments.analysis", str(plain), "--metric", "fid_inf",
                         "--out", str(tmp_path / "none"))  # fmt: skip
    assert_one_line_error(result, "--metric fid_inf: the sweeps did not measure it")
    assert not (tmp_path / "none").exists()


def test_a_sweep_with_missing_trials_is_reported_partial(tmp_path):
    results = synthetic_results()
    folder = write_sweep(tmp_path / "syn", results=results[results["seed"] < 2])
    analysis.main([str(folder), "--out", str(tmp_path / "r")])
    report = (tmp_path / "r" / "report.md").read_text()
    assert "PARTIAL; 6 of 9 trials reported" in report
    # the driver's facts (network, data encoding) are not in these tables: said so
    assert "network not recorded in the tables (a sweep rebuilt from" in report
    assert "unknown" not in report


@pytest.mark.parametrize("case, needle", [
    ("empty", "no grid.yaml, not a sweep folder"),
    ("no_tables", "no results.parquet and no Tune experiment state"),
    ("columns", "missing columns fid"),
    ("mixed", "cannot be compared with"),
    ("out_file", "exists and is not a folder"),
    ("level", "--level must be between 0 and 1"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, needle):
    good = write_sweep(tmp_path / "good")
    args = [str(good)]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args = [str(tmp_path / "empty")]
    if case == "no_tables":
        folder = tmp_path / "bare"
        folder.mkdir()
        (folder / "grid.yaml").write_text((good / "grid.yaml").read_text())
        args = [str(folder)]
    if case == "columns":
        args = [
            str(
                write_sweep(
                    tmp_path / "c", results=synthetic_results().drop(columns="fid")
                )
            )
        ]
    if case == "mixed":
        other = synthetic_grid("other", model={"latent_dim": 16})
        args += [str(write_sweep(tmp_path / "other", grid=other))]
    out = tmp_path / "out"
    if case == "out_file":
        out.write_text("a file")
    extra = ["--level", "1.5"] if case == "level" else []
    _assert_input_error(analysis.main, [*args, "--out", str(out), *extra], needle)
    assert case == "out_file" or not out.exists()


# -- the replay ---------------------------------------------------------------------


def _history(fids: dict[str, list[float]]) -> pd.DataFrame:
    """Trials run one after another (a, then b, then c), one result per epoch."""
    rows, clock = [], 0.0
    for trial, values in fids.items():
        for epoch, fid in enumerate(values, start=1):
            clock += 1.0
            rows.append({"trial_id": trial, "phase": "stage1", "epoch": epoch,
                         "fid_intermediate": fid, "finished_at": clock})  # fmt: skip
    return pd.DataFrame(rows)


def test_asha_replay_by_hand():
    # grace 1, eta 2, max_t 5: rungs at 1, 2, 4. a runs first and sets every rung;
    # b (0.8 at epoch 2) is worse than a's 0.7 there: stopped at 2; c (1.0 at epoch
    # 1) is worse than the median of {0.9, 0.8}: stopped at 1
    grid = synthetic_grid(scheduler={"name": "asha", "grace_period": 1,
                                     "reduction_factor": 2})  # fmt: skip
    history = _history({"a": [0.9, 0.7, 0.6, 0.5], "b": [0.8, 0.8, 0.9, 0.9],
                        "c": [1.0, 0.95, 0.9, 0.9]})  # fmt: skip
    outcome = replay(grid, history)
    assert outcome.stopped_at == {"b": 2, "c": 1}
    # grace 4: one rung, at 4. b's 0.9 is worse than a's 0.5; c's 0.9 worse than the
    # median of {0.5, 0.9} (0.7): both stopped at their last epoch
    loose = replay(grid, history, grace_period=4, reduction_factor=2)
    assert loose.stopped_at == {"b": 4, "c": 4}
    assert loose.heard == {"a": 4, "b": 4, "c": 4}


def test_asha_replay_at_equal_steps():
    """Under a step budget the replay compares trials at equal steps: the same trials
    and values as above, one round of 3 steps per result, and a grace of 3 steps
    (one round), eta 2: rungs at steps 3, 6 and 12 (max_t 13). The decisions are the
    epoch replay's, told in steps; the epochs (rounds) are not what ASHA compares."""
    grid = synthetic_grid(stage1={"steps": 12, "round_steps": 3},
                          eval={"every": 3, "samples": 10},
                          scheduler={"name": "asha", "grace_period": 3,
                                     "reduction_factor": 2})  # fmt: skip
    history = _history({"a": [0.9, 0.7, 0.6, 0.5], "b": [0.8, 0.8, 0.9, 0.9],
                        "c": [1.0, 0.95, 0.9, 0.9]})  # fmt: skip
    history["step"] = 3 * history["epoch"]
    outcome = replay(grid, history)
    assert outcome.stopped_at == {"b": 6, "c": 3}
    assert outcome.heard == {"a": 12, "b": 6, "c": 3}


def test_median_replay_by_hand():
    # Ray's rule: from the grace period on, stop a trial whose best FID so far is worse
    # than the median, over the other trials that reached epoch t, of their mean FID
    # over epochs grace..t; with fewer than min_samples_required others, pause it if
    # some trial is pending or paused. Grace 2, one sample, one slot, order a, b, d, c:
    # a at 2: no other trial yet, b, d, c pending: paused.
    # b at 2: a's mean over [2, 2] is 0.7 < b's best 0.8: stopped at 2.
    # d at 2: median of a (0.7), b (0.8) is 0.75 > d's best 0.65: continues; at 3 no
    #   other trial reached 3 and c is pending: paused.
    # c at 2: median of a 0.7, b 0.8, d 0.65 is 0.7 < c's best 0.95: stopped at 2.
    # a resumes: at 3, d's mean over [2, 3] is 0.625 > a's best 0.6: continues; at 4,
    #   nobody else reached 4 and d is paused: paused again, resumed at once (first
    #   paused), and finishes. d resumes: at 4, a's mean over [2, 4] (its final report
    #   counted twice more, as Tune hands it over) is 0.56 > 0.55: d finishes.
    grid = synthetic_grid(scheduler={"name": "median", "grace_period": 2,
                                     "min_samples_required": 1})  # fmt: skip
    history = _history({"a": [0.9, 0.7, 0.6, 0.5], "b": [0.8, 0.8, 0.9, 0.9],
                        "d": [0.95, 0.65, 0.6, 0.55],
                        "c": [1.0, 0.95, 0.9, 0.9]})  # fmt: skip
    outcome = replay(grid, history)
    assert outcome.stopped_at == {"b": 2, "c": 2}
    assert outcome.paused == {"a": 2, "d": 1}
    assert outcome.heard == {"a": 4, "b": 2, "c": 2, "d": 4}


def test_early_stopping_report_on_synthetic_runs(tmp_path):
    exhaustive = write_sweep(tmp_path / "none")
    grid = synthetic_grid("asha", scheduler={"name": "asha", "grace_period": 1,
                                             "reduction_factor": 2})  # fmt: skip
    results = synthetic_results({"all400s0": "stopped", "low100s2": "stopped"})
    results.loc[results["status"] == "stopped", "epochs_run"] = 2
    live = write_sweep(tmp_path / "asha", grid=grid, results=results)
    out = tmp_path / "es"
    early_stopping.main(
        [
            str(exhaustive),
            str(live),
            "--replay",
            "--out",
            str(out),
            "--top-k",
            "2",
            "--grace",
            "1",
            "--reduction",
            "2",
        ]
    )
    table = pd.read_csv(out / "early_stopping.csv").set_index("run")
    asha = table.loc["asha: asha, grace 1, eta 2"]
    # the live run stopped the best trial (gaussian FID 6.0, all seed 0): its best is
    # 7.0 (all seed 1), a regret of 1.0; its top 2 {7.0, 8.0} share one of the
    # exhaustive top 2 {6.0, 7.0}; on the 7 trials both finished the order agrees
    assert asha["finished"] == 7 and asha["stopped"] == 2
    assert asha["best"] == 7.0 and asha["regret"] == 1.0
    assert asha["top_k_overlap"] == 0.5
    assert asha["kendall_tau"] == pytest.approx(1.0)
    # 9 trials x 60 s of one CPU share (the trials' own wall time)
    assert asha["hours"] == pytest.approx(9 * 60 / 3600)
    exhaustive_row = table.loc["syn: none (exhaustive)"]
    assert exhaustive_row["regret"] == 0 and exhaustive_row["top_k_overlap"] == 1.0
    assert (out / "early_stopping.png").stat().st_size > 0
    check = pd.read_csv(out / "replay_check.csv")
    assert len(check) == 9
    report = (out / "early_stopping.md").read_text()
    assert "Replay against the live runs" in report
    assert "the exhaustive top 2" in report


@pytest.mark.parametrize("case", ["through", "in stage 1", "in stage 2",
                                  "after stage 2"])  # fmt: skip
def test_round_seconds_leave_a_resumes_downtime_out(case):
    """A trial from t = 90: 4 stage-1 rounds of 20 s, 3 stage-2 rounds of 10 s, then
    70 s of scores: 180 s of run time (Tune's time_total_s), so its recorded start is
    its end less 180 s. Stopped for 1,000 s somewhere and resumed, every clock after
    the stop moves by 1,000; each case must read as the trial run through."""
    one = np.array([110.0, 130.0, 150.0, 170.0])
    two = np.array([180.0, 190.0, 200.0])
    end = 270.0
    if case == "in stage 1":  # after round 2
        one[2:] += 1000
        two += 1000
        end += 1000
    elif case == "in stage 2":  # after its round 1
        two[1:] += 1000
        end += 1000
    elif case == "after stage 2":  # while scoring: no round shows it
        end += 1000
    steps, final, first = round_seconds(one, two, end - 180.0, end)
    assert steps.tolist() == [20.0, 20.0, 20.0, 20.0]
    assert (final, first) == (100.0, 90.0)


def test_round_seconds_find_a_stage2_stop_after_a_long_set_up():
    # from t = 0 a first round of 300 s (set-up), 20 s rounds, 10 s stage-2 rounds
    # with a 300 s stop after the first, 100 s of scores: 470 s of run time, ending
    # at 770, so recorded from 300; the first round reads 0 s, and only the stage-2
    # gap says that 300 s went there, not one median round. The final phase: 30 +
    # 100 s
    one = np.array([300.0, 320.0, 340.0])
    two = np.array([350.0, 660.0, 670.0])
    steps, final, first = round_seconds(one, two, 300.0, 770.0)
    assert steps.tolist() == [300.0, 20.0, 20.0] and (final, first) == (130.0, 0.0)


def test_round_seconds_keep_an_ordinary_trials_own_clocks():
    # a long first round (set-up) and an uneven one, no resume: the clocks' own
    # differences, whatever the median
    steps, final, first = round_seconds(np.array([300.0, 320.0, 345.0, 360.0]),
                                        np.array([]), 0.0, 400.0)  # fmt: skip
    assert steps.tolist() == [300.0, 20.0, 25.0, 15.0] and (final, first) == (40, 0)


def test_round_seconds_leave_a_round_slowed_by_a_busy_machine():
    # the study's rounds of about 20 s took 66 s while a test run shared its cores:
    # no stop, so the clocks stand as they are
    steps, final, first = round_seconds(np.array([20.0, 40.0, 106.0, 126.0]),
                                        np.array([]), 0.0, 200.0)  # fmt: skip
    assert steps.tolist() == [20.0, 20.0, 66.0, 20.0] and (final, first) == (74, 0)


def test_round_seconds_find_a_downtime_shorter_than_the_gap_rule():
    # 100 s rounds from t = 0, a 150 s stop before round 3 (2.5 times the median,
    # under RESUME_GAP), 100 s of scores: run time 500 s, recorded start 650 - 500;
    # the first round reads -50 s: it takes the median, and the 150 s come out of
    # the round that holds the downtime
    steps, final, first = round_seconds(np.array([100.0, 200.0, 450.0, 550.0]),
                                        np.array([]), 150.0, 650.0)  # fmt: skip
    assert steps.tolist() == [100.0, 100.0, 100.0, 100.0]
    assert (final, first) == (100.0, 0.0)


def test_a_resumed_exhaustive_run_costs_what_it_ran(tmp_path):
    """The replay's compute of a sweep stopped and resumed (`--resume`) is that of the
    same sweep run through: a resume's downtime is no compute. Before, a stopped
    trial's cost was its stop's clock less its recorded start, which a resume moves
    late by the downtime: the study's replay read negative hours."""
    results = synthetic_results()
    history = synthetic_history(results)
    # the same run stopped for 1,000 s after every trial's second epoch: the later
    # clocks, the end and the recorded start (end less the run time) move by 1,000
    late = pd.Timedelta(seconds=1000)
    resumed_results = results.assign(started_at=results["started_at"] + late,
                                     finished_at=results["finished_at"] + late)
    resumed_history = history.assign(finished_at=np.where(
        history["epoch"] > 2, history["finished_at"] + 1000, history["finished_at"]))
    tables = {}
    runs = {"through": (results, history),
            "resumed": (resumed_results, resumed_history)}
    for name, (table, curves) in runs.items():
        folder = write_sweep(tmp_path / name, results=table, history=curves)
        out = tmp_path / f"es_{name}"
        early_stopping.main([str(folder), "--replay", "--grace", "1,2",
                             "--reduction", "2,3", "--out", str(out)])
        tables[name] = pd.read_csv(out / "early_stopping.csv").set_index("run")
    through, resumed = tables["through"], tables["resumed"]
    assert (through["stopped"] > 0).sum() >= 2  # the settings stop trials
    pd.testing.assert_series_equal(resumed["stopped"], through["stopped"])
    pd.testing.assert_series_equal(resumed["hours"], through["hours"])
    # by hand: a trial runs 10 s per epoch and 20 s after its last (60 s of one CPU),
    # so one stopped at epoch e cost 10 e s
    stops = early_stopping.replay_exhaustive(
        load_sweep(tmp_path / "resumed"), name="asha", grace_period=1,
        reduction_factor=2).stopped_at
    assert stops
    seconds = 60 * (9 - len(stops)) + sum(10 * e for e in stops.values())
    assert through.loc["replay: asha, grace 1, eta 2", "hours"] == pytest.approx(
        seconds / 3600)


def test_early_stopping_ranks_on_the_metric_asked_for(tmp_path):
    """--metric kid ranks the trials by their final KID x 1000, as the analysis
    prints it. Here KID x 1000 = 20 - FID, the reverse of FID's order: gaussian
    random 10, 8, 6; lowest_recon 11, 10, 7; all 14, 13, 12 over seeds 0-2."""
    kid = synthetic_results().eval("kid = (20 - fid) / 1000")
    exhaustive = write_sweep(tmp_path / "none", results=kid)
    grid = synthetic_grid("asha", scheduler={"name": "asha", "grace_period": 1,
                                             "reduction_factor": 2})  # fmt: skip
    stopped = synthetic_results({"all400s0": "stopped", "low100s2": "stopped"})
    live = write_sweep(tmp_path / "asha", grid=grid,
                       results=stopped.eval("kid = (20 - fid) / 1000"))
    out = tmp_path / "es"
    early_stopping.main([str(exhaustive), str(live), "--metric", "kid", "--top-k", "2",
                         "--out", str(out)])  # fmt: skip
    table = pd.read_csv(out / "early_stopping.csv").set_index("run")
    # the live run lost lowest_recon s2 (7) and all s0 (14): its best is still
    # random s2's 6 (regret 0; by FID it was 7, regret 1); its top 2 {6, 8} hold one
    # of the exhaustive {6, 7}
    asha = table.loc["asha: asha, grace 1, eta 2"]
    assert asha["best"] == pytest.approx(6.0) and asha["regret"] == pytest.approx(0)
    assert asha["top_k_overlap"] == 0.5
    report = (out / "early_stopping.md").read_text()
    assert "ranked by their final KID x 1000 with the `gaussian` prior" in report


def test_the_report_names_the_cheapest_setting_that_keeps_the_answer():
    rows = [("syn: none (exhaustive)", "live", 10.0, 1.0, 0.0, 0),
            ("replay: asha, grace 2, eta 3", "replay", 2.0, 0.5, 1.0, 6),
            ("replay: asha, grace 4, eta 2", "replay", 6.0, 1.0, 0.0, 2),
            ("replay: asha, grace 4, eta 3", "replay", 4.0, 1.0, 0.0, 3)]
    table = pd.DataFrame(rows, columns=["run", "kind", "hours", "top_k_overlap",
                                        "regret", "stopped"]).assign(trials=9)
    line = early_stopping.keeping_line(table, top_k=3)
    # grace 2 is cheaper but loses the best trial; of the two that keep it, 4 h
    assert line == ("Settings that keep the exhaustive top 3 and its best trial: "
                    "2 of 3 replayed; the cheapest, `asha, grace 4, eta 3`, spends "
                    "4 hours (40% of the exhaustive run's) and stops 3 of 9 trials.")
    lost = table.assign(top_k_overlap=0.5)
    assert early_stopping.keeping_line(lost, 3).startswith(
        "No replayed setting keeps the exhaustive top 3")
    assert early_stopping.keeping_line(table[table["kind"] == "live"], 3) == ""


@pytest.mark.parametrize("case, needle", [
    ("no_exhaustive", "needs exactly one exhaustive run (scheduler none)"),
    ("prior", "--prior vamp: not among the grid's priors"),
    ("top_k", "--top-k must be at least 1"),
    ("no_fid", "--replay needs a history with an intermediate FID"),
    ("metric", "--metric kid: the exhaustive run has no kid for the gaussian prior "
               "(its grid's fid.metrics: fid)"),
    ("metric_gmm_only", "--metric kid: the exhaustive run has no kid for the "
                        "gaussian prior"),
    ("metric_live", "--metric kid: {live} has no kid for the gaussian prior"),
])  # fmt: skip
def test_early_stopping_bad_input_is_one_line(tmp_path, case, needle):
    grid = synthetic_grid("asha", scheduler={"name": "asha", "grace_period": 1})
    history = None
    if case == "no_fid":
        history = synthetic_history(synthetic_results()).drop(
            columns="fid_intermediate"
        )
    results = synthetic_results()
    kid = results.assign(kid=results["fid"] / 1000)
    with_kid = {"metric_live": kid,
                "metric_gmm_only": kid.assign(kid=kid["kid"].where(
                    kid["prior"] == "gmm"))}.get(case)  # fmt: skip
    exhaustive = write_sweep(tmp_path / "none", history=history, results=with_kid)
    live = write_sweep(tmp_path / "asha", grid=grid)
    args = [str(live)] if case == "no_exhaustive" else [str(exhaustive), str(live)]
    args += {"prior": ["--prior", "vamp"], "top_k": ["--top-k", "0"],
             "no_fid": ["--replay"]}.get(case, [])  # fmt: skip
    if case.startswith("metric"):
        args += ["--metric", "kid"]
    needle = needle.format(live=live)
    out = tmp_path / "out"
    _assert_input_error(early_stopping.main, [*args, "--out", str(out)], needle)
    assert not out.exists()


def _assert_input_error(main, argv, needle):
    """In process: the command stops with an InputError, whose message is the
    whole one-line report run_cli prints (with exit code 2, tested below)."""
    with pytest.raises(InputError) as raised:
        main(argv)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_the_commands_exit_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for module in ("experiments.analysis", "experiments.early_stopping"):
        result = run_command(module, str(tmp_path / "empty"))
        assert_one_line_error(result, "no grid.yaml, not a sweep folder")


def test_report_of_an_e1_sweep(tmp_path):
    # E1 as a sweep kind: a row per (size, repetition); mean and ddof-1 variance
    grid = GridConfig.model_validate(
        {
            "name": "e1",
            "kind": "fid_repeated",
            "e1": {"sizes": [10, 20], "repetitions": 3},
        }
    )
    rows = [{"trial_id": f"t{size}", "size": size, "seed": 0, "repetition": r,
             "fid": fid, "fid_samples": 10000, "status": "ok"}
            for size, fids in ((10, [30.0, 32.0, 34.0]), (20, [20.0, 20.0, 23.0]))
            for r, fid in enumerate(fids)]  # fmt: skip
    folder = write_sweep(tmp_path / "e1", grid=grid, results=pd.DataFrame(rows),
                         history=pd.DataFrame())  # fmt: skip
    analysis.main([str(folder), "--out", str(tmp_path / "r")])
    table = pd.read_csv(tmp_path / "r" / "e1.csv").set_index("size")
    assert (
        table.loc[10, "fid_mean"] == 32.0 and table.loc[10, "fid_variance_ddof1"] == 4
    )
    assert (
        table.loc[20, "fid_mean"] == 21.0 and table.loc[20, "fid_variance_ddof1"] == 3
    )
    assert (tmp_path / "r" / "e1.png").stat().st_size > 0
    assert "E1: FID vs diversity" in (tmp_path / "r" / "report.md").read_text()


def test_concurrency_allows_for_whole_second_clocks_only_where_they_are():
    from types import SimpleNamespace

    from experiments.early_stopping import _concurrency

    def at(seconds):
        return pd.Timestamp(1_000_000 + seconds, unit="s", tz="UTC")

    # b starts half a second before a's (rounded) end: one after the other
    serial = pd.DataFrame({"started_at": [at(0), at(9.5)],
                           "finished_at": [at(10), at(20)]})  # fmt: skip
    assert _concurrency(SimpleNamespace(trials=serial)) == 1
    # c runs well inside a: two at once
    overlapping = pd.DataFrame({"started_at": [at(0), at(9.5), at(3)],
                                "finished_at": [at(10), at(20), at(8)]})  # fmt: skip
    assert _concurrency(SimpleNamespace(trials=overlapping)) == 2
    # the trials' own clocks (not whole seconds): b did start before a ended
    precise = pd.DataFrame({"started_at": [at(0), at(9.5)],
                            "finished_at": [at(10.25), at(20.25)]})  # fmt: skip
    assert _concurrency(SimpleNamespace(trials=precise)) == 2


def test_a_gpu_sweeps_hours_come_from_its_accounting_even_after_a_stopped_run(
    tmp_path,
):
    """GPU-hours: timings.json's total; null there (its last run stopped), the
    total its tables recorded; no accounting, the trials' reserved time."""
    import json
    from types import SimpleNamespace

    from experiments.early_stopping import _hours
    from sweep.config import GridConfig

    grid = GridConfig.model_validate({"name": "t", "resources": {"gpu": 0.5}})
    sweep = SimpleNamespace(folder=tmp_path, grid=grid)
    trials = pd.DataFrame({"wall_seconds": [3600.0, 7200.0],
                           "sweep_gpu_seconds": [9000.0, 9000.0]})  # fmt: skip
    assert _hours(sweep, trials) == pytest.approx(1.5)  # (1 + 2) h x 0.5
    (tmp_path / "timings.json").write_text(json.dumps({"gpu_hours": 4.0}))
    assert _hours(sweep, trials) == 4.0
    (tmp_path / "timings.json").write_text(json.dumps({"gpu_hours": None}))
    assert _hours(sweep, trials) == pytest.approx(2.5)  # 9,000 s


def test_a_replay_of_a_partial_run_counts_its_unfinished_trials_apart(tmp_path):
    """A sweep read while it runs (or stopped): a trial without its end is not
    finished in a replay that does not stop it, as in the run's own row. Before,
    every trial the replay left alone counted as finished."""
    results = synthetic_results({"all400s0": "unfinished"})
    history = synthetic_history(results)
    history = history[(history["trial_id"] != "all400s0") | (history["epoch"] <= 2)]
    folder = write_sweep(tmp_path / "partial", results=results, history=history)
    out = tmp_path / "es"
    early_stopping.main([str(folder), "--replay", "--grace", "2", "--reduction", "2",
                         "--out", str(out)])  # fmt: skip
    table = pd.read_csv(out / "early_stopping.csv").set_index("run")
    row = table.loc["syn: none (exhaustive)"]
    assert (row["trials"], row["finished"], row["stopped"]) == (9, 8, 0)
    stops = early_stopping.replay_exhaustive(
        load_sweep(folder), name="asha", grace_period=2, reduction_factor=2
    ).stopped_at
    assert "all400s0" not in stops  # at epoch 2 it is the best of its rung
    ok = set(results.loc[results["status"] == "ok", "trial_id"])
    row = table.loc["replay: asha, grace 2, eta 2"]
    assert (row["trials"], row["finished"], row["stopped"]) == (
        9, len(ok - set(stops)), len(stops))  # fmt: skip


@pytest.mark.parametrize("command", ["analysis", "early_stopping"])
def test_out_never_replaces_a_sweep_or_a_folder_of_other_files(tmp_path, command):
    """The report folder is replaced whole: --out set to the sweep itself, to the
    storage above it, or to a folder of other files would have deleted them."""
    main = {"analysis": analysis.main, "early_stopping": early_stopping.main}[command]
    folder = write_sweep(tmp_path / "storage" / "syn")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    for out, needle in [(folder, "would replace"), (folder.parent, "would replace"),
                        (notes, "a folder holding other files")]:  # fmt: skip
        with pytest.raises(InputError, match=needle):
            main([str(folder), "--out", str(out)])
    assert sorted(p.name for p in folder.iterdir()) == [
        "grid.yaml", "history.parquet", "results.parquet"]  # fmt: skip
    assert (notes / "todo.txt").read_text() == "mine"
    main([str(folder), "--out", str(tmp_path / "report")])
    main([str(folder), "--out", str(tmp_path / "report")])  # its own: replaced
