"""Variance law and inactive dimensions on synthetic encodings with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vae.diagnostics import diagnostics, inactive_dimensions, variance_law


def test_variance_law_by_hand():
    # dim 0: means (1, -1) -> population variance 1; variances (0.5, 0.5) -> mean 0.5
    # dim 1: means (2, 2) -> variance 0; variances (e^0, e^-1) -> mean (1 + e^-1) / 2
    means = np.array([[1.0, 2.0], [-1.0, 2.0]])
    log_vars = np.log(np.array([[0.5, 1.0], [0.5, np.exp(-1.0)]]))
    expected = ((1.0 + 0.5) + (0.0 + (1.0 + np.exp(-1.0)) / 2)) / 2
    assert variance_law(means, log_vars) == pytest.approx(expected)


def test_sampled_aggregate_posterior_has_law_one():
    # an encoder whose aggregate posterior is exactly N(0, 1) per dim:
    # means with variance 1 - s2 and posterior variance s2
    rng = np.random.default_rng(0)
    s2 = np.array([0.01, 0.3, 0.9, 0.99])
    means = rng.standard_normal((200_000, 4)) * np.sqrt(1 - s2)
    log_vars = np.broadcast_to(np.log(s2), means.shape)
    assert variance_law(means, log_vars) == pytest.approx(1.0, abs=5e-3)
    result = diagnostics(means, log_vars)
    # only the two dims with posterior variance above 0.8 are inactive
    assert result["inactive_dims"] == 2 and result["latent_dim"] == 4


def test_inactive_counts_dims_whose_mean_variance_exceeds_threshold():
    # dim 0 averages 0.75 though one image has 0.9; dim 1 averages 0.85; dim 2 is 0.1
    variances = np.array([[0.6, 0.9, 0.1], [0.9, 0.8, 0.1]])
    assert inactive_dimensions(np.log(variances)) == 1
    assert inactive_dimensions(np.log(variances), threshold=0.05) == 3


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="equal"):
        variance_law(np.zeros((3, 2)), np.zeros((3, 4)))
