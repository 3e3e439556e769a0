"""Each arm's metric against its stage-1 steps, over sweeps that differ in budget.

    python -m experiments.budget_curves SWEEP [SWEEP ...] [--metric kid]
        [--level 0.95] [--out DIR]

The sweeps train the same arms (training-set choices) for different numbers of
optimizer steps, for instance the study's main sweep (4,000 steps) and its double
sweep (8,000). Every finished trial's final metric, grouped by arm, generative prior
and the steps its stage 1 took (`steps_run`): the mean over seeds and its Student-t
interval. A line joins an arm's budgets: what twice the compute buys each arm, on
an axis of steps (epochs differ between arms of different sizes at equal steps).

The sweeps must score alike (the same kind, pool and reference sizes, sample count,
reference and feature network). Writes `budget_curves.png` and `budget_curves.csv`
(the metric as printed, KID x 1000) into `--out` (default: `<SWEEP>/budget_curves`,
the first SWEEP), whole or not at all, replacing an earlier one: an existing `--out`
must be empty or hold `budget_curves.csv`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.cross_sweep import check_comparable, hashable_keys
from experiments.figures import _colour
from experiments.tables import (
    METRICS,
    fid_table,
    generative,
    in_printed_units,
    row_keys,
)
from sweep.reader import load_sweep
from vae_sweep.checks import report_folder
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import replaced_dir

STEPS = "steps_run"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m experiments.budget_curves",
                    description=text(__doc__))  # fmt: skip
    parser.add_argument("sweeps", nargs="+", metavar="SWEEP",
                        help="sweep folders of one recipe at different budgets")
    parser.add_argument("--metric", default="kid", choices=sorted(METRICS))
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--out", default=None)
    return parser


def budget_table(results: pd.DataFrame, keys: list[str], metric: str,
                 level: float = 0.95) -> pd.DataFrame:  # fmt: skip
    """One row per (arm, prior, stage-1 steps): the metric's mean and interval over
    seeds, in printed units (the recon ceiling left out)."""
    shown = results[results["prior"].isin(generative(results["prior"].unique()))]
    long = fid_table(in_printed_units(shown, metric), [*keys, STEPS], level, metric)
    return long[long["seeds"] > 0].sort_values([*keys, "prior", STEPS])


def budget_figure(table: pd.DataFrame, keys: list[str], metric: str) -> Figure:
    """One panel per prior: the metric against steps, a line per arm with its
    intervals (the arms a little apart on the axis, so that they do not hide each
    other; a marker per training-set size, a colour per criterion)."""
    priors = sorted(table["prior"].unique())
    figure = Figure(figsize=(4.2 * len(priors) + 2.2, 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(priors), sharey=True))
    mean = f"{metric}_mean"
    arms = table.drop_duplicates(keys)[keys].reset_index(drop=True)
    sizes = sorted(arms["n_train"].unique())
    budgets = sorted(table[STEPS].unique())
    step = min(np.diff(budgets)) if len(budgets) > 1 else max(budgets[0], 1)
    offsets = (np.arange(len(arms)) - (len(arms) - 1) / 2) * 0.2 * step / len(arms)
    for axis, prior in zip(axes, priors, strict=True):
        for (_, arm), offset in zip(arms.iterrows(), offsets, strict=True):
            line = table[(table["prior"] == prior)
                         & (table[keys] == arm.to_numpy()).all(axis=1)]  # fmt: skip
            axis.errorbar(
                line[STEPS] + offset, line[mean],
                yerr=[line[mean] - line["ci_low"], line["ci_high"] - line[mean]],
                fmt="osD^v"[sizes.index(arm["n_train"]) % 5] + "-", capsize=2,
                color=_colour(arm["criterion"]),
                label=", ".join(f"{arm[k]}" for k in keys),
            )  # fmt: skip
        axis.set_title(prior)
        axis.set_xlabel("stage-1 optimizer steps")
        axis.set_xticks(budgets)
    axes[0].set_ylabel(METRICS[metric].label)
    axes[-1].legend(fontsize="small", title=", ".join(keys), title_fontsize="small",
                    loc="upper left", bbox_to_anchor=(1.02, 1))  # fmt: skip
    figure.tight_layout()
    return figure


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if not 0 < args.level < 1:
        raise InputError(f"--level {args.level:g}: a probability between 0 and 1")
    out = Path(args.out) if args.out else Path(args.sweeps[0]) / "budget_curves"
    report_folder(out, f"--out {out}", "budget_curves.csv", inputs=args.sweeps)
    sweeps = [load_sweep(folder) for folder in args.sweeps]
    check_comparable(args.sweeps, sweeps, "budget_curves reads")
    for folder, sweep in zip(args.sweeps, sweeps, strict=True):
        if args.metric not in sweep.results:
            raise InputError(f"--metric {args.metric}: {folder} did not measure it")
        if STEPS not in sweep.results:
            raise InputError(f"{folder}: its results record no {STEPS} (a sweep "
                             "from before the step count was recorded)")  # fmt: skip
    results = pd.concat([s.results for s in sweeps], ignore_index=True)
    # n_train, criterion, then any other axis one of the sweeps varied
    keys = row_keys(results, {axis for s in sweeps for axis in s.grid.grid})
    results = hashable_keys(results, keys)
    table = budget_table(results, keys, args.metric, args.level)
    if table.empty:
        raise InputError(f"{', '.join(args.sweeps)}: no finished trial with a "
                         f"{args.metric}")  # fmt: skip
    with replaced_dir(out) as folder:
        table.to_csv(folder / "budget_curves.csv", index=False)
        budget_figure(table, keys, args.metric).savefig(
            folder / "budget_curves.png", dpi=120, bbox_inches="tight")
    print(f"figure: {out / 'budget_curves.png'}, table: {out / 'budget_curves.csv'}")


if __name__ == "__main__":
    run_cli(main)
