"""sweep/stopping.py without Ray: a first SIGTERM inside fit() asks Tune's loop to end
(its SIGUSR1 handler), a second stops at once, and a fit() a SIGTERM ended raises
Terminated. Tune's handler is stood in for by a function from its module; the whole
sweep under SIGTERM is in tests/test_sweep_faults.py."""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import nullcontext

import pytest

from sweep import stopping
from sweep.stopping import TUNE_MODULE, stops_on_signals
from vae_sweep.errors import Terminated


def tune_like_handler(calls: list):
    def signal_interrupt_tune_run(sig, frame):  # what fit() installs for SIGUSR1
        calls.append(sig)

    signal_interrupt_tune_run.__module__ = TUNE_MODULE
    return signal_interrupt_tune_run


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs the handler at the next bytecode boundary


@pytest.fixture
def usr1_restored():
    before = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, before)


def test_first_sigterm_in_fit_asks_tune_to_stop_and_the_sweep_then_ends(usr1_restored):
    calls, reached_the_end = [], False
    term, usr1 = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Terminated), stops_on_signals():
        signal.signal(signal.SIGUSR1, tune_like_handler(calls))  # fit() began
        deliver(signal.SIGTERM)
        reached_the_end = True  # the loop goes on to its end
    assert calls == [signal.SIGTERM] and reached_the_end
    # both handlers are put back on leaving
    assert signal.getsignal(signal.SIGTERM) is term
    assert signal.getsignal(signal.SIGUSR1) is usr1


def test_second_sigterm_stops_at_once(usr1_restored):
    calls = []
    with pytest.raises(Terminated), stops_on_signals():
        signal.signal(signal.SIGUSR1, tune_like_handler(calls))
        deliver(signal.SIGTERM)
        deliver(signal.SIGTERM)
        pytest.fail("the second SIGTERM did not stop it")
    assert calls == [signal.SIGTERM]


def test_sigterm_before_tunes_loop_or_from_an_earlier_fit_stops_at_once(usr1_restored):
    # no fit() has installed its handler yet
    with pytest.raises(Terminated), stops_on_signals():
        deliver(signal.SIGTERM)
        pytest.fail("a SIGTERM before fit() did not stop it")
    # an earlier fit()'s handler, still installed (Tune never removes it), is stale
    calls = []
    signal.signal(signal.SIGUSR1, tune_like_handler(calls))
    with pytest.raises(Terminated), stops_on_signals():
        deliver(signal.SIGTERM)
        pytest.fail("a stale handler took the SIGTERM")
    assert calls == []


def test_a_fit_without_a_signal_ends_normally(usr1_restored):
    term, usr1 = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    with stops_on_signals():
        signal.signal(signal.SIGUSR1, tune_like_handler([]))
    assert signal.getsignal(signal.SIGTERM) is term
    assert signal.getsignal(signal.SIGUSR1) is usr1


def test_a_loop_deaf_to_the_request_is_stopped_after_the_grace(
    usr1_restored, monkeypatch
):
    # Tune waits up to 600 s for a trial it can start, not polling the stop event
    monkeypatch.setattr(stopping, "GRACE_S", 0.3)
    calls, started = [], time.time()
    with pytest.raises(Terminated), stops_on_signals():
        signal.signal(signal.SIGUSR1, tune_like_handler(calls))
        deliver(signal.SIGTERM)
        while time.time() - started < 10:  # the wait
            time.sleep(0.05)
        pytest.fail("the grace passed and the sweep went on")
    assert calls == [signal.SIGTERM] and time.time() - started < 5


def test_a_stopped_fit_leaves_no_timer_behind(usr1_restored, monkeypatch):
    monkeypatch.setattr(stopping, "GRACE_S", 0.3)
    with pytest.raises(Terminated), stops_on_signals():
        signal.signal(signal.SIGUSR1, tune_like_handler([]))
        deliver(signal.SIGTERM)  # the loop ends at once
    time.sleep(0.6)  # a timer left running would send SIGTERM to this process now


def test_tunes_words_about_its_own_ctrl_c_are_dropped_and_the_rest_kept(caplog):
    tune_log = logging.getLogger(TUNE_MODULE)
    words = ["Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.",
             "Experiment has been interrupted, but the most recent state was saved.\n"
             "Resume experiment with: Tuner.restore(path=...)",
             "Trials did not complete: [vae_trial_1]"]  # fmt: skip
    failed = "Experiment state snapshotting failed:"
    with caplog.at_level(logging.WARNING, logger=TUNE_MODULE):
        with stops_on_signals():
            for text in [*words, failed]:
                tune_log.warning(text)
        tune_log.warning(words[0])  # after the sweep: Tune's own again
    assert [r.getMessage() for r in caplog.records] == [failed, words[0]]


@pytest.mark.parametrize("stopped", [False, True])
def test_trials_without_results_are_listed_unless_a_sigterm_stopped_the_sweep(
    stopped, caplog, usr1_restored
):
    analysis = logging.getLogger("ray.tune.analysis.experiment_analysis")
    unstarted = "Failed to fetch metrics for 7 trial(s):\n- n_train=5000,seed=1: ..."
    ends = pytest.raises(Terminated) if stopped else nullcontext()
    with caplog.at_level(logging.WARNING, logger=analysis.name), ends, \
            stops_on_signals():  # fmt: skip
        signal.signal(signal.SIGUSR1, tune_like_handler([]))
        if stopped:
            deliver(signal.SIGTERM)
        analysis.warning(unstarted)  # fit() returns Tune's analysis
    assert [r.getMessage() for r in caplog.records] == ([] if stopped else [unstarted])
