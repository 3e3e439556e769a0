"""Fidelity and diversity from the same Inception features FID uses: precision and
recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models", k = 3) and density and coverage (Naeem et al. 2020, "Reliable
Fidelity and Diversity Metrics for Generative Models", k = 5).

Each real sample (the FID reference) and each generated one gets a ball: the Euclidean
distance to its k-th nearest neighbour within its own set, itself excluded. Then, as the
`prdc` package computes them (clovaai/generative-evaluation-prdc; strict comparisons):

* precision: the share of generated samples inside some real ball (fidelity);
* recall: the share of real samples inside some generated ball (diversity);
* density: the mean, over generated samples, of how many real balls (k = 5) hold it,
  divided by k (fidelity that counts how deep inside the real manifold a sample is);
* coverage: the share of real samples whose ball (k = 5) holds some generated sample.

Distances are computed a block of rows at a time (torch, on the given device), never as
a whole N x N matrix: 10,000 x 10,000 float64 distances would be 800 MB. The real side's
radii depend only on the reference, so callers compute them once (`knn_radii`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PR_K = 3  # Kynkäänniemi et al.'s default neighbourhood
DC_K = 5  # Naeem et al.'s
BLOCK_BYTES = 256 * 2**20  # distances held at once


@dataclass(frozen=True)
class Fidelity:
    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall,
                "density": self.density, "coverage": self.coverage}  # fmt: skip


def as_tensor(features: np.ndarray, device) -> torch.Tensor:
    """Features as a float64 tensor on `device`: exact distances at any size.

    A read-only array (Ray hands the actor's features out of its object store that way)
    is copied, not shared: torch warns on sharing one, and nothing here writes to it.
    """
    array = np.asarray(features, dtype=np.float64)
    if not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array, device=device)


def row_blocks(rows: int, columns: int):
    """Row ranges whose (rows, columns) float64 distances fit in BLOCK_BYTES."""
    size = max(1, BLOCK_BYTES // (8 * max(columns, 1)))
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # the matrix-product form (about 25x faster than the difference form on a CPU),
    # in float64: its cancellation error, about 1e-13 at Inception's scale, moves no
    # distance across a radius that the difference form would not (scikit-learn,
    # which prdc uses, computes it the same way)
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def knn_radii(features: np.ndarray, k: int, *, device="cpu") -> np.ndarray:
    """(N,) distance of each row to its k-th nearest other row: the (k+1)-th
    smallest distance of its row, itself at 0 included (prdc's convention)."""
    x = as_tensor(features, device)
    if len(x) < k + 1:
        raise ValueError(f"a k-nearest-neighbour radius with k = {k} needs at least "
                         f"{k + 1} samples, got {len(x)}")  # fmt: skip
    radii = torch.empty(len(x), dtype=torch.float64, device=device)
    for start, stop in row_blocks(len(x), len(x)):
        block = pairwise_distances(x[start:stop], x)
        radii[start:stop] = torch.topk(block, k + 1, largest=False).values[:, k]
    return radii.cpu().numpy()


def fidelity(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    real_radii_pr: np.ndarray | None = None,
    real_radii_dc: np.ndarray | None = None,
    k_pr: int = PR_K,
    k_dc: int = DC_K,
    device="cpu",
) -> Fidelity:
    """Precision and recall (k_pr) and density and coverage (k_dc) of (M, d) generated
    features `fake` against (N, d) real ones; the real radii when already known."""
    need = max(k_pr, k_dc) + 1
    if min(len(real), len(fake)) < need:
        raise ValueError(f"precision/recall/density/coverage need at least {need} "
                         f"samples on each side, got {len(real)} real and "
                         f"{len(fake)} generated")  # fmt: skip
    x_real, x_fake = as_tensor(real, device), as_tensor(fake, device)
    pr = torch.as_tensor(real_radii_pr if real_radii_pr is not None
                         else knn_radii(real, k_pr, device=device), device=device)
    dc = torch.as_tensor(real_radii_dc if real_radii_dc is not None
                         else knn_radii(real, k_dc, device=device), device=device)
    fake_pr = torch.as_tensor(knn_radii(fake, k_pr, device=device), device=device)
    inside = 0  # generated samples inside some real ball (k_pr)
    depth = 0.0  # real balls (k_dc) holding each generated sample, summed
    recalled = torch.zeros(len(x_real), dtype=torch.bool, device=device)
    nearest = torch.full((len(x_real),), torch.inf, dtype=torch.float64,
                         device=device)  # fmt: skip
    for start, stop in row_blocks(len(x_fake), len(x_real)):
        block = pairwise_distances(x_fake[start:stop], x_real)  # (fakes, reals)
        inside += int((block < pr[None, :]).any(dim=1).sum())
        depth += float((block < dc[None, :]).sum())
        recalled |= (block < fake_pr[start:stop, None]).any(dim=0)
        nearest = torch.minimum(nearest, block.min(dim=0).values)
    return Fidelity(
        precision=inside / len(x_fake),
        recall=float(recalled.double().mean()),
        density=depth / (k_dc * len(x_fake)),
        coverage=float((nearest < dc).double().mean()),
    )
