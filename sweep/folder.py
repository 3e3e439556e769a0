"""What a sweep folder holds, named once: `<storage>/<name>/` (a local folder, NFS path
or `s3://...` prefix), written by the driver and the trials, read back by
`sweep.reader` and the analysis. Beside these, Tune keeps its own experiment state and
one folder per trial there.
"""

from __future__ import annotations

from vae_sweep import PROJECT

GRID_FILE = "grid.yaml"  # the resolved grid, saved before any trial starts
RESULTS_FILE = "results.parquet"  # a row per (trial, prior), or per E1/E2 repetition
HISTORY_FILE = "history.parquet"  # a row per (trial, phase, epoch)
TIMINGS_FILE = "timings.json"  # GPU accounting of every run (sweep/accounting.py)
SAMPLES_FOLDER = "samples"  # <trial_id>/<prior>.png: a sample grid per finished prior
STAGE2_FOLDER = "stage2"  # <trial_id>.pt: each trial's stage-2 training state
PREREQUISITES_FOLDER = "prerequisites"  # reference-<key>.pt: the reference VAE
STATE_FILE = "trial.pt"  # what a trial writes into each of its Tune checkpoints
NAMESPACE = PROJECT  # the Ray namespace of a sweep's named actors (the FID replicas)


def sample_grid_file(prior: str) -> str:
    """SAMPLES_FOLDER/<trial_id>/ holds this: the prior's first samples in a grid."""
    return f"{prior}.png"


def copies_file(prior: str) -> str:
    """SAMPLES_FOLDER/<trial_id>/ holds this: the prior's samples closest to one
    training image, above those images (memorization)."""
    return f"memorization_{prior}.png"
