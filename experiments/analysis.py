"""From Parquet to answers: the analysis report of one or more sweeps.

    python -m experiments.analysis RESULTS_DIR... [--out DIR] [--test t|permutation]

Reads `results.parquet`, `history.parquet` and `grid.yaml` of each sweep folder (a
sweep still running, or resumed, is rebuilt from Tune's state and reported as
partial) and writes into `--out` (default: `<first RESULTS_DIR>/report`):

- `report.md`: what was run, the FID table laid out like the study's Table 5 (mean
  and Student-t 95% interval over seeds, seeds and samples; other outcomes counted
  apart), the stage-1/stage-2 diagnostics, and the paired comparisons (each criterion
  against `random`, each n_train against the full set) with Holm-adjusted p-values;
- `report.html`: the same report as one page for a browser, its figures embedded;
- `fid.csv`, `diagnostics.csv`, `comparisons.csv`: the same tables, in full;
- `comparisons_by_metric.csv`: the same paired comparisons on every metric the sweeps
  measured (each its own Holm family), the other metrics set side by side in the
  report: what a choice does to fidelity (precision, density) and diversity (recall,
  coverage) beside the primary metric;
- `fid_vs_n_train.png` (one per metric measured), `learning_curves.png`,
  `precision_recall.png` and `density_coverage.png` where measured, the best and
  worst trial's sample grid (`samples_best.png`, `samples_worst.png`) when the sweep
  saved them, and for E1/E2
  sweeps `e1.png` / `e2.png` with `e1.csv` / `e2.csv`.

The folder is written whole or not at all, replacing an earlier report; an
existing `--out` must be empty or hold `report.md` (a sweep, the storage above
one, or a folder of other files is refused).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from experiments import figures, tables
from experiments.protocols.summary import summarise
from experiments.published_tables import table5
from experiments.report_html import HTML_REPORT, write_html
from experiments.significance import POWER
from fid.sample_metrics import KID_SUBSET_SIZE
from sweep.folder import SAMPLES_FOLDER, copies_file, sample_grid_file
from sweep.reader import Sweep, load_sweeps
from vae_sweep.checks import report_folder
from vae_sweep.cli import Parser, finite_float, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import replaced_dir

REPORT = "report.md"
# what a sweep rebuilt from Tune's state lacks: the driver writes it with the tables
NOT_RECORDED = "not recorded in the tables (a sweep rebuilt from Tune's state)"


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.analysis", __doc__)
    parser.add_argument(
        "folders",
        type=text,
        nargs="+",
        metavar="RESULTS_DIR",
        help="sweep folders (<storage>/<name>)",
    )
    parser.add_argument(
        "--out",
        type=text,
        default=None,
        help="report folder (default: <first RESULTS_DIR>/report)",
    )
    parser.add_argument(
        "--test",
        choices=("t", "permutation"),
        default="t",
        help="paired test: t, or exact sign-flip permutation",
    )
    parser.add_argument(
        "--metric",
        choices=list(tables.METRICS),
        default="fid",
        help="the primary metric: tabulated first and paired on",
    )
    parser.add_argument(
        "--level",
        type=finite_float,
        default=0.95,
        help="confidence level of the intervals and tests, between 0 and 1",
    )
    return parser


def _markdown(frame: pd.DataFrame, floats: str = "{:.3g}") -> str:
    """A pipe table (no tabulate dependency)."""

    def fmt(value) -> str:
        if isinstance(value, float):
            return "–" if pd.isna(value) else floats.format(value)
        if isinstance(value, tuple):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        return "–" if value is None else str(value)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(fmt(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])


def _status_lines(sweeps: list[Sweep]) -> list[str]:
    lines = []
    for sweep in sweeps:
        counts = sweep.trials["status"].value_counts().to_dict()
        told = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        state = "PARTIAL" if sweep.partial else "complete"
        lines.append(
            f"- `{sweep.name}` ({sweep.folder}): {state}; "
            f"{len(sweep.trials)} of {sweep.expected_trials} trials "
            f"reported ({told})."
        )
        lines += [f"  {note}" for note in sweep.notes]
    return lines


def _budget(stage) -> str:
    """A grid section's budget as the report says it, with its loss."""
    if stage.steps is not None:
        return f"{stage.steps:,} steps (rounds of {stage.round_steps})"
    return f"{stage.epochs} epochs"


def _setup_lines(sweep: Sweep, results: pd.DataFrame) -> list[str]:
    grid = sweep.grid
    first = results.iloc[0]
    epochs = grid.selection.reference_epochs
    reference = f"{epochs} epochs" if epochs else _budget(grid.stage1)
    given = grid.stage2.epochs or grid.stage2.steps
    stage2 = _budget(grid.stage2) if given else "stage 2's default budget"
    encoding = first.get("data_encoding")
    lossless = first.get("data_lossless")
    lines = [
        f"- Training pool: {grid.data.train_limit or 50000} images of x_train; FID "
        f"reference: {grid.data.test_limit or 10000} images of x_test.",
        f"- Stage 1: latent {grid.model.latent_dim}, encoder "
        f"{list(grid.model.encoder_channels)}, decoder "
        f"{list(grid.model.decoder_channels)}, {_budget(grid.stage1)}, lr "
        f"{grid.stage1.lr}, loss {grid.stage1.loss}.",
        f"- Priors: {', '.join(grid.priors)}; FID on {grid.fid.samples} samples per "
        f"prior; metrics {', '.join(grid.fid.metrics)}; network "
        f"{first.get('fid_network') or NOT_RECORDED}.",
        f"- Mahalanobis space: {grid.selection.mahalanobis_space} (covariance "
        f"{grid.selection.mahalanobis_covariance}); the literature's criteria: "
        f"{grid.selection.space}; recon reference VAE "
        f"budget: {reference}.",
    ]
    if "two_stage" in grid.priors:
        hidden = list(grid.stage2.hidden) if grid.stage2.hidden else "default"
        lines.insert(
            2,
            f"- Stage 2: layout {grid.stage2.layout}, hidden {hidden}, "
            f"inputs {grid.stage2.inputs}, latent {grid.stage2.latent_dim}, "
            f"{stage2}.",
        )
    if encoding is not None:
        shifted = (
            ""
            if lossless
            else (
                " (re-encoded: FIDs are shifted against "
                "published ones, compare them only here)"
            )
        )
        lines.append(f"- Data encoding: {encoding}{shifted}.")
    return lines


def analyse_vae(sweeps: list[Sweep], out: Path, test: str, level: float,
                metric: str = "fid") -> list[str]:  # fmt: skip
    results = pd.concat([s.results for s in sweeps], ignore_index=True)
    _check_metric(results, metric)
    histories = [s.history for s in sweeps if len(s.history)]
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    axes = set().union(*(s.grid.grid for s in sweeps))
    keys = tables.row_keys(results, axes)
    priors = list(dict.fromkeys(p for s in sweeps for p in s.grid.priors))
    diagnostics = tables.diagnostics_table(results, keys, level)
    # in the units the report prints the metric in (KID x 1000), as its header says
    compared = _comparisons(tables.in_printed_units(results, metric), keys, test,
                            level, metric, priors)  # fmt: skip
    diagnostics.to_csv(out / "diagnostics.csv", index=False)
    compared.to_csv(out / "comparisons.csv", index=False)
    label = tables.METRICS[metric].label
    lines = [
        f"Primary metric: **{label}** (`--metric {metric}`): the tables below start "
        "with it and the paired comparisons are on it; the other metrics the sweep "
        "measured follow. `recon` is no prior: it decodes the encoder means of x_test "
        "images, the FID reference's own images, so it is the decoder's ceiling; it "
        "is kept apart from the generative priors in every table, figure and test.",
        "",
        "## Setup",
        "",
        *_setup_lines(sweeps[0], results),
        "",
    ]
    shown = [metric] + [m for m in tables.METRICS if m != metric
                        and m in results and results[m].notna().any()]  # fmt: skip
    for name in shown:
        lines += _metric_lines(results, keys, priors, level, out, name)
    lines += _precision_recall_lines(results, keys, priors, level, out)
    lines += _table5_lines(sweeps[0], results, level)
    table = diagnostics[[c for c in diagnostics.columns if not c.endswith(" ci")]]
    lines += [
        "## Diagnostics (mean over finished trials)",
        "",
        "Variance law: mean over latent dimensions of (variance of the means + "
        "mean of the variances), expected near 1. Inactive dimensions: mean "
        "variance above 0.8. Gamma: the decoder scale at the end. Converged: the "
        "trials whose per-pixel MSE fell by less than 1% from the fourth fifth of "
        "their budget to the last.",
        "",
        _markdown(table),
        "",
    ]
    lines += _comparison_lines(compared, test, level, label)
    lines += _other_comparison_lines(results, keys, test, level, metric, priors, out)
    lines += _makeup_lines(results, keys, out)
    if len(history):
        figures.learning_curves(history).savefig(
            out / "learning_curves.png", dpi=120, bbox_inches="tight"
        )
        lines += [
            "## Learning curves",
            "",
            "Against optimizer steps (trials of different n_train at equal compute "
            "line up): the stage-1 per-pixel MSE, its decoder scale gamma, the "
            "intermediate FID and the stage-2 loss.",
            "",
            "![learning curves](learning_curves.png)",
            "",
        ]
    lines += _sample_lines(sweeps, results, out, metric)
    return lines


THESIS_CRITERIA = ("all", "random", "lowest_recon", "lowest_mahalanobis")


def _table5_lines(sweep: Sweep, results: pd.DataFrame, level: float) -> list[str]:
    """A sweep shaped like the study's Table 5 (the whole pool, and half of it chosen
    by the thesis's criteria) beside that table, row for row."""
    pool = sweep.grid.data.train_limit or 50_000
    done = results[results["status"] == "ok"]
    retention = done["n_train"] / pool
    shaped = (done["criterion"].isin(THESIS_CRITERIA) & retention.isin([0.5, 1.0]))
    if not shaped.any() or not done.loc[shaped, "criterion"].nunique() > 1:
        return []
    done = done[shaped].assign(half=retention[shaped] == 0.5)
    thesis = table5()
    rows = []
    for study in thesis.itertuples():
        cell = done[(done["criterion"] == study.criterion)
                    & (done["half"] == (study.n_train == 25_000))]  # fmt: skip
        priors = (("two_stage", study.fid_gaussian),) if study.stage2 == "yes" else (
            ("gaussian", study.fid_gaussian), ("gmm", study.fid_gmm),
            ("recon", study.fid_recon))  # fmt: skip
        for prior, published in priors:
            ours = tables.t_interval(cell.loc[cell["prior"] == prior, "fid"], level)
            rows.append({"thesis model": study.model, "criterion": study.criterion,
                         "retention": "half" if study.n_train == 25_000 else "all",
                         "prior": prior, "thesis FID": published,
                         "this sweep": ours.mean, "seeds": ours.n})  # fmt: skip
    shown = pd.DataFrame(rows).dropna(subset=["this sweep"])
    if shown.empty:
        return []
    samples = sorted({int(s) for s in done["fid_samples"].dropna()})
    encoding = done["data_encoding"].iloc[0] if "data_encoding" in done else None
    copy = f"a {encoding} copy" if encoding else f"a copy ({NOT_RECORDED})"
    return [
        "## The study's Table 5 beside this sweep",
        "",
        "The thesis's FIDs (Ravaglia 2019, Table 5; experiments/published) next to "
        "the mean of this sweep's seeds for the same training-set choice and prior. "
        "Absolute values differ for reasons that have nothing to do with the "
        f"question: this sweep read {copy} of CIFAR-10 (the thesis the "
        f"lossless one), scored {', '.join(map(str, samples))} samples per prior (the "
        f"thesis 10,000; FID grows as samples shrink), trained a pool of {pool:,} "
        "images with its own model width and budget (the thesis 50,000, the full "
        "width, 600 + 1,200 epochs). Compare the orderings, not the numbers.",
        "",
        _markdown(shown),
        "",
    ]


def _precision_recall_lines(results, keys, priors, level, out: Path) -> list[str]:
    """Fidelity against diversity per training-set choice and generative prior (the
    recon ceiling left out): precision against recall, and density against coverage
    (Naeem et al.'s versions, which outliers among the real images sway less)."""
    generative = tables.generative(priors)
    if not generative:  # a sweep of the ceiling alone
        return []
    lines = []
    for (fidelity, diversity), name, told in (
        (("precision", "recall"), "precision_recall.png",
         "Precision (the share of generated samples inside the real samples' k = 3 "
         "neighbourhoods) against recall (the share of real samples inside the "
         "generated ones'), Kynkäänniemi et al. 2019, on the FID's own features."),
        (("density", "coverage"), "density_coverage.png",
         "Density (the number of real samples' k = 5 neighbourhoods a generated "
         "sample falls in, averaged over the samples and divided by k) against "
         "coverage (the share of real samples whose neighbourhood holds a generated "
         "one), Naeem et al. 2020, which outliers among the real samples sway "
         "less; DeVries et al. 2020 measure both pairs."),
    ):  # fmt: skip
        if not {fidelity, diversity} <= set(results) or results[diversity].isna().all():
            continue
        long = {m: tables.fid_table(results[results["prior"].isin(generative)], keys,
                                    level, metric=m)
                for m in (fidelity, diversity)}  # fmt: skip
        figures.fidelity_diversity(long[fidelity], long[diversity], generative,
                                   (fidelity, diversity)).savefig(
            out / name, dpi=120, bbox_inches="tight")  # fmt: skip
        lines += [told, "", f"![{fidelity} and {diversity}]({name})", ""]
    return ["## Fidelity against diversity", "", *lines] if lines else []


def _makeup_lines(results: pd.DataFrame, keys: list[str], out: Path) -> list[str]:
    """Which classes each criterion keeps: the subsets' mean class shares."""
    table = tables.class_makeup(results, keys)
    if table.empty:
        return []
    table.to_csv(out / "class_makeup.csv", index=False)
    figures.class_makeup(table, keys).savefig(out / "class_makeup.png", dpi=120,
                                              bbox_inches="tight")  # fmt: skip
    return [
        "## Class make-up (% of each subset, mean over trials)",
        "",
        "A criterion that scores images without their labels can keep some classes "
        "and drop others; an even split is 100 / classes %.",
        "",
        _markdown(table, floats="{:.1f}"),
        "",
        "![class make-up](class_makeup.png)",
        "",
    ]


def _check_metric(results: pd.DataFrame, metric: str) -> None:
    if metric not in results or not results[metric].notna().any():
        measured = [m for m in tables.METRICS if m in results
                    and results[m].notna().any()]  # fmt: skip
        raise InputError(f"--metric {metric}: the sweeps did not measure it "
                         f"(they have {', '.join(measured)})")  # fmt: skip


def _comparisons(results, keys, test, level, metric, priors) -> pd.DataFrame:
    """The generative priors' comparisons and the ceiling's, each its own family
    for Holm's adjustment."""
    frames = []
    for family, chosen in (("generative", tables.generative(priors)),
                           ("ceiling", [p for p in priors if p == tables.CEILING])):
        if chosen:
            part = results[results["prior"].isin(chosen)]
            frame = tables.comparisons(part, keys, test, level, metric)
            frames.append(frame.assign(family=family) if len(frame) else frame)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _metric_lines(results, keys, priors, level, out: Path, metric: str) -> list[str]:
    """A metric's tables (generative priors; the recon ceiling apart), its CSV and,
    for the primary metric, its figure against n_train."""
    spec = tables.METRICS[metric]
    scaled = tables.in_printed_units(results, metric)
    long = tables.fid_table(scaled, keys, level, metric=metric)
    long.to_csv(out / f"{metric}.csv", index=False)
    generative = tables.generative(priors)
    name = f"{metric}_vs_n_train.png"
    figures.fid_against_n_train(long, priors, metric=metric,
                                label=spec.label).savefig(
        out / name, dpi=120, bbox_inches="tight")  # fmt: skip
    better = "lower" if spec.lower_is_better else "higher"
    lines = [
        f"## {spec.label} (mean [{level:.0%} Student-t interval] over n seeds; "
        f"{better} is better)",
        "",
        "Rows: the training-set choice; columns: the generative prior. Only trials "
        "that finished enter a mean; the last column counts the others.",
        "",
        *_notes(metric, results),
        _markdown(tables.wide_fid_table(long, keys, generative, metric=metric)),
        "",
    ]
    error = tables.sampling_error(results, long, keys, metric, spec.scale)
    if len(error):
        lines += [
            f"Sampling error of one model ({spec.label}): the width of each trial's "
            "95% bootstrap interval over its generated samples (median over trials) "
            "beside the width of the interval over seeds.",
            "",
            _markdown(error),
            "",
        ]
    if tables.CEILING in priors:
        lines += [
            f"The decoder's ceiling (`recon`: reconstructions of x_test, the FID "
            f"reference's own images; not a generative prior), {spec.label}:",
            "",
            _markdown(tables.wide_fid_table(long, keys, [tables.CEILING],
                                            metric=metric)),  # fmt: skip
            "",
        ]
    return [*lines, f"![{spec.label}]({name})", ""]


def _notes(metric: str, results: pd.DataFrame) -> list[str]:
    if metric != "kid":
        return []
    samples = results["fid_samples"].dropna()
    small = len(samples) and samples.min() < KID_SUBSET_SIZE
    if not small:
        return []
    return [
        f"KID's subsets hold {KID_SUBSET_SIZE:,} samples per side: with fewer "
        f"generated samples ({int(samples.min()):,} here) every subset holds all of "
        "them, so `kid_std` measures the reference side's spread only.",
        "",
    ]


def _comparison_lines(compared: pd.DataFrame, test: str, level: float,
                      label: str = "FID") -> list[str]:  # fmt: skip
    if compared.empty:
        return []
    name = "paired t test" if test == "t" else "exact sign-flip permutation test"
    shown = compared[
        [
            "family",
            "comparison",
            "prior",
            "label",
            "pairs",
            "difference",
            "ci_low",
            "ci_high",
            "resolvable",
            "p_value",
            "p_holm",
        ]
    ]
    floor = ""
    if test == "permutation":  # its smallest p-value: 2 of the 2^pairs sign patterns
        fewest = int(compared["pairs"].min())
        if fewest >= 1 and 2.0 / 2**fewest > 1 - level:
            floor = (f" With {fewest} pairs the permutation test's smallest p-value "
                     f"is {2.0 / 2**fewest:.3g}: it cannot reject at this level.")
    return [
        "## Paired comparisons",
        "",
        f"{label}(a) - {label}(b) over seeds run on both sides, {level:.0%} "
        f"interval, two-sided {name}. The p-values are Holm-adjusted within each "
        "family (`family`: the generative priors; the recon ceiling apart) "
        "(`p_holm`); with few seeds a test has little power, so read the intervals "
        "first. `resolvable`: the power of the design, the smallest true difference "
        f"a paired t test at this level finds with {POWER:.0%} probability at this "
        "pair count and the observed spread of the differences (a difference well "
        f"below it is not evidence of no effect).{floor}",
        "",
        _markdown(shown),
        "",
    ]


def _paired_cell(row, level: float) -> str:
    """A difference and its interval at the digits its width needs, starred where the
    Holm-adjusted p-value is below 1 - level."""
    if row["pairs"] < 2 or pd.isna(row["ci_low"]):
        if pd.isna(row["difference"]):
            return "–"
        return f"{row['difference']:.3g} (1 pair)"
    star = " *" if row["p_holm"] < 1 - level else ""
    return tables.interval_text(row["difference"], row["ci_low"], row["ci_high"]) + star


def _other_comparison_lines(results, keys, test, level, metric, priors,
                            out: Path) -> list[str]:  # fmt: skip
    """The same paired comparisons on every other metric the sweeps measured (each
    metric its own Holm family, the generative priors only), in one table: what a
    training-set choice does to fidelity (precision, density) and to diversity
    (recall, coverage) beside the primary metric. All in `comparisons_by_metric.csv`."""
    measured = [m for m in tables.METRICS if m in results and results[m].notna().any()]
    frames = []
    generated = results[results["prior"].isin(tables.generative(priors))]
    for name in measured:
        scaled = tables.in_printed_units(generated, name)
        frames.append(tables.comparisons(scaled, keys, test, level, name))
    frames = [f for f in frames if len(f)]
    if not frames:
        return []
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(out / "comparisons_by_metric.csv", index=False)
    others = [m for m in measured if m != metric]
    if not others:
        return []
    table["cell"] = [_paired_cell(row, level) for _, row in table.iterrows()]
    wide = table[table["metric"].isin(others)].pivot_table(
        index=["label", "prior"], columns="metric", values="cell", aggfunc="first",
        sort=False)  # fmt: skip
    wide = wide[[m for m in others if m in wide.columns]].reset_index()
    wide.columns = ["comparison", "prior",
                    *(tables.METRICS[m].label for m in wide.columns[2:])]  # fmt: skip
    return [
        "## Paired comparisons on the other metrics",
        "",
        f"The same pairs (a - b over seeds run on both sides, {level:.0%} interval; "
        f"the generative priors) on every other metric the sweeps measured: "
        "precision and density say how many samples look like real images "
        "(fidelity), recall and coverage how much of the real images the samples "
        "reach (diversity). Each metric is its own Holm family; `*`: its adjusted "
        f"p-value is below {1 - level:.2g}. All of it, with `resolvable`: "
        "`comparisons_by_metric.csv`.",
        "",
        _markdown(wide),
        "",
    ]


def _sample_lines(sweeps: list[Sweep], results: pd.DataFrame, out: Path,
                  metric: str = "fid") -> list[str]:  # fmt: skip
    """The best and the worst generative trial by the primary metric."""
    generated = results[results["prior"] != tables.CEILING]
    usable = tables._usable(generated, metric)
    if usable.empty:
        return []
    values = usable[metric].astype(float)
    best, worst = values.idxmin(), values.idxmax()
    if not tables.METRICS[metric].lower_is_better:
        best, worst = worst, best
    lines = []
    for label, row in (("best", usable.loc[best]), ("worst", usable.loc[worst])):
        for sweep in sweeps:
            grid = (sweep.folder / SAMPLES_FOLDER / row["trial_id"]
                    / sample_grid_file(row["prior"]))  # fmt: skip
            if grid.is_file():
                shutil.copyfile(grid, out / f"samples_{label}.png")
                lines += [
                    f"{label.capitalize()} trial: `{row['trial_id']}` "
                    f"(n_train {row['n_train']}, {row['criterion']}, seed "
                    f"{row['seed']}, {row['prior']} prior, "
                    f"{tables.METRICS[metric].label} "
                    f"{float(row[metric]) * tables.METRICS[metric].scale:.3g}).",
                    "",
                    f"![{label} samples](samples_{label}.png)",
                    "",
                ]
                copies = grid.parent / copies_file(row["prior"])
                lines += _copies_lines(copies, out / f"memorization_{label}.png", row)
                break
    return (["## Samples", "", *lines]) if lines else []


def _copies_lines(grid: Path, copy: Path, row) -> list[str]:
    """A trial's memorization grid (its samples closest to one training image, above
    those images), when the sweep measured memorization."""
    if not grid.is_file():
        return []
    shutil.copyfile(grid, copy)
    rate = row.get("memorization")
    told = "" if rate is None or pd.isna(rate) else f" (share of copies {rate:.3g})"
    return [
        f"Its memorization grid{told}: the {row['prior']} samples closest to one of "
        "the trial's training images (nearest over second-nearest distance in "
        "Inception space, lowest first), each above that image.",
        "",
        f"![memorization]({copy.name})",
        "",
    ]


def analyse_repetitions(sweeps: list[Sweep], out: Path) -> list[str]:
    """E1 (fid_repeated) and E2 (fid_scrambled) sweeps: mean and variance per x."""
    lines = []
    for kind, x, name, title, xlabel in (
        ("fid_repeated", "size", "e1", "E1: FID vs diversity", "distinct images n"),
        ("fid_scrambled", "tiles", "e2", "E2: FID vs scrambling", "tiles k"),
    ):
        frames = [s.results for s in sweeps if s.grid.kind == kind]
        if not frames:
            continue
        raw = pd.concat(frames, ignore_index=True)
        raw = raw[(raw["status"] == "ok") & raw["fid"].notna()]
        if raw.empty:
            continue
        table = summarise(raw.rename(columns={"fid_samples": "sample_count"}), x)
        table.to_csv(out / f"{name}.csv", index=False)
        figures.repetition_curve(table, x, title, xlabel).savefig(
            out / f"{name}.png", dpi=120, bbox_inches="tight"
        )
        shown = table.drop(columns=["fid_values"])
        lines += [f"## {title}", "", _markdown(shown), "", f"![{name}]({name}.png)", ""]
    return lines


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if not 0 < args.level < 1:
        raise InputError(f"--level must be between 0 and 1, got {args.level}")
    for folder in args.folders:  # before --out's default is made from the first
        if not Path(folder).is_dir():
            raise InputError(f"{folder}: no such folder (a sweep folder is wanted)")
    if len({Path(f).resolve() for f in args.folders}) < len(args.folders):
        raise InputError("the same sweep folder is given twice")
    out = Path(args.out) if args.out else Path(args.folders[0]) / "report"
    report_folder(out, f"--out {out}", "report.md", inputs=args.folders)
    started = time.time()
    sweeps = load_sweeps(args.folders)
    kinds = {s.grid.kind for s in sweeps}
    if "vae" in kinds and len(kinds) > 1:
        raise InputError(
            "cannot analyse a vae sweep together with E1/E2 sweeps: "
            "give them in separate calls"
        )
    with replaced_dir(out) as staged:
        lines = ["# Sweep analysis", "", *_status_lines(sweeps), ""]
        if kinds == {"vae"}:
            lines += analyse_vae(sweeps, staged, args.test, args.level, args.metric)
        else:
            lines += analyse_repetitions(sweeps, staged)
        command = (
            " ".join(["python -m experiments.analysis", *sys.argv[1:]])
            if argv is None
            else " ".join(["python -m experiments.analysis", *argv])
        )
        lines += [
            "---",
            "",
            f"Written by `{command}` in {time.time() - started:.1f} s.",
        ]
        (staged / REPORT).write_text("\n".join(lines) + "\n")
        write_html(staged, "\n".join(lines) + "\n")  # the same, one file to open
    print(f"report: {out / REPORT}, {out / HTML_REPORT}")


if __name__ == "__main__":
    run_cli(main)
