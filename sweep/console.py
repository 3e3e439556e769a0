"""The sweep's console: one compact view of its progress instead of Tune's tables.

On a terminal, a block redrawn in place at most once a second: a line per running,
failed or recently finished trial (its step or epoch of the budget, loss, latest
intermediate FID, and at its end the final FID per prior) under an overall line:
trials done / running / pending / errored, time elapsed, and an estimate of what
remains. Written to a file or a pipe (a log, CI), the same content as lines: one when
a trial starts, ends or fails, and the overall line with the running trials every
`LOG_EVERY_S` seconds. Warnings and errors from Ray and the trials still show (they go
to stderr); `python -m sweep.run --verbose` brings back Tune's own per-trial tables.

The estimate: each trial's seconds at the grid's `estimate` rates (the --dry-run cost
model), scaled by what finished trials took against their estimate, spread over as
many trials as have run at once.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray import tune

from sweep.config import GridConfig
from sweep.cost import trial_seconds
from sweep.trials import settings, trial_name

LOG_EVERY_S = 60.0  # a file or pipe gets the overall line this often, at most
REDRAW_EVERY_S = 1.0  # a terminal's block is redrawn this often, at most
FINISHED_SHOWN = 5  # the last finished trials kept in a terminal's block
# what the overall line calls each kind of prerequisite still computing
PREREQUISITE_LABELS = {"features": "x_train's FID features",
                       "recon": "reference VAEs"}  # fmt: skip


def duration(seconds: float) -> str:
    """`45s`, `12m05s`, `3h20m`."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Row:
    """What the view knows of one trial."""

    name: str
    budget: int  # stage-1 steps or epochs
    unit: str  # "step" or "epoch"
    estimate_s: float
    status: str = "pending"
    at: int = 0
    loss: float | None = None
    fid: float | None = None  # the latest intermediate FID
    final: dict[str, float] | None = None  # the final FID per prior
    started: float | None = None
    ended: float | None = None
    error: str | None = None

    def line(self, now: float) -> str:
        parts = [f"{self.status:8s}", self.name]
        if self.budget and self.at:
            parts.append(f"{self.unit} {self.at}/{self.budget}")
            if self.status == "running" and self.at >= self.budget:
                parts.append("(stage 1 done: the priors)")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.fid is not None and not self.final:
            parts.append(f"fid {self.fid:.1f}")
        if self.final:
            parts.append("fid " + " ".join(f"{prior} {value:.1f}"
                                           for prior, value in self.final.items()))
        if self.started is not None and (self.ended or now) - self.started >= 1:
            parts.append(duration((self.ended or now) - self.started))
        if self.error:
            parts.append(f"error: {self.error}")
        return "  ".join(parts)


class ConsoleView(tune.Callback):
    """Tune callback drawing the view (see the module doc)."""

    def __init__(self, config: GridConfig, trials: list[dict], *, stream=None,
                 terminal: bool | None = None, clock=time.monotonic,
                 size: tuple[int, int] | None = None,
                 waiting: Callable[[], dict[str, int]] | None = None):  # fmt: skip
        self.priors = list(config.priors) if config.kind == "vae" else []
        self.rows: dict[str, Row] = {}
        for params in trials:
            name = trial_name(params)
            budget, unit = _budget(config, params)
            self.rows[name] = Row(name, budget, unit, trial_seconds(config, params))
        self._stream, self._terminal, self.clock = stream, terminal, clock
        self._size = size  # (columns, lines); None: the terminal's own
        # the prerequisites not ready yet, by kind (sweep.prerequisites.waiting_for)
        self.waiting = waiting
        self.begun = self.clock()
        self.most_at_once = 1
        self._drawn_lines = 0
        self._last_draw = -math.inf

    # pickled with Tune's run configuration: the stream stays behind
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_stream"] = None
        return state

    @property
    def stream(self):
        return self._stream or sys.stdout

    @property
    def terminal(self) -> bool:
        if self._terminal is None:
            return bool(getattr(self.stream, "isatty", lambda: False)())
        return self._terminal

    def _row(self, trial) -> Row:
        name = trial_name(trial.config.get("trial", trial.config))
        if name not in self.rows:  # a trial the grid did not list: still shown
            self.rows[name] = Row(name, 0, "step", 0.0)
        return self.rows[name]

    def ended_before(self, states: dict[str, str], *, retry_errored: bool) -> None:
        """A resumed sweep: its trials that ended before it (Tune's status by trial
        name) count as done or errored, not as pending work; they carry no time, so
        the estimate scales by this run's trials alone."""
        for name, status in states.items():
            row = self.rows.get(name)
            if row is None:
                continue
            if status == "TERMINATED":
                row.status = "done"
            elif status == "ERROR" and not retry_errored:
                row.status, row.error = "error", "before this resume"

    # ---- Tune's events ----
    def setup(self, **info):
        self.begun = self.clock()

    def on_trial_start(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status, row.started = "running", self.clock()
        row.ended = row.error = None
        running = sum(r.status == "running" for r in self.rows.values())
        self.most_at_once = max(self.most_at_once, running)
        self._event(row)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        at = result.get(row.unit)
        if isinstance(at, (int, float)):
            row.at = int(at)
        if isinstance(result.get("loss_mse"), (int, float)):
            row.loss = float(result["loss_mse"])
        if isinstance(result.get("fid_intermediate"), (int, float)):
            row.fid = float(result["fid_intermediate"])
        final = {p: result[f"fid_{p}"] for p in self.priors
                 if isinstance(result.get(f"fid_{p}"), (int, float))}  # fmt: skip
        if final:
            row.final = final

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status, row.ended = "done", self.clock()
        self._event(row)

    def on_trial_error(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status, row.ended = "error", self.clock()
        row.error = _first_error_line(trial)
        self._event(row)

    def on_step_end(self, iteration, trials, **info):
        now = self.clock()
        if self.terminal and now - self._last_draw >= REDRAW_EVERY_S:
            self._redraw(now)
        elif not self.terminal and now - self._last_draw >= LOG_EVERY_S:
            self._log_progress(now)

    def on_experiment_end(self, trials, **info):
        now = self.clock()
        if self.terminal:
            self._redraw(now)
        else:
            self._write([self.overall(now)])

    # ---- drawing ----
    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(("done", "running", "pending", "error"), 0)
        for row in self.rows.values():
            state = "running" if row.status == "paused" else row.status
            found[state] = found.get(state, 0) + 1
        return found

    def remaining_s(self, now: float) -> float:
        """Seconds the unfinished trials still need, spread over the slots."""
        finished = [r for r in self.rows.values()
                    if r.status in ("done", "error") and r.started is not None]
        estimated = sum(r.estimate_s for r in finished)
        taken = sum(r.ended - r.started for r in finished)
        scale = taken / estimated if finished and estimated > 0 else 1.0
        work = 0.0
        for row in self.rows.values():
            if row.status == "pending":
                work += scale * row.estimate_s
            elif row.status in ("running", "paused"):
                work += max(0.0, scale * row.estimate_s - (now - row.started))
        return work / self.most_at_once

    def overall(self, now: float) -> str:
        c = self.counts()
        line = (f"trials: {c['done']} done, {c['running']} running, {c['pending']} "
                f"pending, {c['error']} errored of {len(self.rows)}; elapsed "
                f"{duration(now - self.begun)}")  # fmt: skip
        if c["running"] or c["pending"]:
            line += f", about {duration(self.remaining_s(now))} left"
        return line + self.prerequisites_text()

    def prerequisites_text(self) -> str:
        """What the sweep still computes before the trials that need it (reference
        VAEs, x_train's features, criterion scores): otherwise a sweep busy with
        them would read as trials pending for no reason."""
        try:
            waiting = self.waiting() if self.waiting is not None else {}
        except Exception:  # noqa: BLE001 - a progress line never ends the sweep
            waiting = {}
        if not waiting:
            return ""
        parts = []
        for kind, count in sorted(waiting.items()):
            label = PREREQUISITE_LABELS.get(kind, f"{kind} scores")
            parts.append(label if count == 1 else f"{label} ({count})")
        return "; computing first: " + ", ".join(parts)

    def _write(self, lines: list[str]) -> None:
        self.stream.write("".join(f"{line}\n" for line in lines))
        self.stream.flush()

    def _event(self, row: Row) -> None:
        now = self.clock()
        if self.terminal:
            self._redraw(now)
        else:
            self._write([f"[{duration(now - self.begun)}] {row.line(now)}"])

    def _log_progress(self, now: float) -> None:
        self._last_draw = now
        running = [r for r in self.rows.values() if r.status == "running"]
        self._write([f"[{duration(now - self.begun)}] {self.overall(now)}"]
                    + [f"    {row.line(now)}" for row in running])  # fmt: skip

    def block(self, now: float) -> list[str]:
        """The terminal's lines: running and failed trials, the last finished ones,
        then the overall line; cut to the terminal's height."""
        rows = list(self.rows.values())
        shown = [r for r in rows if r.status in ("running", "paused", "error")]
        done = sorted((r for r in rows if r.status == "done"), key=lambda r: r.ended)
        shown += done[-FINISHED_SHOWN:]
        width, height = self._size or shutil.get_terminal_size((100, 40))
        lines = [row.line(now) for row in shown][: max(1, height - 3)]
        return [line[: width - 1] for line in [*lines, self.overall(now)]]

    def _redraw(self, now: float) -> None:
        self._last_draw = now
        lines = self.block(now)
        # up to the block's first line, then each line cleared as it is rewritten
        up = f"\x1b[{self._drawn_lines}F" if self._drawn_lines else ""
        self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        extra = self._drawn_lines - len(lines)
        if extra > 0:  # a shorter block: clear what the longer one left below
            self.stream.write("\x1b[2K\n" * extra + f"\x1b[{extra}F")
        self._drawn_lines = len(lines)
        self.stream.flush()


def _budget(config: GridConfig, params: dict) -> tuple[int, str]:
    if config.kind != "vae":
        return 0, "step"
    s = settings(config, params, device="cpu")
    if s.stage1.steps is not None:
        return int(s.stage1.steps), "step"
    return int(s.stage1.epochs), "epoch"


def _first_error_line(trial) -> str:
    """The exception's last line (its type and message) from Tune's error file."""
    path = getattr(trial, "error_file", None) or ""
    try:
        with open(path) as file:
            lines = [line.strip() for line in file if line.strip()]
    except OSError:
        return "see the results' error column"
    return (lines[-1] if lines else "no message")[:160]
