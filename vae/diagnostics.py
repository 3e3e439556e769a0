"""Latent-space diagnostics of a trained VAE (DESIGN section 5).

For encoder means mu_i and variances s2_i = exp(log_var_i) over a dataset, per latent
dimension j:

* variance law: mean over j of [Var_i(mu_ij) + E_i(s2_ij)]. By the law of total
  variance this is the variance of the aggregate posterior, which matches the N(0, I)
  prior when it is near 1.
* inactive dimensions: those with E_i(s2_ij) > 0.8, i.e. the posterior stays close to
  the prior whatever the image (posterior collapse); the encoder ignores them.

Variances over the dataset are population variances (ddof=0): the data set is the whole
population being described, not a sample of one.

And whether training had converged by its end (`loss_plateau`): the mean per-pixel
(stage 2: per-coordinate) MSE of the last fifth of the rounds against that of the fifth
before it; converged when it fell by less than 1%.
"""

from __future__ import annotations

import numpy as np

INACTIVE_THRESHOLD = 0.8


def _check(means: np.ndarray, log_vars: np.ndarray) -> None:
    if means.shape != log_vars.shape or means.ndim != 2 or len(means) == 0:
        raise ValueError(
            f"expected two equal (N, d) arrays with N >= 1, got {means.shape} "
            f"and {log_vars.shape}"
        )


def variance_law(means: np.ndarray, log_vars: np.ndarray) -> float:
    _check(means, log_vars)
    means = np.asarray(means, dtype=np.float64)
    variances = np.exp(np.asarray(log_vars, dtype=np.float64))
    return float(np.mean(means.var(axis=0) + variances.mean(axis=0)))


def inactive_dimensions(
    log_vars: np.ndarray, threshold: float = INACTIVE_THRESHOLD
) -> int:
    variances = np.exp(np.asarray(log_vars, dtype=np.float64))
    return int(np.count_nonzero(variances.mean(axis=0) > threshold))


def diagnostics(means: np.ndarray, log_vars: np.ndarray) -> dict:
    return {
        "variance_law": variance_law(means, log_vars),
        "inactive_dims": inactive_dimensions(log_vars),
        "latent_dim": int(means.shape[1]),
    }


PLATEAU_TOLERANCE = 0.01  # a relative fall of the loss over the budget's last fifth


def loss_plateau(mses) -> tuple[bool | None, float | None]:
    """(converged, relative change) of a run's per-round MSEs: the mean of the last
    fifth of the rounds against the mean of the fifth before it (a fifth is at least
    one round). Converged when the loss fell by less than PLATEAU_TOLERANCE of its
    earlier level (a rise counts as flat). (None, None) below 2 rounds."""
    mses = np.asarray(list(mses), dtype=np.float64)
    if len(mses) < 2:
        return None, None
    fifth = max(1, len(mses) // 5)
    last, before = mses[-fifth:].mean(), mses[-2 * fifth : -fifth].mean()
    change = float((last - before) / before)
    return bool(change > -PLATEAU_TOLERANCE), change
