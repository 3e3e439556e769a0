"""Precision, recall, density and coverage (fid.fidelity) against the `prdc` package
(Naeem et al.'s own code) on the same features, small and at the study's size."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from prdc import compute_prdc

from fid import fidelity as fidelity_module
from fid.fidelity import DC_K, PR_K, fidelity, knn_radii
from tests.helpers.data import ROOT


def _peer(real, fake) -> dict:
    """prdc with Kynkäänniemi et al.'s k = 3 for precision and recall and Naeem et
    al.'s k = 5 for density and coverage."""
    pr = compute_prdc(real_features=real, fake_features=fake, nearest_k=PR_K)
    dc = compute_prdc(real_features=real, fake_features=fake, nearest_k=DC_K)
    return {"precision": pr["precision"], "recall": pr["recall"],
            "density": dc["density"], "coverage": dc["coverage"]}  # fmt: skip


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_matches_prdc_on_small_sets(rng, shift):
    real = rng.standard_normal((300, 16))
    fake = 1.3 * rng.standard_normal((200, 16)) + shift  # wider, and moved
    ours = fidelity(real, fake).as_dict()
    assert ours == pytest.approx(_peer(real, fake), abs=1e-12)


def test_radii_are_the_kth_neighbour_without_the_point_itself(rng):
    points = rng.standard_normal((40, 3))
    by_hand = [np.sort(np.linalg.norm(points - p, axis=1))[3] for p in points]
    np.testing.assert_allclose(knn_radii(points, 3), by_hand, rtol=1e-12)


def test_matches_prdc_at_full_size_in_blocks(rng, monkeypatch):
    """10,000 real against 10,000 generated, in blocks of rows: never the whole
    (10,000, 10,000) distance matrix, which prdc builds (800 MB in float64)."""
    monkeypatch.setattr(fidelity_module, "BLOCK_BYTES", 64 * 2**20)  # 838 rows
    real = rng.standard_normal((10_000, 32)).astype(np.float32)
    fake = (rng.standard_normal((10_000, 32)) * 1.1 + 0.1).astype(np.float32)
    held = []
    real_distances = fidelity_module.pairwise_distances

    def watched(a, b):
        held.append(a.shape[0] * b.shape[0])
        return real_distances(a, b)

    monkeypatch.setattr(fidelity_module, "pairwise_distances", watched)
    ours = fidelity(real, fake).as_dict()
    assert max(held) <= 64 * 2**20 // 8 < 10_000 * 10_000
    peer = _peer(real.astype(np.float64), fake.astype(np.float64))
    assert ours == pytest.approx(peer, abs=1e-12)  # the same counts exactly


def test_too_few_samples_are_refused(rng):
    with pytest.raises(ValueError, match="at least 6 samples on each side"):
        fidelity(rng.standard_normal((5, 2)), rng.standard_normal((50, 2)))


def test_read_only_features_are_copied_without_torch_warning():
    # Ray hands the FID actor's features out as read-only arrays; torch warns once per
    # process on sharing one (its warning shows in every trial's log), so the check runs
    # in a fresh interpreter with the warning made an error
    code = (
        "import numpy as np, torch\n"
        "from fid.fidelity import as_tensor\n"
        "for dtype in (np.float64, np.float32):\n"
        "    a = np.arange(12, dtype=dtype).reshape(3, 4)\n"
        "    a.flags.writeable = False\n"
        "    t = as_tensor(a, 'cpu')\n"
        "    assert t.dtype == torch.float64\n"
        "    assert np.array_equal(t.numpy(), a.astype(np.float64))\n"
        "    t[0, 0] = -1.0\n"
        "    assert a[0, 0] == 0\n"
    )
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
