"""The analysis report's figures (matplotlib's object API: no global state)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from experiments.published_tables import study_table
from experiments.tables import CEILING, FULL_SET

CRITERION_COLOURS = {
    "random": "C0",
    "lowest_recon": "C1",
    "highest_recon": "C4",
    "lowest_mahalanobis": "C2",
    "highest_mahalanobis": "C5",
    "class_balanced": "C3",
    "class_density": "C6",
    "k_center": "C8",
    "knn_density": "C9",
    "lowest_prototype": "navy",
    "highest_prototype": "goldenrod",
    FULL_SET: "black",
}
UNLISTED_COLOUR = "C7"  # grey: a criterion the table does not know


def _colour(criterion: str) -> str:
    return CRITERION_COLOURS.get(criterion, UNLISTED_COLOUR)


def fid_against_n_train(long: pd.DataFrame, priors: list[str], *,
                        metric: str = "fid", label: str = "FID") -> Figure:  # fmt: skip
    """One panel per prior: the metric's mean against n_train, a line per criterion
    with its 95% band; the full set (every criterion's end point) in black. The
    recon ceiling, when present, comes last on a grey ground, titled as what it is."""
    priors = [p for p in priors if p != CEILING] + [p for p in priors if p == CEILING]
    figure = Figure(figsize=(4.2 * len(priors), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(priors), sharey=False))
    full = long[long["criterion"] == FULL_SET]
    mean = f"{metric}_mean"
    for axis, prior in zip(axes, priors, strict=True):
        cells = long[(long["prior"] == prior) & (long["seeds"] > 0)]
        end = full[(full["prior"] == prior) & (full["seeds"] > 0)]
        for criterion, line in cells.groupby("criterion", sort=True):
            if criterion == FULL_SET:
                continue
            line = pd.concat([line, end]).sort_values("n_train")
            colour = _colour(criterion)
            axis.plot(
                line["n_train"], line[mean], "o-", color=colour, label=criterion
            )
            banded = line[np.isfinite(line["ci_low"])]
            axis.fill_between(
                banded["n_train"],
                banded["ci_low"],
                banded["ci_high"],
                color=colour,
                alpha=0.15,
            )
        if len(end):
            axis.errorbar(
                end["n_train"],
                end[mean],
                yerr=[end[mean] - end["ci_low"], end["ci_high"] - end[mean]],
                fmt="s",
                color="black",
                capsize=3,
                label="full set",
            )
        axis.set_xscale("log")
        sizes = sorted(set(long["n_train"]))
        axis.set_xticks(sizes, [f"{int(n):,}" for n in sizes])
        axis.minorticks_off()
        axis.set_xlabel("training images (n_train)")
        axis.set_ylabel(f"{label} (mean, 95% CI over seeds)")
        if prior == CEILING:
            axis.set_facecolor("0.94")
            axis.set_title("recon: the decoder's ceiling\n(x_test reconstructions, "
                           "not a prior)", fontsize=9)  # fmt: skip
        else:
            axis.set_title(f"{prior} prior")
        axis.grid(True, which="both", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # nothing finished yet: no lines
        axes[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def learning_curves(history: pd.DataFrame) -> Figure:
    """Per trial, coloured by criterion (dashed: the smaller training sets), against
    optimizer steps (equal compute lines up across training-set sizes; epochs for
    histories written before steps were recorded): the stage-1 per-pixel MSE, its
    decoder scale gamma, the intermediate FID and the stage-2 loss when present."""
    stage1 = history[history["phase"] == "stage1"]
    stage2 = history[history["phase"] == "stage2"]
    panels = [("loss_mse", stage1, "stage-1 per-pixel MSE", True)]
    if "gamma" in stage1 and stage1["gamma"].notna().any():
        panels.append(("gamma", stage1, "stage-1 decoder scale gamma", True))
    if "fid_intermediate" in stage1 and stage1["fid_intermediate"].notna().any():
        panels.append(
            ("fid_intermediate", stage1, "intermediate FID (Gaussian prior)", False)
        )
    if len(stage2):
        panels.append(("loss_mse", stage2, "stage-2 MSE per coordinate", True))
    figure = Figure(figsize=(4.4 * len(panels), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    largest = history["n_train"].max()
    steps = "step" in history and history["step"].notna().all()
    x = "step" if steps else "epoch"
    for axis, (column, frame, label, log) in zip(axes, panels, strict=True):
        for (criterion, n_train, _), trial in frame.groupby(
            ["criterion", "n_train", "trial_id"], sort=True
        ):
            points = trial.dropna(subset=[column])
            axis.plot(
                points[x],
                points[column],
                color=_colour(criterion),
                linestyle="-" if n_train == largest else "--",
                linewidth=0.9,
                marker="." if column == "fid_intermediate" else None,
                alpha=0.8,
            )
        axis.set_xlabel("optimizer step" if steps else "epoch")
        axis.set_ylabel(label)
        if log:
            axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
    handles = [
        axes[0].plot([], [], color=_colour(c), label=c)[0]
        for c in sorted(history["criterion"].unique())
    ]
    axes[0].legend(
        handles=handles,
        fontsize=8,
        title=f"dashed: n_train < {int(largest)}",
        title_fontsize=7,
    )
    figure.tight_layout()
    return figure


def fidelity_diversity(fidelity: pd.DataFrame, diversity: pd.DataFrame,
                       priors: list[str], names: tuple[str, str]) -> Figure:
    """A panel per prior: each training-set choice at (diversity, fidelity), the mean
    over seeds with its 95% interval on both axes; marker size grows with n_train.
    `names`: the two metrics (precision and recall, or density and coverage), whose
    long tables (`tables.fid_table`) are given."""
    fidelity_name, diversity_name = names
    figure = Figure(figsize=(4.2 * len(priors), 3.9))
    axes = np.atleast_1d(figure.subplots(1, len(priors), sharex=True, sharey=True))
    keys = ["n_train", "criterion", "prior"]
    both = fidelity.merge(diversity, on=keys, suffixes=("_f", "_d"))
    sizes = sorted(set(both["n_train"]))
    for axis, prior in zip(axes, priors, strict=True):
        cells = both[(both["prior"] == prior) & (both["seeds_f"] > 0)]
        for _, row in cells.iterrows():
            x, y = row[f"{diversity_name}_mean"], row[f"{fidelity_name}_mean"]
            axis.errorbar(
                x, y,
                xerr=[[x - row["ci_low_d"]], [row["ci_high_d"] - x]],
                yerr=[[y - row["ci_low_f"]], [row["ci_high_f"] - y]],
                fmt="o", color=_colour(row["criterion"]), capsize=2,
                markersize=4 + 3 * sizes.index(row["n_train"]),
                label=f"{row['criterion']}, n={int(row['n_train']):,}",
            )  # fmt: skip
        axis.set_xlabel(f"{diversity_name} (diversity)")
        axis.set_ylabel(f"{fidelity_name} (fidelity)")
        axis.set_title(f"{prior} prior")
        axis.grid(True, alpha=0.3)
        # recalls near 1e-4 would print as -0.0006-0.0004... run together
        axis.xaxis.set_major_locator(MaxNLocator(4))
        axis.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def class_makeup(table: pd.DataFrame, keys: list[str]) -> Figure:
    """A stacked bar per training-set choice: each class's mean share of its subset."""
    classes = [c for c in table.columns if c not in (*keys, "trials")]
    labels = [", ".join(str(row[k]) for k in keys) for _, row in table.iterrows()]
    figure = Figure(figsize=(max(5.0, 0.6 * len(table) + 2.5), 4.0))
    axis = figure.subplots()
    bottom = np.zeros(len(table))
    colours = [f"C{i % 10}" for i in range(len(classes))]
    for name, colour in zip(classes, colours, strict=True):
        share = table[name].to_numpy(float)
        axis.bar(labels, share, bottom=bottom, color=colour, label=name)
        bottom += share
    axis.axhline(100 / max(len(classes), 1), color="0.3", linewidth=0.8,
                 linestyle=":")  # fmt: skip
    axis.set_ylabel("share of the subset (%)")
    axis.set_title("class make-up of each training-set choice")
    axis.tick_params(axis="x", rotation=60, labelsize=7)
    axis.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    figure.tight_layout()
    return figure


def repetition_curve(table: pd.DataFrame, x: str, title: str, xlabel: str) -> Figure:
    """E1 (x = size) or E2 (x = tiles): FID mean with one sd against x, beside the
    study's own published values."""
    from experiments.fid_commands import plot_fid_curve  # noqa: PLC0415 (loads torch)

    published, label = study_table(x)
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    plot_fid_curve(axis, table, x, xlabel=xlabel, title=title,
                   log_base=2 if x == "tiles" else 10, published=published,
                   published_label=label)  # fmt: skip
    figure.tight_layout()
    return figure
