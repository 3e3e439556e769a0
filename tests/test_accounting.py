"""The sweep's GPU accounting (timings.json and the results), worked out by hand."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sweep.accounting import Accounting
from sweep.config import GridConfig


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _prerequisites(spans: dict, gpu: float):
    return SimpleNamespace(
        spans=lambda: spans,
        gpu_seconds=lambda: sum(s["seconds"] * gpu for s in spans.values() if s),
    )


def _results(*walls):
    return [SimpleNamespace(metrics={"time_total_s": wall}) for wall in walls]


def _two_replicas() -> GridConfig:
    """Trials on half a GPU; two FID replicas on a quarter each."""
    return GridConfig.model_validate({
        "name": "t", "resources": {"gpu": 0.5},
        "fid_service": {"replicas": 2, "gpu": 0.25},
    })  # fmt: skip


def test_gpu_seconds_of_trials_replicas_and_prerequisites(tmp_path):
    config, clock = _two_replicas(), Clock()
    first = Accounting(config, str(tmp_path), clock=clock)
    first.services_started([{"node": "a"}, {"node": "b"}])
    clock.now = 100.0  # the replicas lived 100 s: 2 x 0.25 x 100 = 50 GPU-seconds
    first.services_stopped()
    recon = {"started_at": 0.0, "finished_at": 30.0, "seconds": 30.0}
    first.add_prerequisites(_prerequisites({"recon": recon}, gpu=0.5))  # 15
    first.add_trials(_results(40.0, 60.0))  # (40 + 60) x 0.5 = 50
    assert first.sweep_gpu_seconds() == pytest.approx(50 + 50 + 15)
    first.write()

    # a resumed run: its replicas count on top; trial times are Tune's cumulative
    # totals over both runs, so they are counted once
    clock.now = 0.0
    second = Accounting(config, str(tmp_path), clock=clock)
    second.services_started([{"node": "a"}, {"node": "c"}])
    clock.now = 20.0  # 2 x 0.25 x 20 = 10
    second.services_stopped()
    second.add_prerequisites(_prerequisites({"recon": None}, gpu=0.5))  # cached
    second.add_trials(_results(40.0, 60.0, 80.0))  # 180 x 0.5 = 90
    assert second.sweep_gpu_seconds() == pytest.approx(90 + 50 + 10 + 15)
    second.write()
    saved = json.loads((tmp_path / "timings.json").read_text())
    assert len(saved["runs"]) == 2
    assert saved["gpu_seconds"] == pytest.approx(
        {"trials": 90, "fid_service": 60, "prerequisites": 15, "total": 165}
    )
    assert saved["gpu_hours"] == pytest.approx(165 / 3600)
    assert saved["runs"][0]["prerequisites"]["recon"] == recon
    assert saved["runs"][1]["prerequisites"] == {"recon": None}
    assert [r["node"] for r in saved["runs"][1]["fid_replicas"]] == ["a", "c"]


def test_a_stopped_run_is_recorded_and_counted_by_the_run_that_finishes(
    tmp_path, monkeypatch
):
    """Each resume of a stopped sweep kept only the last run's replicas: the stopped
    runs never wrote. Now a stop writes its run, trials' totals unknown (null)."""
    from vae_sweep.errors import Terminated

    monkeypatch.setattr("sweep.stopping.TERMINATED", [])  # no SIGTERM in this process

    config, clock = _two_replicas(), Clock()
    stopped = Accounting(config, str(tmp_path), clock=clock)
    stopped.services_started([{"node": "a"}, {"node": "b"}])
    clock.now = 5.0
    stopped.lap("prerequisites")
    clock.now = 80.0  # replicas 80 s: 2 x 0.25 x 80 = 40; fit 75 s
    features = {"started_at": 0.0, "finished_at": 8.0, "seconds": 8.0}
    done = {"features": features, "recon": None}  # 8 x 0.5 = 4 (recon not done)
    stopped.write_stopped(Terminated("stop"), _prerequisites(done, gpu=0.5), "tune_fit")
    saved = json.loads((tmp_path / "timings.json").read_text())
    assert saved["runs"][0]["stopped"] == "terminated"
    assert saved["runs"][0]["driver_seconds"]["tune_fit"] == pytest.approx(75.0)
    assert saved["gpu_seconds"] == {"trials": None, "fid_service": 40.0,
                                    "prerequisites": 4.0, "total": None}  # fmt: skip
    assert saved["gpu_hours"] is None and saved["trial_seconds_sum"] is None

    clock.now = 0.0  # a Ctrl-C'd run, then the run that finishes
    interrupted = Accounting(config, str(tmp_path), clock=clock)
    interrupted.services_started([{"node": "a"}, {"node": "b"}])
    clock.now = 20.0  # 2 x 0.25 x 20 = 10
    interrupted.write_stopped(KeyboardInterrupt(), _prerequisites({}, gpu=0.5),
                              "prerequisites")  # fmt: skip
    clock.now = 0.0
    last = Accounting(config, str(tmp_path), clock=clock)
    last.services_started([{"node": "a"}, {"node": "c"}])
    clock.now = 30.0  # 2 x 0.25 x 30 = 15
    last.services_stopped()
    last.add_prerequisites(_prerequisites({"features": None}, gpu=0.5))  # cached
    last.add_trials(_results(100.0, 60.0))  # 160 x 0.5 = 80
    last.write()
    saved = json.loads((tmp_path / "timings.json").read_text())
    assert [run["stopped"] for run in saved["runs"]] == [
        "terminated", "interrupted", None]  # fmt: skip
    assert saved["gpu_seconds"] == pytest.approx(
        {"trials": 80, "fid_service": 40 + 10 + 15, "prerequisites": 4,
         "total": 80 + 65 + 4})  # fmt: skip
    assert saved["trial_seconds_sum"] == 160.0 and saved["trials"] == 2


def test_why_a_run_stopped(monkeypatch):
    from sweep.accounting import stop_reason
    from vae_sweep.errors import Terminated

    monkeypatch.setattr("sweep.stopping.TERMINATED", [])
    assert stop_reason(Terminated("x")) == "terminated"
    assert stop_reason(SystemExit(15)) == "terminated"  # Ray's handler: sys.exit(15)
    assert stop_reason(KeyboardInterrupt()) == "interrupted"
    assert stop_reason(ValueError("x")) == "error: ValueError"
    # Tune turns the driver's SIGTERM stop into its own KeyboardInterrupt
    monkeypatch.setattr("sweep.stopping.TERMINATED", [15])
    assert stop_reason(KeyboardInterrupt()) == "terminated"


@pytest.mark.parametrize("text", ["", "{\"runs\": [", "[]"])
def test_an_unreadable_record_costs_its_runs_not_the_resume(tmp_path, capsys, text):
    (tmp_path / "timings.json").write_text(text)
    config, clock = _two_replicas(), Clock()
    again = Accounting(config, str(tmp_path), clock=clock)
    assert again.previous_runs == []
    assert capsys.readouterr().err == (
        "timings.json: unreadable ("
        + {"": "JSONDecodeError", "[]": "TypeError"}.get(text, "JSONDecodeError")
        + "); the runs before this one are not counted\n")  # fmt: skip
    again.add_trials(_results(10.0))
    again.write()
    assert len(json.loads((tmp_path / "timings.json").read_text())["runs"]) == 1


def test_a_record_that_fails_to_write_leaves_the_stop_as_it_was(capsys):
    """A second signal (or a storage error) while the stopped run's record is
    written: one line, and the first stop is what the driver re-raises."""
    from sweep.driver import _record_stopped_run

    class Interrupted:
        def write_stopped(self, stop, prerequisites, phase):
            raise KeyboardInterrupt  # the second Ctrl-C

    _record_stopped_run(Interrupted(), SystemExit(15), None, "tune_fit")
    assert capsys.readouterr().err == (
        "timings.json: this run's record was not written (KeyboardInterrupt)\n")


def test_result_rows_carry_the_trial_and_fid_gpu_seconds():
    from sweep.results import build_tables

    config = GridConfig.model_validate({
        "name": "t", "priors": ["gaussian"], "resources": {"gpu": 0.5},
        "fid_service": {"gpu": 0.25},
    })  # fmt: skip
    result = SimpleNamespace(
        metrics={"phase": "final", "outcome": "completed", "time_total_s": 10.0,
                 "timestamp": 1_000_000, "fid_busy_seconds": 12.0, "epoch": 3,
                 "fid_gaussian": 7.5, "fid_samples_gaussian": 100},
        config={"trial": {"n_train": 10, "criterion": "random", "seed": 0}},
        error=None, path="/x/trial_1", metrics_dataframe=None,
    )  # fmt: skip
    table, _ = build_tables([result], config, {"sweep_gpu_seconds": 99.0})
    row = table.iloc[0]
    assert row["gpu_seconds"] == 10.0 * 0.5
    assert row["fid_busy_seconds"] == 12.0 and row["fid_gpu_seconds"] == 12.0 * 0.25
    assert row["sweep_gpu_seconds"] == 99.0 and row["fid"] == 7.5
    assert row["status"] == "ok" and row["trial_id"] == "trial_1"
