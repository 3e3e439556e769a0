"""The analysis report's tables, from `results.parquet` rows of one or more sweeps.

Only trials that finished (`status` ok) with a finite FID enter a mean; stopped,
diverged, errored and unfinished trials are counted in their own columns.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.significance import (
    holm,
    paired_difference,
    resolvable_difference,
    t_interval,
)

OUTCOMES = ("stopped", "diverged", "error", "unfinished")
FULL_SET = "all"  # the criterion of a trial that trained on the whole pool
# `recon` decodes the encoder means of x_test images, the FID reference's own images:
# the decoder's ceiling (RAE's REC column), not a prior a model generates with
CEILING = "recon"


@dataclass(frozen=True)
class Metric:
    label: str  # as the report writes it
    lower_is_better: bool
    scale: float = 1.0  # printed as value x scale


# what the report can tabulate and pair on (--metric), each a results column
METRICS = {
    "fid": Metric("FID", True),
    "kid": Metric("KID x 1000", True, 1000.0),
    "fid_inf": Metric("FID-infinity", True),
    "precision": Metric("precision", False),
    "recall": Metric("recall", False),
    "density": Metric("density", False),
    "coverage": Metric("coverage", False),
    "memorization": Metric("memorization (share of copies)", True),
}


def generative(priors) -> list[str]:
    return [p for p in priors if p != CEILING]


def row_keys(results: pd.DataFrame, axes: set[str]) -> list[str]:
    """What defines a training-set choice: n_train, criterion, and any other axis
    the sweeps varied (the seed is the replicate, not a key)."""
    extra = sorted(a for a in axes - {"n_train", "criterion", "seed"} if a in results)
    return ["n_train", "criterion", *extra]


def _usable(frame: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    values = frame[metric].astype(float)
    return frame[(frame["status"] == "ok") & np.isfinite(values)]


def _trials_by_outcome(group: pd.DataFrame) -> dict:
    trials = group.drop_duplicates("trial_id")
    return {outcome: int((trials["status"] == outcome).sum()) for outcome in OUTCOMES}


def fid_table(results: pd.DataFrame, keys: list[str], level: float = 0.95,
              metric: str = "fid"):  # fmt: skip
    """Long form: one row per (training-set choice, prior) with the mean of the
    metric (FID, or KID), its Student-t interval over seeds, the seeds and samples it
    rests on, and the trials that ended otherwise."""
    rows = []
    for values, group in results.groupby(keys + ["prior"], sort=True, dropna=False):
        usable = _usable(group, metric)
        interval = t_interval(usable[metric].astype(float), level)
        samples = sorted({int(s) for s in usable["fid_samples"].dropna()})
        rows.append(
            {
                **dict(zip(keys + ["prior"], values, strict=True)),
                f"{metric}_mean": interval.mean,
                "ci_low": interval.low,
                "ci_high": interval.high,
                "seeds": interval.n,
                "samples": samples[0] if len(samples) == 1 else (samples or None),
                **_trials_by_outcome(group),
            }
        )
    return pd.DataFrame(rows)


def decimals(spread: float) -> int:
    """Decimals that show a value to about two significant digits of `spread` (its
    interval's width, or the value itself), two at least: FIDs keep their two,
    a precision of 0.011 [-0.021, 0.043] is not rounded to 0.01 [-0.02, 0.04]."""
    if not math.isfinite(spread) or spread <= 0:
        return 2
    return min(6, max(2, 1 - math.floor(math.log10(spread))))


def interval_text(value: float, low: float, high: float,
                  places: int | None = None) -> str:  # fmt: skip
    """`value [low, high]` at `places` decimals (default: what the interval's width
    needs, `decimals`)."""
    places = decimals(high - low) if places is None else places
    return f"{value:.{places}f} [{low:.{places}f}, {high:.{places}f}]"


def in_printed_units(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`frame` with `metric` as the report prints it (value x its scale: KID x
    1000)."""
    return frame.assign(**{metric: frame[metric].astype(float) * METRICS[metric].scale})


def _cell(row, metric: str) -> str:
    mean = getattr(row, f"{metric}_mean")
    if row.seeds == 0:
        return "–"
    if row.seeds == 1:
        d = decimals(abs(mean))
        return f"{mean:.{d}f} (1 seed)"
    width = row.ci_high - row.ci_low
    d = decimals(width if width > 0 else abs(mean))  # equal seeds: the value's own
    return f"{interval_text(mean, row.ci_low, row.ci_high, d)} n={row.seeds}"


def wide_fid_table(long: pd.DataFrame, keys: list[str], priors: list[str],
                   metric: str = "fid"):  # fmt: skip
    """Laid out like the study's Table 5: a row per training-set choice, a column per
    prior; other outcomes in one column."""
    rows = []
    for values, group in long.groupby(keys, sort=True, dropna=False):
        by_prior = {r.prior: r for r in group.itertuples()}
        other = {o: int(group[o].max()) for o in OUTCOMES}
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                **{
                    p: _cell(by_prior[p], metric) if p in by_prior else "–"
                    for p in priors
                },
                "not averaged": ", ".join(f"{n} {o}" for o, n in other.items() if n)
                or "",
            }
        )
    return pd.DataFrame(rows)


DIAGNOSTICS = {
    "stage 1 loss (per-pixel MSE)": ("loss_mse", None),
    "stage 1 variance law": ("variance_law", None),
    "stage 1 inactive dims": ("inactive_dims", None),
    "stage 1 gamma": ("gamma", None),
    "stage 1 steps": ("steps_run", None),
    "stage 2 loss (per coordinate)": ("stage2_loss_mse", "two_stage"),
    "stage 2 variance law": ("stage2_variance_law", "two_stage"),
    "stage 2 inactive dims": ("stage2_inactive_dims", "two_stage"),
    "stage 2 gamma_z": ("stage2_gamma", "two_stage"),
    "stage 2 steps": ("stage2_steps_run", "two_stage"),
}
# shares of trials whose loss was flat at the end (vae.diagnostics.loss_plateau)
CONVERGED = {"stage 1 converged": ("converged", None),
             "stage 2 converged": ("stage2_converged", "two_stage")}  # fmt: skip


def diagnostics_table(results: pd.DataFrame, keys: list[str], level: float = 0.95):
    """Stage-1 and stage-2 loss, variance law and inactive dimensions per
    training-set choice: mean and interval over the finished trials."""
    rows = []
    trials = results[results["status"] == "ok"]
    for values, group in trials.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, values, strict=True))
        for label, (column, prior) in DIAGNOSTICS.items():
            if column not in group:
                continue
            source = group[group["prior"] == prior] if prior else group
            source = source.drop_duplicates("trial_id")[column].astype(float)
            interval = t_interval(source.dropna(), level)
            row[label] = interval.mean
            row[f"{label} ci"] = (interval.low, interval.high)
        for label, (column, prior) in CONVERGED.items():
            if column in group:
                source = group[group["prior"] == prior] if prior else group
                flags = source.drop_duplicates("trial_id")[column].dropna()
                if len(flags):
                    row[label] = f"{int(flags.astype(bool).sum())}/{len(flags)}"
        if "gmm_converged" in group:
            gmm = group[group["prior"] == "gmm"].drop_duplicates("trial_id")
            if len(gmm):
                row["gmm converged"] = f"{int(gmm['gmm_converged'].sum())}/{len(gmm)}"
        rows.append(row)
    return pd.DataFrame(rows)


def _pairs(a: pd.DataFrame, b: pd.DataFrame, on: list[str], metric: str):
    a, b = _usable(a, metric), _usable(b, metric)
    return a[on + [metric]].merge(b[on + [metric]], on=on, suffixes=("_a", "_b"))


def comparisons(
    results: pd.DataFrame,
    keys: list[str],
    test: str = "t",
    level: float = 0.95,
    metric: str = "fid",
) -> pd.DataFrame:
    """Paired differences of `metric` over seeds, with Holm-adjusted p-values over
    the whole family: (1) each criterion against `random` at the same n_train; (2)
    each smaller n_train against the full set. a - b: for FID, negative means a is
    better. Callers keep the generative priors and the recon ceiling apart (one
    family each)."""
    extra = [k for k in keys if k not in ("n_train", "criterion")]
    pair_on = ["seed", "prior", *extra]
    rows = []
    ok = results[results["status"].notna()]
    full_n = ok.loc[ok["criterion"] == FULL_SET, "n_train"]
    full = ok[ok["criterion"] == FULL_SET]
    for n_train, at_n in ok.groupby("n_train", sort=True):
        random = at_n[at_n["criterion"] == "random"]
        rows += _against(at_n, random, "criterion vs random", "random", n_train,
                         pair_on, test, level, metric,
                         skip=("random", FULL_SET))  # fmt: skip
        if len(full_n) and n_train not in set(full_n):
            rows += _against(at_n, full, "n_train vs full set", "full set", n_train,
                             pair_on, test, level, metric)  # fmt: skip
    table = pd.DataFrame(rows)
    if not table.empty:
        table["p_holm"] = holm(table["p_value"])
    return table


def _against(at_n, baseline, family, name, n_train, pair_on, test, level, metric,
             skip=()) -> list[dict]:  # fmt: skip
    """One comparison per (criterion, prior) at this n_train against `baseline`."""
    return [
        _comparison(
            family,
            n_train,
            criterion,
            prior,
            f"n={n_train} {criterion} vs {name}",
            _pairs(cell, baseline[baseline["prior"] == prior], pair_on, metric),
            test,
            level,
            metric,
        )  # fmt: skip
        for criterion, group in at_n.groupby("criterion", sort=True)
        if criterion not in skip
        for prior, cell in group.groupby("prior", sort=True)
    ]


def _comparison(family, n_train, criterion, prior, label, pairs, test, level,
                metric) -> dict:  # fmt: skip
    a, b = pairs[f"{metric}_a"], pairs[f"{metric}_b"]
    result = paired_difference(a, b, test=test, level=level)
    d = result.difference
    return {
        "comparison": family,
        "n_train": n_train,
        "criterion": criterion,
        "prior": prior,
        "label": label,
        "pairs": d.n,
        "difference": d.mean,
        "ci_low": d.low,
        "ci_high": d.high,
        # the smallest true difference a paired t test finds with 80% power here
        "resolvable": resolvable_difference(np.asarray(a, float) - np.asarray(b, float),
                                            level),  # fmt: skip
        "metric": metric,
        "test": test,
        "level": level,
        "p_value": result.p_value,
    }


def class_makeup(results: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per training-set choice, each class's mean share (%) of the chosen subset over
    the trials that recorded their `class_counts` (JSON: class -> images)."""
    if "class_counts" not in results:
        return pd.DataFrame()
    trials = results.drop_duplicates("trial_id")
    trials = trials[trials["class_counts"].notna()]
    rows = []
    for values, group in trials.groupby(keys, sort=True, dropna=False):
        counts = pd.DataFrame([json.loads(c) for c in group["class_counts"]])
        shares = 100 * counts.div(counts.sum(axis=1), axis=0)
        rows.append({**dict(zip(keys, values, strict=True)), "trials": len(group),
                     **shares.mean().to_dict()})
    return pd.DataFrame(rows)


def sampling_error(results: pd.DataFrame, long: pd.DataFrame, keys: list[str],
                   metric: str, scale: float = 1.0) -> pd.DataFrame:  # fmt: skip
    """Per training-set choice and prior: the width of the seed interval (training
    varies) beside the median width of the trials' bootstrap intervals (one model's
    samples vary), in the metric's printed scale."""
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    if low not in results or not results[low].notna().any():
        return pd.DataFrame()
    usable = _usable(results, metric)
    rows = []
    for values, group in usable.groupby(keys + ["prior"], sort=True, dropna=False):
        widths = (group[high] - group[low]).astype(float).dropna() * scale
        seeds = long.set_index(keys + ["prior"]).loc[values]
        rows.append({**dict(zip(keys + ["prior"], values, strict=True)),
                     "seed interval width": seeds["ci_high"] - seeds["ci_low"],
                     "bootstrap width (median)": float(widths.median())
                     if len(widths) else float("nan"),
                     "trials": len(widths)})  # fmt: skip
    return pd.DataFrame(rows)
