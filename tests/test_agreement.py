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


def _report(folder, rows) -> str:
    folder.mkdir()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / agreement.TABLE, index=False)
    return str(folder)


VS = "criterion vs random"
A_ROWS = [
    (VS, "n=50 x vs random", "gaussian", "kid", 5, -12.0, -20.0, -4.0, 0.01),
    (VS, "n=50 x vs random", "gaussian", "precision", 5, 0.02, 0.01, 0.03, 0.02),
    (VS, "n=50 x vs random", "gmm", "kid", 5, 3.0, -5.0, 11.0, 1.0),
    (VS, "n=50 y vs random", "gaussian", "kid", 5, 7.0, 1.0, 13.0, 0.04),
]
B_ROWS = [  # x's KID holds, its precision loses its direction, y's KID turns over
    (VS, "n=50 x vs random", "gaussian", "kid", 5, -9.0, -15.0, -3.0, 0.02),
    (VS, "n=50 x vs random", "gaussian", "precision", 5, 0.01, -0.01, 0.03, 0.5),
    (VS, "n=50 x vs random", "gmm", "kid", 5, -1.0, -6.0, 4.0, 1.0),
    (VS, "n=50 y vs random", "gaussian", "kid", 5, -6.0, -10.0, -2.0, 0.03),
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
                                       "n=50 y vs random", "n=50 x vs random"]
    assert table["metric"].tolist() == ["kid", "kid", "kid", "precision"]
    assert table["direction_a"].tolist() == ["-", "0", "+", "+"]
    assert table["direction_b"].tolist() == ["-", "0", "-", "0"]
    assert table["agree"].tolist() == [True, True, False, False]
    report = (out / "agreement.md").read_text()
    # resolved in A: x gaussian KID (holds), y KID (turns), x precision (lost)
    assert ("4 comparisons in both; the directions agree in 2. Of the 3 that 4k "
            "resolves (an interval excluding 0), 1 hold in 8k.") in report
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
    assert len(table) == len(compared) and table["agree"].all()
    assert set(table["metric"]) == {"fid", "precision"}


@pytest.mark.parametrize("argv, needle", [
    (["{a}", "{missing}"], "no comparisons_by_metric.csv (an experiments.analysis"),
    (["{a}", "{b}", "--labels", "one"], "--labels 'one': two different names"),
    (["{a}", "{b}", "--labels", "x,x"], "--labels 'x,x': two different names"),
    (["{a}", "{b}", "--metrics", "kid,coverage"],
     "--metrics: coverage not paired in both reports (both have kid, precision)"),
])  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, argv, needle):
    folders = {"a": _report(tmp_path / "a", A_ROWS),
               "b": _report(tmp_path / "b", B_ROWS), "missing": str(tmp_path)}
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
