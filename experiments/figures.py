"""The analysis report's figures (matplotlib's object API: no global state)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.tables import FULL_SET

CRITERION_COLOURS = {
    "random": "C0",
    "lowest_recon": "C1",
    "highest_recon": "C4",
    "lowest_mahalanobis": "C2",
    "highest_mahalanobis": "C5",
    "class_balanced": "C3",
    FULL_SET: "black",
}


def _colour(criterion: str) -> str:
    return CRITERION_COLOURS.get(criterion, "C7")


def fid_against_n_train(long: pd.DataFrame, priors: list[str]) -> Figure:
    """One panel per prior: FID mean against n_train, a line per criterion with its
    95% band; the full set (every criterion's end point) in black."""
    figure = Figure(figsize=(4.2 * len(priors), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(priors), sharey=False))
    full = long[long["criterion"] == FULL_SET]
    for axis, prior in zip(axes, priors, strict=True):
        cells = long[(long["prior"] == prior) & (long["seeds"] > 0)]
        end = full[(full["prior"] == prior) & (full["seeds"] > 0)]
        for criterion, line in cells.groupby("criterion", sort=True):
            if criterion == FULL_SET:
                continue
            line = pd.concat([line, end]).sort_values("n_train")
            colour = _colour(criterion)
            axis.plot(
                line["n_train"], line["fid_mean"], "o-", color=colour, label=criterion
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
                end["fid_mean"],
                yerr=[
                    end["fid_mean"] - end["ci_low"],
                    end["ci_high"] - end["fid_mean"],
                ],
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
        axis.set_ylabel("FID (mean, 95% CI over seeds)")
        axis.set_title(f"{prior} prior")
        axis.grid(True, which="both", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # nothing finished yet: no lines
        axes[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def learning_curves(history: pd.DataFrame) -> Figure:
    """Loss and intermediate FID per epoch, one line per trial coloured by criterion
    (dashed: the smaller training sets); the stage-2 loss when present."""
    stage1 = history[history["phase"] == "stage1"]
    stage2 = history[history["phase"] == "stage2"]
    panels = [("loss_mse", stage1, "stage-1 per-pixel MSE", True)]
    if "fid_intermediate" in stage1 and stage1["fid_intermediate"].notna().any():
        panels.append(
            ("fid_intermediate", stage1, "intermediate FID (Gaussian prior)", False)
        )
    if len(stage2):
        panels.append(("loss_mse", stage2, "stage-2 MSE per coordinate", True))
    figure = Figure(figsize=(4.4 * len(panels), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    largest = history["n_train"].max()
    for axis, (column, frame, label, log) in zip(axes, panels, strict=True):
        for (criterion, n_train, _), trial in frame.groupby(
            ["criterion", "n_train", "trial_id"], sort=True
        ):
            points = trial.dropna(subset=[column])
            axis.plot(
                points["epoch"],
                points[column],
                color=_colour(criterion),
                linestyle="-" if n_train == largest else "--",
                linewidth=0.9,
                marker="." if column == "fid_intermediate" else None,
                alpha=0.8,
            )
        axis.set_xlabel("epoch")
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


def repetition_curve(table: pd.DataFrame, x: str, title: str, xlabel: str) -> Figure:
    """E1 (x = size) or E2 (x = tiles): FID mean with one sd against x."""
    from experiments.fid_commands import plot_fid_curve  # noqa: PLC0415 (loads torch)

    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    plot_fid_curve(
        axis, table, x, xlabel=xlabel, title=title, log_base=2 if x == "tiles" else 10
    )
    figure.tight_layout()
    return figure
