"""How a signal stops a running sweep (`python -m sweep.run`), so that `--resume`
continues it without running anything twice.

SIGTERM (a scheduler, a pod's eviction, `kill`; a shell's background job also ignores
SIGINT) asks Tune to stop: Tune ends its loop after the step in flight, writes its
experiment state one last time (a trial that finished a moment before is recorded as
finished, not re-run from its last checkpoint, as it was when Tune's periodic save,
every 10 s or more, had not caught up), and stops the trials in flight; then the sweep
ends as Ctrl-C ends it, one line and exit 143, no tables. A second SIGTERM, one before
Tune's loop runs, or GRACE_S without the loop ending (Tune waits up to 600 s, deaf to
the request, while no trial can start: those waiting for criterion scores) stops it
at once. A trial whose final report Tune has logged but whose end it has not yet seen
(one step later) is still recorded as running, and runs its final phase again.

Ctrl-C stops it at once as a KeyboardInterrupt (sweep.run: one line, exit 130): a
terminal's Ctrl-C reaches the whole process group, Ray's workers with the driver, and
one more step of Tune's loop could record the trials they ran as errors. Tune's own
SIGINT handler would instead end fit() as if the sweep were complete, and the tables
would be built from trials that never ran. Tune saves its state as trials report, so
--resume continues from the trials' last checkpoints.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vae_sweep.errors import Terminated

TERMINATED: list[int] = []  # the SIGTERMs this driver received
_BEFORE_FIT: list = [None]  # SIGUSR1's handler before fit(): an earlier fit's is stale
_TIMERS: list[threading.Timer] = []  # the second SIGTERM a first one sends itself

# Tune's loop ends when its handler of SIGUSR1 (installed in every fit()) sets the
# event the loop polls; it then logs warnings meant for its own Ctrl-C
TUNE_MODULE = "ray.tune.tune"
GRACE_S = 20.0  # within the usual grace before SIGKILL (Kubernetes, Slurm: 30 s)
# Tune's words at such a stop, which speak of Ctrl-C and Tuner.restore: sweep.run says
# what to do. Anything else it logs (a failed last save) is kept.
TUNE_STOP_WORDS = ("Stop signal received", "Experiment has been interrupted",
                   "Training has been interrupted", "Trials did not complete")
# and after such a stop, a line for each trial not started yet (a resume starts them)
UNSTARTED_WORDS = "Failed to fetch metrics"
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"  # lists trials sans results
TUNE_LOGGERS = (TUNE_MODULE, ANALYSIS_LOGGER)


def stopped_by_sigterm(stop: BaseException) -> bool:
    """Whether `stop` ends a sweep a SIGTERM stopped: our Terminated, Ray's own
    handler's sys.exit(15), or anything raised once a SIGTERM arrived (Tune turns
    the stop into its own KeyboardInterrupt)."""
    sigterm_exit = isinstance(stop, SystemExit) and stop.code == signal.SIGTERM
    return isinstance(stop, Terminated) or sigterm_exit or bool(TERMINATED)


class _TunesStopWords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(TUNE_STOP_WORDS):
            return False
        return not (TERMINATED and message.startswith(UNSTARTED_WORDS))


_FILTER = _TunesStopWords()


def tune_stop_handler() -> Callable | None:
    """Tune's handler that ends its loop gracefully, while a fit() is running."""
    handler = signal.getsignal(signal.SIGUSR1)
    if handler is _BEFORE_FIT[0]:  # not yet this fit()'s: it installs one of its own
        return None
    tunes = callable(handler) and getattr(handler, "__module__", "") == TUNE_MODULE
    return handler if tunes else None


def _terminated(signum, frame):
    TERMINATED.append(signum)
    stop_tune = tune_stop_handler()
    if len(TERMINATED) == 1 and stop_tune is not None:
        stop_tune(signum, frame)
        again = threading.Timer(GRACE_S, os.kill, (os.getpid(), signum))
        again.daemon = True
        _TIMERS.append(again)
        again.start()
        return
    # Ray or Tune may turn the exception raised here into a plain KeyboardInterrupt
    # (where it lands inside their waits), so the signal is also recorded above
    raise Terminated(f"signal {signum}")


@contextmanager
def stops_on_signals() -> Iterator[None]:
    """Around Tune's fit(): SIGTERM and Ctrl-C as the module says. Raises Terminated
    after a fit() that a SIGTERM ended early. Signals can only be handled in the main
    thread; elsewhere (a test calling the driver in a thread) they are left alone."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    TERMINATED.clear()  # this sweep's, not an earlier run's in this process
    previous_usr1 = _BEFORE_FIT[0] = signal.getsignal(signal.SIGUSR1)
    previous_term = signal.signal(signal.SIGTERM, _terminated)
    for name in TUNE_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
    try:
        yield
    finally:
        while _TIMERS:
            _TIMERS.pop().cancel()
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGUSR1, previous_usr1)
        for name in TUNE_LOGGERS:
            logging.getLogger(name).removeFilter(_FILTER)
    if TERMINATED:  # fit() returned because a SIGTERM asked Tune to stop
        raise Terminated(f"signal {TERMINATED[0]}")
