"""The early-stopping ablation (E4): what a scheduler saves, and what it costs in the
quality of the final ranking.

    python -m experiments.early_stopping RUN_DIR... [--replay] [--out DIR]
        [--prior gaussian] [--metric fid|kid|fid_inf] [--top-k 3] [--grace 5,10]
        [--reduction 2,3,4]

RUN_DIR... are sweeps of one grid under different schedulers; the one with scheduler
`none` is the exhaustive run every other is measured against. For each run: trials
run to the end, compute hours, the best final score it found (`--metric` with
`--prior`; KID x 1000 as the analysis prints it) and its regret against the
exhaustive best, Kendall's tau of the final ranking against the exhaustive one (among
trials finished in both) and the top-k overlap (the share of the exhaustive top k
that the run also ranks in its top k).

`--replay` also replays ASHA and the median rule offline on the exhaustive run's
history (`experiments.replay`) for every grace period and reduction factor given (the
schedulers act on the intermediate FID the trials reported, as in the live run; the
ranking they are judged on is `--metric`'s), and checks the replay against each live
run: the trials it stopped and the epochs it stopped them at must agree, or the
report says where and why not.

Writes `early_stopping.md`, `early_stopping.csv`, `replay_check.csv` and
`early_stopping.png` (compute hours against ranking quality) into `--out` (default:
`<exhaustive RUN_DIR>/early_stopping`), whole or not at all,
replacing an earlier report: an existing `--out` must be empty or hold
`early_stopping.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from experiments.analysis import _markdown
from experiments.replay import REPLAYABLE, replay
from experiments.significance import kendall_tau, regret, top_k_overlap
from experiments.tables import METRICS
from sweep.budget import budget_end, budget_unit, in_units
from sweep.folder import TIMINGS_FILE
from sweep.reader import Sweep, load_sweeps
from vae_sweep.checks import at_least, distinct, positive_list, report_folder
from vae_sweep.cli import Parser, float_list, int_list, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import replaced_dir

# the final scores a ranking can use: lower is better, one number per model
RANKING_METRICS = ("fid", "kid", "fid_inf")


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.early_stopping", __doc__)
    parser.add_argument(
        "folders",
        type=text,
        nargs="+",
        metavar="RUN_DIR",
        help="sweep folders: one exhaustive run (scheduler none), and any runs of "
        "the same grid under a scheduler",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="replay ASHA and the median rule on the exhaustive run",
    )
    parser.add_argument(
        "--out",
        type=text,
        default=None,
        help="report folder (default: <exhaustive RUN_DIR>/early_stopping)",
    )
    parser.add_argument(
        "--prior",
        type=text,
        default=None,
        help="the prior whose final score ranks the trials (default: the grid's first)",
    )
    parser.add_argument(
        "--metric",
        choices=RANKING_METRICS,
        default="fid",
        help="the final score that ranks the trials (the analysis's primary metric)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        help="size of the top set compared",
    )
    parser.add_argument(
        "--grace",
        type=int_list,
        default=None,
        help="replayed grace periods (default: the grid's, and twice it)",
    )
    parser.add_argument(
        "--reduction",
        type=float_list,
        default=None,
        help="replayed reduction factors of ASHA, each above 1 (default: 2,3,4)",
    )
    return parser


def axis_key(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """A trial's identity across runs: its axis values (trial ids differ per run)."""
    return frame[axes].astype(str).agg("|".join, axis=1)


def _unit(grid) -> tuple[str, float]:
    """Compute is counted in GPU-hours for GPU trials, else CPU-core-hours."""
    if grid.resources.gpu > 0:
        return "GPU-hours", grid.resources.gpu
    return "CPU-core-hours", grid.resources.cpu


def _hours(sweep: Sweep, trials: pd.DataFrame) -> float:
    """The honest accounting (timings.json: trials, FID replicas, prerequisites)
    where the sweep used GPUs: its total, or where its last run stopped, the total
    its tables recorded; else the trials' own reserved time."""
    unit, share = _unit(sweep.grid)
    timings = sweep.folder / TIMINGS_FILE
    if unit == "GPU-hours" and timings.is_file():
        hours = json.loads(timings.read_text()).get("gpu_hours")
        if hours is not None:  # null: its last run stopped before the tables
            return float(hours)
        # the total as of the tables' last run (every column of a sweep's rows)
        if "sweep_gpu_seconds" in trials and trials["sweep_gpu_seconds"].notna().any():
            return float(trials["sweep_gpu_seconds"].max()) / 3600
    return float(trials["wall_seconds"].sum()) * share / 3600


def _ranking_row(
    label, finals: dict, exhaustive: dict, top_k: int, hours: float, counts: dict
) -> dict:
    best_all = min(exhaustive.values()) if exhaustive else math.nan
    best = min(finals.values()) if finals else math.nan
    common = sorted(set(finals) & set(exhaustive))
    return {
        "run": label,
        **counts,
        "hours": hours,
        "best": best,
        "regret": regret(best, best_all),
        "kendall_tau": kendall_tau(
            [finals[t] for t in common], [exhaustive[t] for t in common]
        ),
        "top_k_overlap": top_k_overlap(finals, exhaustive, top_k),
    }


def _finals(sweep: Sweep, prior: str, axes: list[str],
            metric: str = "fid") -> tuple[dict, pd.DataFrame]:  # fmt: skip
    """Each finished trial's final `metric` with `prior`, in the units the report
    prints (KID x 1000), by its axis values; and the prior's rows of every trial."""
    rows = sweep.results[sweep.results["prior"] == prior].copy()
    rows["key"] = axis_key(rows, axes)
    ok = rows[(rows["status"] == "ok") & rows[metric].notna()]
    scores = ok[metric].astype(float) * METRICS[metric].scale
    return dict(zip(ok["key"], scores, strict=True)), rows


def _check_metric(sweep: Sweep, metric: str, prior: str, exhaustive: bool) -> None:
    """Every run ranks its finished trials by `metric` with `prior`, or one line."""
    results = sweep.results
    finished = results[(results["status"] == "ok") & (results["prior"] == prior)]
    if metric in results and (finished.empty or finished[metric].notna().any()):
        return
    run = "the exhaustive run" if exhaustive else f"{sweep.folder}"
    raise InputError(
        f"--metric {metric}: {run} has no {metric} for the {prior} prior (its "
        f"grid's fid.metrics: {', '.join(sweep.grid.fid.metrics)})"
    )


def _scheduler_label(grid) -> str:
    s = grid.scheduler
    if s.name == "none":
        return "none (exhaustive)"
    if s.name == "median":
        return f"median, grace {s.grace_period}, min samples {s.min_samples_required}"
    return f"{s.name}, grace {s.grace_period}, eta {s.reduction_factor:g}"


def live_rows(sweeps, exhaustive: Sweep, prior, axes, top_k,
              metric: str = "fid") -> list[dict]:  # fmt: skip
    reference, _ = _finals(exhaustive, prior, axes, metric)
    rows = []
    for sweep in sweeps:
        finals, frame = _finals(sweep, prior, axes, metric)
        trials = frame.drop_duplicates("key")
        counts = {
            "kind": "live",
            "trials": len(trials),
            "finished": int((trials["status"] == "ok").sum()),
            "stopped": int((trials["status"] == "stopped").sum()),
        }
        rows.append(
            _ranking_row(
                f"{sweep.name}: {_scheduler_label(sweep.grid)}",
                finals,
                reference,
                top_k,
                _hours(sweep, trials),
                counts,
            )
        )
    return rows


def _stop_cost(exhaustive: Sweep, trials: pd.DataFrame, outcome) -> float:
    """Seconds of the exhaustive run's trials had they stopped where the replay did:
    a stopped trial's time until the report it was stopped at (`outcome.seconds`,
    from the run's clocks, a resume's downtime left out: replay.round_seconds), the
    whole of the others'. Without clocks, a stopped trial's share of its stage-1
    budget. Stops are in the budget's unit: epochs, or steps."""
    end = budget_end(exhaustive.grid)
    total = 0.0
    for trial in trials.itertuples():
        wall = float(trial.wall_seconds)
        stop = outcome.stopped_at.get(trial.trial_id)
        if stop is None:
            total += wall
        elif outcome.timed:
            total += outcome.seconds[trial.trial_id]
        else:
            total += wall * stop / end
    return total


def replay_settings(grid, grace: list[int] | None, reduction: list[float]):
    base = in_units(grid, grid.scheduler.grace_period)
    graces = grace or sorted({base, 2 * base})
    for g in graces:
        for eta in reduction:
            yield {"name": "asha", "grace_period": g, "reduction_factor": eta}
        yield {
            "name": "median",
            "grace_period": g,
            "min_samples_required": grid.scheduler.min_samples_required,
        }


def replay_rows(exhaustive: Sweep, settings, prior, axes, top_k,
                metric: str = "fid") -> list[dict]:  # fmt: skip
    reference, frame = _finals(exhaustive, prior, axes, metric)
    trials = frame.drop_duplicates("trial_id")
    key_of = dict(zip(trials["trial_id"], trials["key"], strict=True))
    _, share = _unit(exhaustive.grid)
    rows = []
    for options in settings:
        outcome = replay_exhaustive(exhaustive, **options)
        stopped = {key_of[t] for t in outcome.stopped_at}
        finals = {k: v for k, v in reference.items() if k not in stopped}
        seconds = _stop_cost(exhaustive, trials, outcome)
        # a trial the exhaustive run did not finish (a partial run's) is finished in
        # no replay: one that the replay leaves alone is counted in neither column
        ended = set(trials.loc[trials["status"] == "ok", "key"])
        counts = {
            "kind": "replay",
            "trials": len(trials),
            "finished": len(ended - stopped),
            "stopped": len(stopped),
        }
        label = _scheduler_label(
            exhaustive.grid.model_copy(
                update={
                    "scheduler": exhaustive.grid.scheduler.model_copy(update=options)
                }
            )
        )
        rows.append(
            _ranking_row(
                f"replay: {label}",
                finals,
                reference,
                top_k,
                seconds * share / 3600,
                counts,
            )
        )
    return rows


def keeping_line(table: pd.DataFrame, top_k: int) -> str:
    """Which replayed setting keeps the exhaustive run's answer (its best trial and
    its top k all run to the end), the cheapest first; or that none does."""
    replays = table[table["kind"] == "replay"]
    if replays.empty:
        return ""
    exhaustive = table[table["run"].str.contains("exhaustive", regex=False)]
    total = float(exhaustive["hours"].iloc[0]) if len(exhaustive) else math.nan
    kept = replays[(replays["top_k_overlap"] >= 1.0) & (replays["regret"] <= 0.0)]
    if kept.empty:
        return (f"No replayed setting keeps the exhaustive top {top_k}: each stops "
                f"at least one of those trials before its end; a longer grace "
                f"period than those replayed is needed.")  # fmt: skip
    cheapest = kept.sort_values("hours").iloc[0]
    share = f" ({cheapest['hours'] / total:.0%} of the exhaustive run's)" if (
        math.isfinite(total) and total > 0) else ""  # fmt: skip
    stopped, trials = int(cheapest["stopped"]), int(cheapest["trials"])
    return (f"Settings that keep the exhaustive top {top_k} and its best trial: "
            f"{len(kept)} of {len(replays)} replayed; the cheapest, "
            f"`{cheapest['run'].removeprefix('replay: ')}`, spends "
            f"{cheapest['hours']:.3g} hours{share} and stops {stopped} of {trials} "
            f"trials.")


def trial_times(trials: pd.DataFrame) -> pd.DataFrame | None:
    """started_at and finished_at of each trial, in Unix seconds, by trial id."""
    if not {"started_at", "finished_at"} <= set(trials.columns):
        return None
    known = trials.dropna(subset=["started_at", "finished_at"])
    return pd.DataFrame({
        "started_at": [t.timestamp() for t in known["started_at"]],
        "finished_at": [t.timestamp() for t in known["finished_at"]],
    }, index=known["trial_id"])  # fmt: skip


def replay_exhaustive(exhaustive: Sweep, *, slots: int | None = None, **options):
    """The replay of the exhaustive run with `slots` trials at once (default: as many
    as it ran at once, measured from its clocks)."""
    return replay(exhaustive.grid, exhaustive.history,
                  times=trial_times(exhaustive.trials),
                  slots=slots or _concurrency(exhaustive), **options)  # fmt: skip


def check_replay(
    exhaustive: Sweep, live: Sweep, axes: list[str], slots: int | None = None
) -> pd.DataFrame:
    """Per trial: where the live run stopped it (or not) and where the replay of the
    exhaustive run with the live run's scheduler settings did (`slots`: trials at
    once, when the caller knows it; else measured from the exhaustive run's clocks,
    which Tune keeps in whole seconds)."""
    options = live.grid.scheduler.model_dump()
    outcome = replay_exhaustive(exhaustive, slots=slots, **options)
    time = budget_unit(exhaustive.grid)
    replayed = exhaustive.trials.assign(key=axis_key(exhaustive.trials, axes))
    replay_stop = {
        k: outcome.stopped_at.get(t)
        for k, t in zip(replayed["key"], replayed["trial_id"], strict=True)
    }
    rows = []
    trials = live.trials.assign(key=axis_key(live.trials, axes))
    for trial in trials.itertuples():
        reached = trial.steps_run if time == "step" else trial.epochs_run
        live_stop = int(reached) if trial.status == "stopped" else None
        again = replay_stop.get(trial.key, "missing")
        rows.append(
            {
                "run": live.name,
                "trial": trial.key,
                "live_stopped_at": live_stop,
                "replay_stopped_at": again,
                "agree": live_stop == again,
            }
        )
    return pd.DataFrame(rows)


def _why(check: pd.DataFrame, live: Sweep) -> str:
    wrong = check[~check["agree"]]
    if wrong.empty:
        stopped = int(check["live_stopped_at"].notna().sum())
        return (
            f"`{live.name}`: the replay stopped the same {stopped} trials at the "
            "same epochs as the live run, and let the same "
            f"{len(check) - stopped} finish."
        )
    slots = _concurrency(live)
    reason = (
        f"the live run ran up to {slots} trials at once; the replay simulates that "
        "from the exhaustive run's clocks, and results that arrived close together "
        "can arrive in the other order (ASHA's cut-offs and the median rule depend "
        "on the results recorded so far)"
        if slots > 1
        else "unexplained: one trial ran at a time"
    )
    return (
        f"`{live.name}`: {len(wrong)} of {len(check)} trials disagree "
        f"({', '.join(wrong['trial'])}); why: {reason}."
    )


# Tune stamps a result with whole seconds, and a trial's start was that stamp minus its
# run time: both ends of a trial's interval may sit up to a second early (trials now
# report their own clock, which sweep.results prefers)
CLOCK_RESOLUTION = pd.Timedelta(seconds=1)


def _concurrency(sweep: Sweep) -> int:
    """The most trials that ran at once, from their start and finish times. With
    Tune's whole-second clocks (sweeps from before trials reported their own), a
    trial that starts less than a second before another ends ran after it."""
    trials = sweep.trials.dropna(subset=["started_at", "finished_at"])
    whole_seconds = all(t == t.floor("s") for t in trials["finished_at"])
    resolution = CLOCK_RESOLUTION if whole_seconds else pd.Timedelta(0)
    moments = sorted(
        [(t + resolution, 1) for t in trials["started_at"]]
        + [(t, -1) for t in trials["finished_at"]]
    )
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    return max(peak, 1)


def plot(table: pd.DataFrame, unit: str, top_k: int, metric: str = "fid") -> Figure:
    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    for kind, marker in (("live", "o"), ("replay", "x")):
        part = table[table["kind"] == kind]
        left.scatter(part["hours"], part["top_k_overlap"], marker=marker, label=kind)
        right.scatter(part["hours"], part["regret"], marker=marker, label=kind)
    left.set_ylabel(f"top-{top_k} overlap with the exhaustive run")
    right.set_ylabel(f"regret: best final {METRICS[metric].label} - exhaustive best")
    for axis in (left, right):
        axis.set_xlabel(unit)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    at_least(args, 1, "top_k")
    positive_list(args, "grace")
    distinct(args, "grace", "reduction")
    if args.reduction is not None and min(args.reduction) <= 1:
        raise InputError(f"--reduction needs numbers above 1, got "
                         f"{','.join(map(str, args.reduction))}")  # fmt: skip
    for name in ("grace", "reduction"):
        if getattr(args, name) is not None and not args.replay:
            raise InputError(f"--{name} sets what --replay replays: add --replay")
    args.reduction = args.reduction or [2.0, 3.0, 4.0]
    sweeps = load_sweeps(args.folders)
    if any(s.grid.kind != "vae" for s in sweeps):
        raise InputError("early stopping compares vae sweeps only")
    exhaustive = [s for s in sweeps if s.grid.scheduler.name == "none"]
    if len(exhaustive) != 1:
        raise InputError(
            f"needs exactly one exhaustive run (scheduler none) among "
            f"the RUN_DIRs, got {len(exhaustive)}"
        )
    exhaustive = exhaustive[0]
    out = Path(args.out) if args.out else exhaustive.folder / "early_stopping"
    report_folder(out, f"--out {out}", "early_stopping.md", inputs=args.folders)
    prior = args.prior or exhaustive.grid.priors[0]
    if prior not in exhaustive.grid.priors:
        raise InputError(
            f"--prior {prior}: not among the grid's priors "
            f"({', '.join(exhaustive.grid.priors)})"
        )
    for sweep in sweeps:
        _check_metric(sweep, args.metric, prior, sweep is exhaustive)
    end, unit = budget_end(exhaustive.grid), budget_unit(exhaustive.grid)
    if args.replay and args.grace and max(args.grace) > end:
        raise InputError(f"--grace {max(args.grace)} is more than the exhaustive "
                         f"run's {end} {unit}s")  # fmt: skip
    if args.replay and (
        exhaustive.history.empty
        or "fid_intermediate" not in exhaustive.history
        or not exhaustive.grid.eval.every
    ):
        raise InputError(
            f"{exhaustive.folder}: --replay needs a history with an "
            "intermediate FID (eval.every > 0)"
        )
    started = time.time()
    axes = sorted(exhaustive.grid.grid)
    unit, _ = _unit(exhaustive.grid)
    table = pd.DataFrame(
        live_rows(sweeps, exhaustive, prior, axes, args.top_k, args.metric)
    )
    checks, lines = [], []
    if args.replay:
        settings = replay_settings(exhaustive.grid, args.grace, args.reduction)
        table = pd.concat(
            [
                table,
                pd.DataFrame(
                    replay_rows(
                        exhaustive, settings, prior, axes, args.top_k, args.metric
                    )
                ),
            ],
            ignore_index=True,
        )
        for live in sweeps:
            if live.grid.scheduler.name in REPLAYABLE:
                check = check_replay(exhaustive, live, axes)
                checks.append(check)
                lines.append(f"- {_why(check, live)}")
            elif live is not exhaustive:
                lines.append(
                    f"- `{live.name}` ({live.grid.scheduler.name}): not "
                    "replayed (HyperBand pauses and resumes trials in step)"
                )
    label = METRICS[args.metric].label
    with replaced_dir(out) as staged:
        table.to_csv(staged / "early_stopping.csv", index=False)
        if checks:
            pd.concat(checks).to_csv(staged / "replay_check.csv", index=False)
        plot(table, unit, args.top_k, args.metric).savefig(
            staged / "early_stopping.png", dpi=120, bbox_inches="tight"
        )
        command = " ".join(
            [
                "python -m experiments.early_stopping",
                *(sys.argv[1:] if argv is None else argv),
            ]
        )
        report = [
            "# Early stopping",
            "",
            f"Exhaustive run: `{exhaustive.name}` ({exhaustive.folder}). Trials are "
            f"ranked by their final {label} with the `{prior}` prior (`best` and "
            f"`regret` in {label}). Compute in {unit}: "
            "the trials' reserved time (GPU sweeps: the sweep's whole accounting, FID "
            "replicas included); for a replay, the exhaustive run's trials cut at the "
            "epoch the replay stopped them. A replay's finished trials keep their "
            "exhaustive final scores, so its Kendall tau is 1 by construction: its "
            "ranking quality is the top-k overlap and the regret.",
            "",
            _markdown(table.drop(columns=[])),
            "",
            *([keeping, ""] if (keeping := keeping_line(table, args.top_k)) else []),
            "![compute against ranking quality](early_stopping.png)",
            "",
        ]
        if lines:
            report += [
                "## Replay against the live runs",
                "",
                *lines,
                "",
                "Per trial: `replay_check.csv`.",
                "",
            ]
        report += [
            "---",
            "",
            f"Written by `{command}` in {time.time() - started:.1f} s.",
        ]
        (staged / "early_stopping.md").write_text("\n".join(report) + "\n")
    print(f"report: {out / 'early_stopping.md'}")


if __name__ == "__main__":
    run_cli(main)
