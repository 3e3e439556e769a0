"""Replay an early-stopping scheduler's decisions offline, from one exhaustive sweep.

An exhaustive sweep (scheduler `none`) whose history holds the intermediate FID at
every evaluation already holds every result any scheduler would have seen: a
trial's results do not depend on what the others do. The replay re-runs the sweep as
Tune would, in simulated time, and asks the same Ray Tune scheduler classes the sweep
uses (`sweep.schedulers.scheduler`) at every result:

- `slots` trials run at once (default: as many as ran at once in the exhaustive run);
  each result arrives after the time it took in the exhaustive run (its `finished_at`
  clock; without clocks, one unit per epoch or step), a trial's priors take what
  they took; trials are compared at equal time, epochs or (under a step budget)
  optimizer steps, as the live schedulers compare them;
- a free slot takes the next pending trial in the order the exhaustive run started
  them, else the first paused one (Tune's FIFO choice);
- STOP ends a trial (its slot frees); PAUSE (the median rule, when it has too few
  samples and trials are pending) parks it until a slot frees with nothing pending;
- a trial that reaches its end sends its final report (`on_trial_result`, then
  `on_trial_complete`), as the sweep's trainable does.

What it cannot redo: timing noise (with several slots, two results that arrived close
together in a live run may arrive in the other order here) and Tune's own overheads
(start-up, pause and restore). HyperBand's synchronous brackets are not replayed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweep.budget import budget_unit
from sweep.config import GridConfig
from sweep.schedulers import METRIC, scheduler

REPLAYABLE = ("asha", "median")


@dataclass(eq=False)
class _Trial:
    """Tune's Trial as a scheduler reads it: an id, a status, hashable by identity."""

    trial_id: str
    results: list[dict]  # what it reports, in order, each with its duration
    final_seconds: float  # its priors and final FIDs, after the last result
    status: str = "PENDING"
    next: int = 0  # the next result it will report
    timed: bool = False  # durations in seconds from its clocks, else in epochs (steps)


@dataclass
class _Controller:
    """What the schedulers ask Tune's controller: the live trials."""

    trials: list[_Trial] = field(default_factory=list)

    def get_live_trials(self) -> list[_Trial]:
        return [t for t in self.trials if t.status in ("PENDING", "RUNNING", "PAUSED")]


def reported_results(history: pd.DataFrame, every: int,
                     time: str = "epoch") -> pd.DataFrame:  # fmt: skip
    """The results a trial reported to Tune, per trial: with evaluations every
    `every` units of `time` (epochs, or steps under a step budget), at those and at
    the trial's last round, each carrying the latest intermediate FID so far (what
    `sweep.trainable.Stage1Reporter` sends)."""
    stage1 = history[history["phase"] == "stage1"].sort_values(["trial_id", "epoch"])
    frames = []
    for _, trial in stage1.groupby("trial_id", sort=False):
        trial = trial.assign(**{METRIC: trial[METRIC].ffill()})
        heard = (
            (trial[time] % every == 0) | (trial["epoch"] == trial["epoch"].max())
            if every
            else np.ones(len(trial), bool)
        )
        frames.append(trial[heard & trial[METRIC].notna()])
    return pd.concat(frames, ignore_index=True) if frames else stage1.iloc[:0]


def _timed(frame: pd.DataFrame) -> bool:
    return "finished_at" in frame and bool((frame["finished_at"].fillna(0) > 0).all())


# a round that took this many times its stage's median round, and at least
# RESUME_SECONDS more, spans a stop and a resume (a stop, a new driver and Ray's
# start take that long; a round slowed by a busy machine does not: the study's
# rounds tripled to 66 s under a test run beside it). A shorter stop shows as a
# first round at or below 0 s, which round_seconds also mends
RESUME_GAP = 3.0
RESUME_SECONDS = 120.0


def _without_gaps(intervals: np.ndarray) -> tuple[np.ndarray, float]:
    """Round intervals with each resume gap set to the median round, and the time
    taken out."""
    if not len(intervals):
        return intervals, 0.0
    median = float(np.median(intervals))
    gap = (intervals > RESUME_GAP * median) & (intervals > median + RESUME_SECONDS)
    return np.where(gap, median, intervals), float((intervals - median)[gap].sum())


def round_seconds(stage1: np.ndarray, stage2: np.ndarray, start: float,
                  end: float) -> tuple[np.ndarray, float, float]:  # fmt: skip
    """A trial's compute seconds per stage-1 round, its final phase's (stage 2, the
    priors, the scores) and when it started, from its rounds' clocks (`stage1`,
    `stage2`: each round's finished_at), its recorded start and its end.

    The recorded start is `end` less the trial's run time (Tune's time_total_s, which
    runs on across a resume without the downtime): without a resume the clocks'
    differences are the answer. A stop and `--resume` put the downtime into one
    interval between rounds and move the recorded start that much late, out of the
    first round. So an interval after the first round (in either stage) of more than
    RESUME_GAP times its stage's median round, and RESUME_SECONDS over it, counts as
    the median, and what it had over goes back to the first round. A first round
    still at or below 0 s (a shorter downtime) takes the median round, and what that
    adds comes out of the stage-1 round furthest over the median, where it fits;
    the final phase is what is left of the run time (downtime after the last round
    shows nowhere else)."""
    first = stage1[0] - start
    rounds, excess = _without_gaps(np.diff(stage1))
    if len(stage2):  # the first stage-2 interval starts at stage 1's last round
        excess += _without_gaps(np.diff(np.concatenate([[stage1[-1]], stage2])))[1]
    first += excess
    if first <= 0 and len(rounds):
        median = float(np.median(rounds))
        missing, longest = median - first, int(np.argmax(rounds))
        if rounds[longest] - median >= missing:
            rounds[longest] -= missing
        first = median
    steps = np.concatenate([[max(first, 0.0)], rounds])
    final = max(0.0, (end - start) - steps.sum())
    return steps, final, stage1[0] - steps[0]


def build_trials(history: pd.DataFrame, grid: GridConfig,
                 times: pd.DataFrame | None = None) -> list[_Trial]:  # fmt: skip
    """The exhaustive run's trials, in the order it started them, with what each
    reported and how long each report took (`round_seconds`, summed over the rounds
    since the last report). `times`: the trials' `started_at` and `finished_at` (Unix
    seconds, indexed by trial id), when known."""
    time = budget_unit(grid)
    reported = reported_results(history, grid.eval.every, time)
    timed = _timed(reported) and times is not None
    rounds = dict(tuple(history.groupby("trial_id", sort=False))) if timed else {}
    trials = []
    for trial_id, rows in reported.groupby("trial_id", sort=False):
        rows = rows.sort_values("epoch")
        clocked = timed and trial_id in times.index
        if clocked:
            start, end = times.loc[trial_id, ["started_at", "finished_at"]]
            own = rounds[trial_id].sort_values("epoch")
            one = own[own["phase"] == "stage1"]
            two = own.loc[own["phase"] == "stage2", "finished_at"].dropna()
            seconds, final, first = round_seconds(
                one["finished_at"].to_numpy(float), two.to_numpy(float),
                float(start), float(end))  # fmt: skip
            # seconds until each report: the rounds up to it, less those before
            spent = dict(zip(one["epoch"], np.cumsum(seconds), strict=True))
            upto = np.array([spent[e] for e in rows["epoch"]])
            steps = np.diff(np.concatenate([[0.0], upto]))
        else:  # one unit per epoch (step), priors instant: a synchronous run
            units = rows[time].to_numpy(float)
            steps, final, first = np.diff(np.concatenate([[0.0], units])), 0.0, 0.0
        results = [{"epoch": int(e), time: int(t), METRIC: float(f),
                    "seconds": float(max(s, 0.0))}
                   for e, t, f, s in zip(rows["epoch"], rows[time], rows[METRIC],
                                         steps, strict=True)]  # fmt: skip
        trials.append(
            (first, len(trials), _Trial(trial_id, results, final, timed=clocked))
        )
    # started first runs first; ties (no clocks) in the history's order
    return [t for _, _, t in sorted(trials, key=lambda x: (x[0], x[1]))]


def _step(trial: _Trial) -> float:
    """How long until the trial's next report: a result, or its final one."""
    if trial.next < len(trial.results):
        return trial.results[trial.next]["seconds"]
    return trial.final_seconds


@dataclass
class ReplayOutcome:
    # trial id -> the time (epoch, or step under a step budget) it was stopped at,
    # and the last time the scheduler heard from it
    stopped_at: dict[str, int]
    heard: dict[str, int]
    paused: dict[str, int] = field(default_factory=dict)  # trial id -> pauses
    # trial id -> the seconds it ran in the replay (its results until it stopped,
    # and its final phase if it finished), from the exhaustive run's clocks
    seconds: dict[str, float] = field(default_factory=dict)
    timed: bool = False  # False: no clocks, `seconds` counts epochs (steps)


def replay(grid: GridConfig, history: pd.DataFrame, *, slots: int = 1,
           times: pd.DataFrame | None = None,
           **scheduler_options) -> ReplayOutcome:  # fmt: skip
    """Each trial's fate under the grid's scheduler, `scheduler_options` overriding
    its settings (name, grace_period, reduction_factor, min_samples_required)."""
    options = grid.scheduler.model_copy(update=scheduler_options)
    if options.name not in REPLAYABLE:
        raise ValueError(f"scheduler {options.name!r} cannot be replayed: "
                         f"{', '.join(REPLAYABLE)}")  # fmt: skip
    judge = scheduler(grid.model_copy(update={"scheduler": options}))
    time = budget_unit(grid)
    trials = build_trials(history, grid, times)
    controller = _Controller(trials)
    for trial in trials:
        judge.on_trial_add(controller, trial)
    outcome = ReplayOutcome({}, {}, timed=bool(trials) and all(t.timed for t in trials))
    arrivals: list[tuple[float, int, _Trial]] = []  # (time, tie-break, trial)
    order = {t.trial_id: i for i, t in enumerate(trials)}
    now, free = 0.0, slots

    def start_next() -> None:
        nonlocal free
        while free > 0:
            waiting = [t for t in trials if t.status == "PENDING"] or [
                t for t in trials if t.status == "PAUSED"
            ]
            if not waiting:
                return
            trial = waiting[0]
            trial.status, free = "RUNNING", free - 1
            heapq.heappush(arrivals, (now + _step(trial), order[trial.trial_id], trial))

    start_next()
    while arrivals:
        now, _, trial = heapq.heappop(arrivals)
        outcome.seconds[trial.trial_id] = outcome.seconds.get(
            trial.trial_id, 0.0
        ) + _step(trial)
        if trial.next == len(trial.results):  # its final report, after its priors
            final = {k: v for k, v in trial.results[-1].items() if k != "seconds"}
            judge.on_trial_result(controller, trial, final)
            judge.on_trial_complete(controller, trial, final)
            trial.status, free = "TERMINATED", free + 1
            start_next()
            continue
        result = {k: v for k, v in trial.results[trial.next].items() if k != "seconds"}
        trial.next += 1
        outcome.heard[trial.trial_id] = result[time]
        action = judge.on_trial_result(controller, trial, result)
        if action == "STOP":
            outcome.stopped_at[trial.trial_id] = result[time]
            trial.status, free = "TERMINATED", free + 1
        elif action == "PAUSE":
            outcome.paused[trial.trial_id] = outcome.paused.get(trial.trial_id, 0) + 1
            trial.status, free = "PAUSED", free + 1
        else:
            heapq.heappush(arrivals, (now + _step(trial), order[trial.trial_id], trial))
        start_next()
    return outcome
