"""One arm of one sweep against the arms of another, paired by seed: a comparison
across budgets that a single sweep cannot hold.

    python -m experiments.cross_sweep SWEEP_A SWEEP_B --arm KEY=VALUE[,KEY=VALUE]
        [--against KEY=VALUE[,...]] [--labels A,B] [--metric kid]
        [--test t|permutation] [--level 0.95] [--out DIR]

The analysis pairs arms within one sweep (or sweeps of one recipe). Some questions
need two recipes: the thesis compares set sizes at equal epochs, so the whole pool
trained for twice the steps of a half (one sweep at 8,000 steps, another at 4,000)
is compared with each half:

    python -m experiments.cross_sweep double sweep --arm criterion=all \\
        --labels "8000 steps,4000 steps" --metric kid

`--arm` picks one arm of SWEEP_A (the axis values of a training-set choice:
`n_train`, `criterion`, and any other axis the sweep varied; the seed is the
replicate). Each arm of SWEEP_B (those `--against` keeps; default every one) is
compared with it, per generative prior (the `recon` ceiling is left out): A - B over
the seeds both ran, its interval, the test's p-value and Holm's adjustment over the
comparisons of each metric, and `resolvable` (the smallest true difference the test
finds with 80% probability at this pair count and spread), on `--metric` and every
other metric both sweeps measured. Each arm's stage-1 budget is listed beside it:
optimizer steps, and passes over its training images (epochs).

The two sweeps must score alike (the same kind, pool and reference sizes, sample
count, reference and feature network: their numbers mean the same); the base
settings in which they differ (the budget, the model) are listed at the top of the
report. Only finished trials enter. Writes `cross_sweep.md` and `cross_sweep.csv`
into `--out` (default: `<SWEEP_A>/cross_sweep`), whole or not at all, replacing an
earlier report: an existing `--out` must be empty or hold `cross_sweep.md`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.analysis import _markdown
from experiments.significance import (
    holm,
    no_spread,
    paired_difference,
    resolvable_difference,
)
from experiments.tables import (
    METRICS,
    _usable,
    generative,
    in_printed_units,
    interval_text,
    row_keys,
)
from sweep.reader import Sweep, comparable_key, load_sweep
from vae_sweep.checks import report_folder, two_labels
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import replaced_dir

# what decides what a score means, which the two sweeps must share: the kind, the
# pool and reference sizes, the sample count, the reference and the network. Not:
# where the data lie, how many images go through the network at once, which other
# metrics were measured beside, how many bootstrap resamples made the intervals
SCORE_KEYS = ("kind", "data", "fid")
UNSCORED = {"data.root", "data.download", "fid.batch_size", "fid.metrics",
            "fid.bootstrap"}  # fmt: skip
TABLE = "cross_sweep.csv"
# the report table's own columns, which --labels may not take
SHOWN = ("against", "prior", "pairs", "A - B", "resolvable", "p_holm")


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.cross_sweep", __doc__)
    parser.add_argument("sweeps", type=text, nargs=2, metavar="SWEEP",
                        help="two sweep folders (<storage>/<name>)")  # fmt: skip
    parser.add_argument("--arm", type=text, required=True,
                        help="SWEEP_A's arm: KEY=VALUE pairs, comma-separated")
    parser.add_argument("--against", type=text, default=None,
                        help="SWEEP_B's arms to compare with (KEY=VALUE pairs, "
                        "comma-separated; default: every one)")  # fmt: skip
    parser.add_argument("--labels", type=text, default=None,
                        help="what tells the two sweeps apart, comma-separated "
                        "(default: their names)")  # fmt: skip
    parser.add_argument("--metric", choices=list(METRICS), default="fid",
                        help="the primary metric: first in the report")
    parser.add_argument("--test", choices=["t", "permutation"], default="t",
                        help="paired test: t, or exact sign-flip permutation")
    parser.add_argument("--level", type=float, default=0.95,
                        help="confidence level of the intervals (default 0.95)")
    parser.add_argument("--out", type=text, default=None,
                        help="the folder written (default: <SWEEP_A>/cross_sweep)")
    return parser


def parse_selection(option: str, value: str | None) -> dict[str, str]:
    """`n_train=5000,criterion=all` as {axis: value text}; {} for None."""
    if value is None:
        return {}
    pairs = {}
    for part in value.split(","):
        key, sep, wanted = (s.strip() for s in part.partition("="))
        if not sep or not key or not wanted:
            raise InputError(f"{option} {value!r}: KEY=VALUE pairs, comma-separated")
        if key in pairs:
            raise InputError(f"{option} {value!r}: {key} given twice")
        pairs[key] = wanted
    return pairs


def _matches(column: pd.Series, wanted: str) -> pd.Series:
    """Rows whose value reads as `wanted` (5000 matches 5000 and 5000.0)."""
    numbers = pd.to_numeric(column, errors="coerce")
    try:
        number = float(wanted)
    except ValueError:
        return column.astype(str) == wanted
    return (numbers == number) | (column.astype(str) == wanted)


def select(results: pd.DataFrame, option: str, pairs: dict[str, str],
           keys: list[str], folder: Path) -> pd.DataFrame:  # fmt: skip
    unknown = [k for k in pairs if k not in keys]
    if unknown:
        raise InputError(f"{option}: {unknown[0]} is not an arm's key in {folder} "
                         f"(its keys: {', '.join(keys)})")  # fmt: skip
    chosen = results
    for key, wanted in pairs.items():
        chosen = chosen[_matches(chosen[key], wanted)]
    if chosen.empty:
        present = "; ".join(
            f"{k}: {', '.join(map(str, sorted(results[k].dropna().unique())))}"
            for k in pairs)  # fmt: skip
        raise InputError(f"{option} {','.join(f'{k}={v}' for k, v in pairs.items())}:"
                         f" no such arm in {folder} ({present})")  # fmt: skip
    return chosen


def score_differences(a: Sweep, b: Sweep) -> list[str]:
    """The score-defining settings in which the two sweeps differ (dotted keys)."""
    first, second = comparable_key(a.grid), comparable_key(b.grid)
    return [key for key in _dotted_differences(first, second)
            if key.split(".")[0] in SCORE_KEYS and key not in UNSCORED]


def check_comparable(folders: list[str], sweeps: list[Sweep], command: str) -> None:
    """One line (InputError) unless every sweep is a VAE sweep that scores as the
    first does; `command` begins the kind's message ("cross_sweep compares")."""
    for folder, sweep in zip(folders, sweeps, strict=True):
        if sweep.grid.kind != "vae":
            raise InputError(f"{folder}: a {sweep.grid.kind} sweep; {command} VAE "
                             "sweeps (kind vae)")  # fmt: skip
    for folder, sweep in zip(folders[1:], sweeps[1:], strict=True):
        differing = score_differences(sweeps[0], sweep)
        if differing:
            raise InputError(f"{folder}: its scores do not compare with "
                             f"{folders[0]}'s (their grids differ in "
                             f"{', '.join(differing)})")  # fmt: skip


def recipe_differences(a: Sweep, b: Sweep) -> list[str]:
    """`key: A value / B value` for each other base setting in which they differ
    (grid axes, which set them per arm, are not among them)."""
    first, second = comparable_key(a.grid), comparable_key(b.grid)
    return [f"{key}: {_lookup(first, key)} / {_lookup(second, key)}"
            for key in _dotted_differences(first, second)
            if key.split(".")[0] not in SCORE_KEYS]  # fmt: skip


def _dotted_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(a.keys() | b.keys()):
        left, right = a.get(key), b.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            keys += _dotted_differences(left, right, f"{prefix}{key}.")
        elif left != right:
            keys.append(f"{prefix}{key}")
    return keys


def _lookup(settings: dict, dotted: str):
    for part in dotted.split("."):
        settings = settings.get(part) if isinstance(settings, dict) else None
    return settings


def _budget(rows: pd.DataFrame) -> str:
    """An arm's stage-1 steps and passes over its images, as its trials ran them."""
    trials = rows.drop_duplicates("trial_id")
    if not {"steps_run", "images_seen"} <= set(trials):
        return "–"
    steps = sorted(set(trials["steps_run"].dropna().astype(int)))
    epochs = sorted(set((trials["images_seen"] / trials["n_train"]).dropna().round(1)))
    return (f"{'/'.join(f'{s:,}' for s in steps)} steps, "
            f"{'/'.join(f'{e:g}' for e in epochs)} epochs")  # fmt: skip


def _arm_label(row: pd.Series, keys: list[str]) -> str:
    return " ".join(f"{k}={row[k]}" for k in keys)


def hashable_keys(results: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`results` with list-valued axis columns (model.encoder_channels, ...) as
    tuples, which pandas can group on."""
    def freeze(value):
        return tuple(value) if isinstance(value, list | tuple | np.ndarray) else value

    return results.assign(**{k: results[k].map(freeze) for k in keys})


def check_one_trial_per_seed(rows: pd.DataFrame, keys: list[str], side: str) -> None:
    """Each arm holds one trial per seed: two (an axis the results do not tell
    apart) would pair as a cross product."""
    trials = rows.drop_duplicates("trial_id")
    repeated = trials[trials.duplicated([*keys, "seed"], keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        raise InputError(f"{side}: {_arm_label(first, keys)} holds "
                         f"{int((repeated['seed'] == first['seed']).sum())} trials "
                         f"of seed {first['seed']} (an axis its results do not "
                         "record?): pairing by seed needs one")  # fmt: skip


def compare(a_rows: pd.DataFrame, b_rows: pd.DataFrame, b_keys: list[str],
            metrics: list[str], test: str, level: float) -> pd.DataFrame:  # fmt: skip
    """A's arm against each of B's arms, per prior and metric, paired by seed."""
    rows = []
    for metric in metrics:
        a_ok = _finished(a_rows, metric)
        b_ok = _finished(b_rows, metric)
        for arm, b_arm in b_ok.groupby(b_keys, sort=True, dropna=False):
            arm = arm if isinstance(arm, tuple) else (arm,)
            label = " ".join(f"{k}={v}" for k, v in zip(b_keys, arm, strict=True))
            for prior in sorted(set(a_ok["prior"]) & set(b_arm["prior"])):
                pairs = a_ok[a_ok["prior"] == prior][["seed", metric]].merge(
                    b_arm[b_arm["prior"] == prior][["seed", metric]], on="seed",
                    suffixes=("_a", "_b"))  # fmt: skip
                if pairs.empty:
                    continue
                a_values = pairs[f"{metric}_a"].to_numpy(float)
                b_values = pairs[f"{metric}_b"].to_numpy(float)
                result = paired_difference(a_values, b_values, test=test, level=level)
                d = result.difference
                rows.append({
                    "metric": metric, "against": label, "prior": prior,
                    "pairs": d.n, "seeds": ",".join(map(str, sorted(pairs["seed"]))),
                    "a_mean": float(a_values.mean()), "b_mean": float(b_values.mean()),
                    "difference": d.mean, "ci_low": d.low, "ci_high": d.high,
                    "resolvable": resolvable_difference(a_values - b_values, level),
                    "p_value": result.p_value, "test": test, "level": level,
                })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    for _, group in table.groupby("metric", sort=False):
        tested = group["p_value"].notna()
        table.loc[group.index[tested], "p_holm"] = holm(group.loc[tested, "p_value"])
    return table


def _finished(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return in_printed_units(_usable(rows, metric), metric)


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if not 0 < args.level < 1:
        raise InputError(f"--level {args.level:g}: a probability between 0 and 1")
    arm = parse_selection("--arm", args.arm)
    if not arm:
        raise InputError("--arm: KEY=VALUE pairs, comma-separated")
    against = parse_selection("--against", args.against)
    out = Path(args.out) if args.out else Path(args.sweeps[0]) / "cross_sweep"
    report_folder(out, f"--out {out}", "cross_sweep.md", inputs=args.sweeps)
    a, b = (load_sweep(folder) for folder in args.sweeps)
    check_comparable(args.sweeps, [a, b], "cross_sweep compares")
    if args.labels is None and a.name == b.name:
        raise InputError(f"both sweeps are named {a.name}: tell them apart with "
                         "--labels A,B")  # fmt: skip
    labels = two_labels(args.labels if args.labels else f"{a.name},{b.name}", SHOWN)
    a_keys = row_keys(a.results, set(a.grid.grid))
    b_keys = row_keys(b.results, set(b.grid.grid))
    a_results = hashable_keys(a.results, a_keys)
    b_results = hashable_keys(b.results, b_keys)
    a_rows = select(a_results, "--arm", arm, a_keys, a.folder)
    arms = a_rows.drop_duplicates(a_keys)
    if len(arms) > 1:
        found = "; ".join(_arm_label(r, a_keys) for _, r in arms.iterrows())
        raise InputError(f"--arm {args.arm}: {len(arms)} arms of {a.folder} match "
                         f"({found}): name one")  # fmt: skip
    b_rows = select(b_results, "--against", against, b_keys, b.folder) if against \
        else b_results  # fmt: skip
    check_one_trial_per_seed(a_rows, a_keys, args.sweeps[0])
    check_one_trial_per_seed(b_rows, b_keys, args.sweeps[1])
    priors = generative(sorted(set(a_rows["prior"]) & set(b_rows["prior"])))
    if not priors:
        raise InputError(f"no generative prior in both the arm ("
                         f"{', '.join(sorted(set(a_rows['prior'])))}) and the arms "
                         f"compared with ({', '.join(sorted(set(b_rows['prior'])))})")
    a_rows, b_rows = (r[r["prior"].isin(priors)] for r in (a_rows, b_rows))
    measured = [m for m in METRICS if m in a_rows and m in b_rows
                and a_rows[m].notna().any() and b_rows[m].notna().any()]  # fmt: skip
    if args.metric not in measured:
        raise InputError(f"--metric {args.metric}: not measured in both sweeps "
                         f"(both have {', '.join(measured) or 'none'})")  # fmt: skip
    metrics = [args.metric] + [m for m in measured if m != args.metric]
    table = compare(a_rows, b_rows, b_keys, metrics, args.test, args.level)
    if table.empty:
        raise InputError("no seed was run to its end in both the arm and the arms "
                         "compared with")  # fmt: skip
    report = _report(args, argv, a, b, labels, a_rows, b_rows, a_keys, b_keys, table)
    with replaced_dir(out) as staged:
        table.to_csv(staged / TABLE, index=False)
        (staged / "cross_sweep.md").write_text(report)
    print(f"report: {out / 'cross_sweep.md'}")


def _difference_text(difference: float, low: float, high: float) -> str:
    """`d [low, high]`; with one pair, or no spread (every seed's difference the
    same), the value alone, said so: a zero-width interval claims no certainty."""
    if not np.isfinite(low):
        return f"{difference:.3g} (one pair)"
    if no_spread([low, high]):
        return f"{difference:.3g} (no spread)"
    return interval_text(difference, low, high)


def _report(args, argv, a: Sweep, b: Sweep, labels, a_rows, b_rows, a_keys, b_keys,
            table: pd.DataFrame) -> str:  # fmt: skip
    arm = _arm_label(a_rows.iloc[0], a_keys)
    budgets = [{"sweep": labels[0], "arm": arm, "budget": _budget(a_rows)}]
    for _, group in b_rows.groupby(b_keys, sort=True, dropna=False):
        budgets.append({"sweep": labels[1],
                        "arm": _arm_label(group.iloc[0], b_keys),
                        "budget": _budget(group)})  # fmt: skip
    recipe = recipe_differences(a, b)
    alpha = 1 - args.level
    lines = [
        f"# {arm} ({labels[0]}) against the arms of {labels[1]}",
        "",
        f"`{a.folder}` ({labels[0]}) and `{b.folder}` ({labels[1]}): the first's arm "
        f"{arm} against each arm of the second, paired by seed (A - B over the seeds "
        f"both ran to their end; the two means are over those seeds), "
        f"{args.level:.0%} interval, {args.test} test, Holm's adjustment over each "
        "metric's comparisons (`p_holm`; `*` below "
        f"{alpha:.2g}). `resolvable`: the smallest true difference a paired t test "
        "finds with 80% probability at this pair count and spread. Values as "
        "printed (KID x 1000), in the CSV too.",
        "",
        "The sweeps' base settings differ in: " + ("; ".join(recipe) if recipe
                                                   else "nothing but their names "
                                                   "and axes") + ".",  # fmt: skip
    ]
    if args.test == "permutation":
        lines += ["", "The intervals and `resolvable` are the paired t test's; the "
                  "exact sign-flip test's p-value is never below 2 / 2^n at n pairs "
                  "(0.0625 at 5)."]  # fmt: skip
    partial = sorted({str(s.folder) for s in (a, b) if s.rebuilt})
    if partial:
        lines += ["", f"PARTIAL: {' and '.join(partial)} "
                  f"{'has' if len(partial) == 1 else 'have'} not finished; only "
                  "trials that ended enter."]  # fmt: skip
    lines += ["", "## The arms' budgets", "", _markdown(pd.DataFrame(budgets))]
    for metric, group in table.groupby("metric", sort=False):
        spec = METRICS[metric]
        better = "lower" if spec.lower_is_better else "higher"
        shown = pd.DataFrame({
            "against": group["against"], "prior": group["prior"],
            "pairs": group["pairs"],
            labels[0]: group["a_mean"], labels[1]: group["b_mean"],
            "A - B": [_difference_text(d, lo, hi)
                      for d, lo, hi in zip(group["difference"], group["ci_low"],
                                           group["ci_high"], strict=True)],
            "resolvable": group["resolvable"], "p_holm": group["p_holm"],
            "": ["*" if p < alpha else "" for p in group["p_holm"].fillna(1.0)],
        })  # fmt: skip
        lines += ["", f"## {spec.label} ({better} is better)", "", _markdown(shown)]
    command = " ".join(["python -m experiments.cross_sweep",
                        *(sys.argv[1:] if argv is None else argv)])  # fmt: skip
    lines += ["", "---", "", f"Written by `{command}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)
