"""Does an answer hold at another budget? Two analysis reports' paired comparisons,
side by side.

    python -m experiments.agreement REPORT_A REPORT_B [--labels A,B]
        [--metrics kid,precision,...] [--out DIR]

REPORT_A and REPORT_B are `experiments.analysis` output folders (each with its
`comparisons_by_metric.csv`), for instance the same arms trained at 4,000 and at
8,000 stage-1 steps. For every comparison both hold (the same label, e.g. `n=5000
class_density vs random`, prior and metric) it sets the two differences with their
intervals side by side and reads each interval's direction: `-` (wholly below 0),
`+` (wholly above), `0` (it holds 0, or has no width: no spread, nothing resolved)
or `–` (no interval: fewer than two pairs); `agree` where both have an interval and
the two directions are the same. The intervals are each report's own, unadjusted;
the summary also counts what holds after Holm's adjustment (`p_holm`). Whether `-`
is better depends on the metric (lower FID and KID, higher precision, recall,
density, coverage). The two reports must have used the same level and test.

Writes `agreement.md` and `agreement.csv` into `--out` (default:
`<REPORT_A>/agreement`), whole or not at all,
replacing an earlier report: an existing `--out` must be empty or hold
`agreement.md`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.analysis import _markdown
from experiments.significance import no_spread
from experiments.tables import METRICS, interval_text
from vae_sweep.checks import report_folder, two_labels
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import replaced_dir

TABLE = "comparisons_by_metric.csv"
JOIN = ["comparison", "label", "prior", "metric"]
COLUMNS = [*JOIN, "pairs", "difference", "ci_low", "ci_high", "p_holm", "level",
           "test"]  # fmt: skip
SHOWN = ("metric", "comparison", "prior", "directions", "agree")  # the table's own


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.agreement", __doc__)
    parser.add_argument("reports", type=text, nargs=2, metavar="REPORT",
                        help="two experiments.analysis output folders")  # fmt: skip
    parser.add_argument("--labels", type=text, default="A,B",
                        help="what tells the two apart, comma-separated")  # fmt: skip
    parser.add_argument("--metrics", type=text, default=None,
                        help="metrics to set side by side (default: every one both "
                        "reports paired on)")  # fmt: skip
    parser.add_argument("--out", type=text, default=None,
                        help="the folder written (default: <REPORT_A>/agreement)")
    return parser


def direction(low: float, high: float) -> str:
    """`-` or `+` where the interval excludes 0 on that side, `0` where it holds 0
    or has no width (differences with no spread: nothing resolved), `–` where there
    is none (fewer than two pairs)."""
    if pd.isna(low) or pd.isna(high):
        return "–"
    if no_spread([low, high]):
        return "0"
    if high < 0:
        return "-"
    if low > 0:
        return "+"
    return "0"


def _cell(difference: float, low: float, high: float) -> str:
    if pd.isna(low) or pd.isna(high):
        return "–" if pd.isna(difference) else f"{difference:.3g} (no interval)"
    return interval_text(difference, low, high)


def _read(folder: str) -> pd.DataFrame:
    path = Path(folder) / TABLE
    if not path.is_file():
        raise InputError(f"{folder}: no {TABLE} (an experiments.analysis report "
                         "folder)")  # fmt: skip
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a table ({str(e).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise InputError(f"{path}: missing columns {', '.join(missing)} (written by "
                         "an older experiments.analysis? run it again)")  # fmt: skip
    return table


def _same_settings(a: pd.DataFrame, b: pd.DataFrame, folders: list[str]) -> None:
    """Intervals at different levels, or from different tests, do not compare."""
    for column in ("level", "test"):
        values = [sorted(set(t[column].dropna())) for t in (a, b)]
        if values[0] != values[1]:
            raise InputError(
                f"the reports differ in their {column} ({folders[0]}: "
                f"{', '.join(map(str, values[0]))}; {folders[1]}: "
                f"{', '.join(map(str, values[1]))}): run experiments.analysis on "
                "both alike")


def side_by_side(a: pd.DataFrame, b: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per comparison both tables hold, in A's order."""
    keep = [*JOIN, "pairs", "difference", "ci_low", "ci_high", "p_holm"]
    joined = a[keep].merge(b[keep], on=JOIN, suffixes=("_a", "_b"), sort=False)
    joined = joined[joined["metric"].isin(metrics)]
    for side in ("a", "b"):
        joined[f"direction_{side}"] = [
            direction(lo, hi)
            for lo, hi in zip(joined[f"ci_low_{side}"], joined[f"ci_high_{side}"],
                              strict=True)  # fmt: skip
        ]
    both = (joined["direction_a"] != "–") & (joined["direction_b"] != "–")
    joined["agree"] = (joined["direction_a"] == joined["direction_b"]).where(both)
    order = {m: i for i, m in enumerate(metrics)}
    return joined.sort_values("metric", key=lambda m: m.map(order),
                              kind="stable").reset_index(drop=True)  # fmt: skip


def _summary(table: pd.DataFrame, labels: list[str], level: float) -> list[str]:
    both = table[table["agree"].notna()]
    resolved = both[both["direction_a"].isin(["-", "+"])]
    held = int((resolved["direction_b"] == resolved["direction_a"]).sum())
    alpha = 1 - level
    holm = both[both["p_holm_a"] < alpha]
    held_holm = int(((holm["p_holm_b"] < alpha)
                     & (holm["direction_b"] == holm["direction_a"])).sum())  # fmt: skip
    return [
        f"{len(table)} comparisons in both, {len(both)} with an interval on both "
        f"sides (two pairs or more); their directions agree in "
        f"{int(both['agree'].sum())}. Of the {len(resolved)} that {labels[0]} "
        f"resolves (its unadjusted interval excludes 0), {held} hold in "
        f"{labels[1]}; of the {len(holm)} that stay below {alpha:.2g} after Holm's "
        f"adjustment in {labels[0]}, {held_holm} do in {labels[1]} too."
    ]


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    labels = two_labels(args.labels, SHOWN)
    a, b = (_read(folder) for folder in args.reports)
    _same_settings(a, b, args.reports)
    both = [m for m in METRICS if m in set(a["metric"]) & set(b["metric"])]
    metrics = both
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",")]
        missing = [m for m in metrics if m not in both]
        if missing:
            raise InputError(f"--metrics: {', '.join(missing)} not paired in both "
                             f"reports (both have {', '.join(both)})")  # fmt: skip
    out = Path(args.out) if args.out else Path(args.reports[0]) / "agreement"
    report_folder(out, f"--out {out}", "agreement.md", inputs=args.reports)
    table = side_by_side(a, b, metrics)
    if table.empty:
        raise InputError("the two reports hold no comparison in common")
    shown = pd.DataFrame({
        "metric": [METRICS[m].label for m in table["metric"]],
        "comparison": table["label"],
        "prior": table["prior"],
        labels[0]: [_cell(*r) for r in zip(table["difference_a"], table["ci_low_a"],
                                           table["ci_high_a"], strict=True)],
        labels[1]: [_cell(*r) for r in zip(table["difference_b"], table["ci_low_b"],
                                           table["ci_high_b"], strict=True)],
        "directions": table["direction_a"] + " / " + table["direction_b"],
        "agree": table["agree"].map({True: "yes", False: "no"}).fillna("–"),
    })  # fmt: skip
    command = " ".join(["python -m experiments.agreement",
                        *(sys.argv[1:] if argv is None else argv)])  # fmt: skip
    report = [
        f"# {labels[0]} beside {labels[1]}",
        "",
        f"The paired comparisons of `{args.reports[0]}` ({labels[0]}) and "
        f"`{args.reports[1]}` ({labels[1]}): a - b over seeds with its interval, as "
        "each report computed them. Directions: `-` the interval lies below 0, `+` "
        "above, `0` it holds 0.",
        "",
        *_summary(table, labels, float(a["level"].dropna().iloc[0])),
        "",
        _markdown(shown),
        "",
        "---",
        "",
        f"Written by `{command}`.",
    ]
    with replaced_dir(out) as staged:
        table.to_csv(staged / "agreement.csv", index=False)
        (staged / "agreement.md").write_text("\n".join(report) + "\n")
    print(f"report: {out / 'agreement.md'}")


if __name__ == "__main__":
    run_cli(main)
