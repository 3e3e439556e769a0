"""`python -m sweep.run` as the sweep tests run it: the smoke grid with tiny settings
and the stand-in feature network, in a process of its own with a local Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from tests.helpers.data import ROOT, cifar_path
from tests.helpers.processes import started

SMOKE = str(ROOT / "grids" / "smoke.yaml")
TINY = [
    "--set", "fid.extractor=tests.helpers.standin:make_standin",
    "--set", "data.train_limit=300",
    "--set", "data.test_limit=40",
    "--set", "grid.n_train=[100, 200]",
    "--set", "stage1.epochs=2",
    "--set", "stage1.batch_size=50",
    "--set", "selection.reference_epochs=1",
    "--set", "fid.samples=20",
]  # fmt: skip


def sweep_env(**extra) -> dict:
    # Ray workers are started by this run's raylet and inherit its environment:
    # PYTHONPATH lets them import the stand-in network from tests/. A Ray of its own
    # (RAY_ADDRESS=local) even where a module-scoped fixture, set up before the
    # autouse isolation fixture, runs it.
    return {**os.environ, "PYTHONPATH": str(ROOT), "VAE_SWEEP_DATA": str(cifar_path()),
            "RAY_ADDRESS": "local", **extra}  # fmt: skip


def sweep_command(storage, *args) -> list[str]:
    """The command line of a tiny smoke sweep into `storage`."""
    return [sys.executable, "-m", "sweep.run", SMOKE, "--set", f"storage={storage}",
            *TINY, *args]  # fmt: skip


def sweep(tmp_path, *args, env=None, check=True, storage=None, timeout=600):
    result = subprocess.run(
        sweep_command(storage or tmp_path, *args),
        cwd=ROOT, capture_output=True, text=True, env=env or sweep_env(),
        timeout=timeout,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def tables(tmp_path, name="smoke"):
    folder = tmp_path / name
    return (pd.read_parquet(folder / "results.parquet"),
            pd.read_parquet(folder / "history.parquet"))  # fmt: skip


def quiet_sweep(command: list[str]):
    """A sweep process started as a terminal would (tests/helpers/processes.py), its
    output dropped, killed with its group when the test leaves."""
    return started(command, cwd=ROOT, env=sweep_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip

