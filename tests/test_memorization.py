"""Memorization (fid.memorization): copies of training images count, held-out images
of the same distribution do not; the ratio against a by-hand nearest-two search."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from fid import fidelity as fidelity_module
from fid.memorization import COPY_RATIO, memorization


def test_ratios_and_nearest_by_hand(rng, monkeypatch):
    monkeypatch.setattr(fidelity_module, "BLOCK_BYTES", 8 * 50 * 7)  # 7 rows a block
    train = rng.standard_normal((50, 6))
    generated = rng.standard_normal((30, 6))
    result = memorization(generated, train)
    distances = np.sort(cdist(generated, train), axis=1)
    np.testing.assert_allclose(result.ratios, distances[:, 0] / distances[:, 1],
                               rtol=1e-12)  # fmt: skip
    assert (result.nearest == cdist(generated, train).argmin(axis=1)).all()
    assert result.rate == pytest.approx(np.mean(result.ratios < COPY_RATIO))


def test_copies_are_flagged_and_held_out_samples_are_not(rng):
    train = rng.standard_normal((2000, 64))
    copies = train[rng.choice(2000, 200, replace=False)]
    held_out = rng.standard_normal((200, 64))
    assert memorization(copies, train).rate == 1.0
    assert memorization(held_out, train).rate == 0.0
    # half copies, half new: half
    mixed = np.concatenate([copies[:100], held_out[:100]])
    result = memorization(mixed, train)
    assert result.rate == 0.5 and result.copies == 100
    # near-copies (a small perturbation) still sit on one training image
    near = copies + 0.01 * rng.standard_normal(copies.shape)
    assert memorization(near, train).rate == 1.0
