"""experiments.agreement: two analysis reports' paired comparisons side by side, on
hand-written tables and on a real report of a synthetic sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments import agreement, analysis
from tests.helpers.commands import assert_one_line_error, run_command
from tests.test_analysis import synthetic_results, write_sweep
from vae_sweep.errors import InputError

COLUMNS = ["comparison", "label", "prior", "metric", "pairs", "difference", "ci_low",
           "ci_high", "p_holm"]  # fmt: skip
NAN = float("nan")


def _report(folder, rows, level=0.95, test="t") -> str:
    folder.mkdir()
    table = pd.DataFrame(rows, columns=COLUMNS).assign(level=level, test=test)
    table.to_csv(folder / agreement.TABLE, index=False)
    return str(folder)


VS = "criterion vs random"
A_ROWS = [
    (VS, "n=50 x vs random", "gaussian", "kid", 5, -12.0, -20.0, -4.0, 0.01),
    (VS, "n=50 x vs random", "gaussian", "precision", 5, 0.02, 0.01, 0.03, 0.02),
    (VS, "n=50 x vs random", "gmm", "kid", 5, 3.0, -5.0, 11.0, 1.0),
    (VS, "n=50 y vs random", "gaussian", "kid", 5, 7.0, 1.0, 13.0, 0.04),
    (VS, "n=50 w vs random", "gaussian", "kid", 1, 4.0, NAN, NAN, NAN),  # one pair
    (VS, "n=50 v vs random", "gaussian", "kid", 2, 2.0, 2.0, 2.0, 0.5),  # no spread
]
B_ROWS = [  # x's KID holds, its precision loses its direction, y's KID turns over
    (VS, "n=50 x vs random", "gaussian", "kid", 5, -9.0, -15.0, -3.0, 0.02),
    (VS, "n=50 x vs random", "gaussian", "precision", 5, 0.01, -0.01, 0.03, 0.5),
    (VS, "n=50 x vs random", "gmm", "kid", 5, -1.0, -6.0, 4.0, 1.0),
    (VS, "n=50 y vs random", "gaussian", "kid", 5, -6.0, -10.0, -2.0, 0.03),
    (VS, "n=50 w vs random", "gaussian", "kid", 5, 4.0, 1.0, 7.0, 0.01),
    (VS, "n=50 v vs random", "gaussian", "kid", 5, 3.0, 1.0, 5.0, 0.01),
    (VS, "n=50 z vs random", "gaussian", "kid", 5, 1.0, -1.0, 3.0, 1.0),  # B only
]


def test_directions_side_by_side_by_hand(tmp_path):
    a = _report(tmp_path / "a", A_ROWS)
    b = _report(tmp_path / "b", B_ROWS)
    out = tmp_path / "out"
    agreement.main([a, b, "--labels", "4k,8k", "--out", str(out)])
    table = pd.read_csv(out / "agreement.csv")
    # KID rows first (the analysis's metric order), A's order within; z is B's only
    assert table["label"].tolist() == ["n=50 x vs random", "n=50 x vs random",
                                       "n=50 y vs random", "n=50 w vs random",
                                       "n=50 v vs random", "n=50 x vs random"]
    assert table["metric"].tolist() == ["kid"] * 5 + ["precision"]
    # w: one pair in A, no interval; v: no spread in A, an interval of no width
    assert table["direction_a"].tolist() == ["-", "0", "+", "–", "0", "+"]
    assert table["direction_b"].tolist() == ["-", "0", "-", "+", "+", "0"]
    agree = table["agree"].tolist()
    assert pd.isna(agree.pop(3))  # w: nothing to agree on
    assert agree == [True, True, False, False, False]
    report = (out / "agreement.md").read_text()
    # with an interval on both sides: all but w; resolved in A: x gaussian KID
    # (holds), y KID (turns), x precision (lost); below 0.05 after Holm in A: x
    # gaussian KID (0.02 in B too), x precision (0.5 in B), y (turns)
    assert ("6 comparisons in both, 5 with an interval on both sides (two pairs or "
            "more); their directions agree in 2. Of the 3 that 4k resolves (its "
            "unadjusted interval excludes 0), 1 hold in 8k; of the 3 that stay below "
            "0.05 after Holm's adjustment in 4k, 1 do in 8k too.") in report
    row = "| KID x 1000 | n=50 x vs random | gaussian | -12.00 [-20.00, -4.00] | "
    assert row in report
    agreement.main([a, b, "--metrics", "precision", "--out", str(out)])
    assert pd.read_csv(out / "agreement.csv")["metric"].eq("precision").all()


def test_a_real_report_agrees_with_itself(tmp_path):
    results = synthetic_results()
    folder = write_sweep(tmp_path / "syn", results=results.assign(
        precision=1 - results["fid"] / 100))
    report = tmp_path / "r"
    analysis.main([str(folder), "--out", str(report)])
    out = tmp_path / "same"
    agreement.main([str(report), str(report), "--out", str(out)])
    table = pd.read_csv(out / "agreement.csv")
    compared = pd.read_csv(report / "comparisons_by_metric.csv")
    assert len(table) == len(compared)
    assert set(table["metric"]) == {"fid", "precision"}
    # the analysis's own rows: 3 pairs each here, so every one has an interval, and
    # its direction is the sign of an interval that excludes 0
    assert (table["pairs_a"] == 3).all() and table["agree"].eq(True).all()
    for row in table.itertuples():
        expected = ("-" if row.ci_high_a < 0 else "+" if row.ci_low_a > 0
                    else "0")  # fmt: skip
        if row.ci_high_a - row.ci_low_a == 0:
            expected = "0"
        assert row.direction_a == expected


@pytest.mark.parametrize("argv, needle", [
    (["{a}", "{missing}"], "no comparisons_by_metric.csv (an experiments.analysis"),
    (["{a}", "{b}", "--labels", "one"], "--labels 'one': two different names"),
    (["{a}", "{b}", "--labels", "x,x"], "--labels 'x,x': two different names"),
    (["{a}", "{b}", "--metrics", "kid,coverage"],
     "--metrics: coverage not paired in both reports (both have kid, precision)"),
    (["{a}", "{b}", "--labels", "prior,B"], "--labels 'prior,B': 'prior' is a column"),
    (["{a}", "{b}", "--labels", "a|b,c"], "'a|b' is a column name of the table or "
                                           "holds '|'"),
    (["{a}", "{level}"], "the reports differ in their level ({a}: 0.95; {level}: "
                         "0.9): run experiments.analysis on both alike"),
    (["{a}", "{test}"], "the reports differ in their test"),
    (["{a}", "{empty}"], "comparisons_by_metric.csv: not a table (No columns"),
    (["{a}", "{old}"], "missing columns level, test (written by an older"),
])  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, argv, needle):
    folders = {"a": _report(tmp_path / "a", A_ROWS),
               "b": _report(tmp_path / "b", B_ROWS), "missing": str(tmp_path),
               "level": _report(tmp_path / "level", B_ROWS, level=0.9),
               "test": _report(tmp_path / "test", B_ROWS, test="permutation"),
               "empty": str(tmp_path / "empty"), "old": str(tmp_path / "old")}
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / agreement.TABLE).write_text("")
    (tmp_path / "old").mkdir()
    pd.DataFrame(A_ROWS, columns=COLUMNS).to_csv(tmp_path / "old" / agreement.TABLE)
    needle = needle.format(**folders)
    out = tmp_path / "out"
    with pytest.raises(InputError) as raised:
        agreement.main([arg.format(**folders) for arg in argv] + ["--out", str(out)])
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    assert not out.exists()


def test_the_command_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_command("experiments.agreement", str(tmp_path / "empty"),
                         str(tmp_path / "empty"))  # fmt: skip
    assert_one_line_error(result, "no comparisons_by_metric.csv")
