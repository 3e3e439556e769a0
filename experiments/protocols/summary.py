"""What E1 and E2 report per point: the mean FID over repetitions and its sample
variance."""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_REPETITIONS = 10  # independent draws per point (the study's)


def sample_variance(fids) -> float:
    """The unbiased sample variance (ddof 1); NaN for a single value, whose spread
    is unknown, not zero."""
    fids = np.asarray(fids, dtype=np.float64)
    return float(fids.var(ddof=1)) if len(fids) > 1 else float("nan")


def summarise(raw: pd.DataFrame, by: str) -> pd.DataFrame:
    """One row per value of `by`: mean, sample variance (ddof=1, the column says so)
    and the raw FIDs."""
    rows = []
    for key, group in raw.groupby(by, sort=True):
        fids = group.sort_values("repetition")["fid"].to_numpy()
        rows.append(
            {
                by: int(key),
                "fid_mean": float(fids.mean()),
                "fid_variance_ddof1": sample_variance(fids),
                "repetitions": len(fids),
                "sample_count": int(group["sample_count"].iloc[0]),
                "fid_values": fids.tolist(),
            }
        )
    return pd.DataFrame(rows)
