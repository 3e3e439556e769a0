"""Tune's trials -> `results.parquet` (a row per trial and prior) and
`history.parquet` (a row per trial and evaluation), DESIGN section 8.

Both are rebuilt from the whole experiment every time the driver finishes, so a resumed
sweep rewrites them with every trial exactly once; a trial that re-ran epochs after a
restart keeps only its latest row per epoch.
"""

from __future__ import annotations

import io
import json
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from pyarrow import Table

from sweep.config import GridConfig
from sweep.folder import HISTORY_FILE, RESULTS_FILE
from sweep.prerequisites import score_need
from sweep.storage import write_bytes
from sweep.trials import train_size
from vae_sweep import PROJECT

STATUS_BY_OUTCOME = {"completed": "ok", "diverged": "diverged"}


def package_version() -> str:
    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return "unknown"


def _status(result) -> tuple[str, str, str | None]:
    """(status, stop reason, error text) of one trial."""
    metrics = result.metrics or {}
    if result.error is not None:
        lines = [line for line in str(result.error).strip().splitlines() if line]
        return "error", "error", lines[-1] if lines else type(result.error).__name__
    if metrics.get("phase") == "final":
        outcome = metrics.get("outcome", "completed")
        return STATUS_BY_OUTCOME.get(outcome, outcome), outcome, None
    return "stopped", "scheduler", None


def _trial_id(result) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def _mahalanobis(grid: GridConfig, params: dict) -> dict:
    """Where a Mahalanobis criterion measured (inception or pixel) and with which
    covariance estimate; None for other criteria."""
    need = score_need(grid, params)
    spec = need[2] if need and need[1] == "mahalanobis" else {}
    return {"mahalanobis_space": spec.get("space"),
            "mahalanobis_covariance": spec.get("covariance")}  # fmt: skip


def _fid_time(metrics: dict, grid: GridConfig) -> dict:
    """The FID network time spent on a trial, and its share of the replicas' GPUs
    (inside the sweep's FID-service total, see sweep.accounting)."""
    busy = float(metrics.get("fid_busy_seconds") or 0.0)
    return {"fid_busy_seconds": busy, "fid_gpu_seconds": busy * grid.fid_service.gpu}


def trial_rows(result, grid: GridConfig, meta: dict) -> list[dict]:
    metrics = result.metrics or {}
    params = dict(result.config["trial"])
    status, reason, error = _status(result)
    wall = float(metrics.get("time_total_s") or 0.0)
    # the trial's own clock (its last report's finished_at); Tune's timestamp, whole
    # seconds, only for results written before trials reported one
    finished = metrics.get("finished_at") or metrics.get("timestamp")
    common = {
        "experiment": grid.name,
        "trial_id": _trial_id(result),
        **params,
        # the share of the pool it trained on (grid.n_train may give either)
        "retention": params["n_train"] / train_size(grid),
        **_mahalanobis(grid, params),
        "loss_mse": metrics.get("loss_mse"),
        "variance_law": metrics.get("variance_law"),
        "inactive_dims": metrics.get("inactive_dims"),
        "fid_intermediate": metrics.get("fid_intermediate"),
        "epochs_run": metrics.get("epoch"),  # rounds: epochs under an epoch budget
        "steps_run": metrics.get("step"),
        "images_seen": metrics.get("images_seen"),
        "gamma": metrics.get("gamma"),  # stage 1's decoder scale at its end
        # the loss flat at the end (vae.diagnostics.loss_plateau): the last fifth's
        # MSE against the fifth before it
        "converged": metrics.get("converged"),
        "loss_change": metrics.get("loss_change"),
        # the subset's images per class (JSON: class -> count)
        "class_counts": metrics.get("class_counts"),
        "stop_reason": reason,
        "status": status,
        "error": error,
        "wall_seconds": wall,
        # a trial holds its GPU share for its whole wall time
        "gpu_seconds": wall * grid.resources.gpu,
        **_fid_time(metrics, grid),
        "config_hash": metrics.get("config_hash"),
        "started_at": pd.Timestamp(finished - wall, unit="s", tz="UTC")
        if finished
        else None,
        "finished_at": pd.Timestamp(finished, unit="s", tz="UTC") if finished else None,
        **meta,
    }
    return [
        {
            **common,
            "prior": prior,
            "fid": metrics.get(f"fid_{prior}"),
            "fid_samples": metrics.get(f"fid_samples_{prior}"),
            # null unless fid.metrics asked for them
            "kid": metrics.get(f"kid_{prior}"),
            "kid_std": metrics.get(f"kid_std_{prior}"),
            "fid_inf": metrics.get(f"fid_inf_{prior}"),
            **{m: metrics.get(f"{m}_{prior}")
               for m in ("precision", "recall", "density", "coverage",
                         "memorization")},  # fmt: skip
            # a fixed model's sampling error, when fid.bootstrap asks (95%)
            **{f"{m}_ci_{end}": metrics.get(f"{m}_ci_{end}_{prior}")
               for m in ("fid", "kid", "precision", "recall", "density", "coverage")
               for end in ("low", "high")},
            **_prior_columns(metrics, prior),
        }
        for prior in grid.priors
    ]


# what each prior's own fit reports; null in the rows of the other priors
PRIOR_COLUMNS = {
    "two_stage": ("stage2_loss_mse", "stage2_objective", "stage2_variance_law",
                  "stage2_inactive_dims", "stage2_latent_dim", "stage2_gamma",
                  "stage2_epochs_run", "stage2_steps_run", "stage2_converged",
                  "stage2_loss_change", "stage2_outcome"),
    "gmm": ("gmm_converged", "gmm_iterations"),
}  # fmt: skip


def _prior_columns(metrics: dict, prior: str) -> dict:
    return {
        column: metrics.get(column) if prior == owner else None
        for owner, columns in PRIOR_COLUMNS.items()
        for column in columns
    }


def history_rows(result, grid: GridConfig) -> pd.DataFrame:
    """A finished trial's own history (every epoch it ran, restored ones included);
    else, for a trial stopped early, what it reported to Tune."""
    own = (result.metrics or {}).get("history_json")
    if own is not None:
        frame = pd.DataFrame(json.loads(own)).assign(phase="stage1")
        if frame.empty:  # diverged in its first epoch
            return frame
        stage2 = (result.metrics or {}).get("stage2_history_json")
        if stage2:  # the second stage's epochs, after the first's
            second = pd.DataFrame(json.loads(stage2)).assign(phase="stage2")
            frame = pd.concat([frame, second], ignore_index=True)
    else:
        frame = result.metrics_dataframe
        if frame is None or frame.empty or "phase" not in frame:
            return pd.DataFrame()
        frame = frame[frame["phase"] == "stage1"]
    columns = ["phase", "epoch", "step", "images_seen", "loss_mse", "objective", "lr",
               "gamma", "fid_intermediate", "fid_intermediate_samples",
               "finished_at"]  # fmt: skip
    frame = frame[[c for c in columns if c in frame]]
    frame = frame.drop_duplicates(["phase", "epoch"], keep="last")
    frame = frame.sort_values(["phase", "epoch"])
    frame.insert(0, "trial_id", _trial_id(result))
    frame.insert(0, "experiment", grid.name)
    for axis, value in result.config["trial"].items():
        frame[axis] = value
    return frame


def repetition_rows(result, grid: GridConfig, meta: dict) -> list[dict]:
    """E1/E2 kinds: a row per (trial, repetition)."""
    metrics = result.metrics or {}
    status, reason, error = _status(result)
    common = {
        "experiment": grid.name,
        "trial_id": _trial_id(result),
        **result.config["trial"],
        "status": status,
        "stop_reason": reason,
        "error": error,
        "wall_seconds": float(metrics.get("time_total_s") or 0.0),
        **_fid_time(metrics, grid),
        **meta,
    }
    frame = result.metrics_dataframe
    if frame is None or frame.empty or "phase" not in frame:
        return [{**common, "repetition": None, "fid": None, "fid_samples": None}]
    frame = frame[frame["phase"] == "repetition"]
    frame = frame.drop_duplicates("repetition", keep="last").sort_values("repetition")
    return [
        {
            **common,
            "repetition": int(row.repetition),
            "fid": float(row.fid),
            "fid_samples": int(row.fid_samples),
        }
        for row in frame.itertuples()
    ]


def build_tables(
    results, grid: GridConfig, meta: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if grid.kind != "vae":
        rows = [row for r in results for row in repetition_rows(r, grid, meta)]
        table = pd.DataFrame(rows).sort_values(["trial_id", "repetition"])
        return table.reset_index(drop=True), pd.DataFrame()
    rows = [row for result in results for row in trial_rows(result, grid, meta)]
    table = pd.DataFrame(rows)
    histories = [h for h in (history_rows(r, grid) for r in results) if not h.empty]
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    if not table.empty:
        table = table.sort_values(["trial_id", "prior"], kind="stable")
    return table.reset_index(drop=True), history


def write_tables(folder: str, table: pd.DataFrame, history: pd.DataFrame) -> None:
    for name, frame in ((RESULTS_FILE, table), (HISTORY_FILE, history)):
        buffer = io.BytesIO()
        pq.write_table(Table.from_pandas(frame, preserve_index=False), buffer)
        write_bytes(f"{folder}/{name}", buffer.getvalue())


def summary(table: pd.DataFrame) -> str:
    """Trials by status; mean FID over seeds per (n_train, criterion, prior)."""
    if table.empty:
        return "no trials"
    counts = table.drop_duplicates("trial_id")["status"].value_counts().to_dict()
    by_status = ", ".join(f"{v} {k}" for k, v in counts.items())
    lines = [f"trials: {sum(counts.values())} ({by_status})"]
    axis = next((a for a in ("size", "tiles") if a in table), None)
    if axis and table["fid"].notna().any():
        fids = table.groupby(axis)["fid"]
        frame = pd.DataFrame({"fid_mean": fids.mean(),
                              "fid_variance_ddof1": fids.var(ddof=1)})  # fmt: skip
        lines.append(frame.round(3).to_string())
    elif "n_train" in table and table["fid"].notna().any():
        done = table[table["status"] == "ok"]
        pivot = done.pivot_table(
            index=["n_train", "criterion"],
            columns="prior",
            values="fid",
            aggfunc="mean",
        )
        lines.append(pivot.round(2).to_string())
    return "\n".join(lines)
