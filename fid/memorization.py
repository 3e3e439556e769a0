"""Memorization: the share of generated samples that copy a training image.

The rule is the nearest-neighbour distance ratio used in the memorization studies of
diffusion models (Yoon et al. 2023, "Diffusion Probabilistic Models Generalize when
They Fail to Memorize"; Gu et al. 2023, "On Memorization in Diffusion Models", code
sail-sg/DiffMemorize: `knn_distance[:, 0] / knn_distance[:, 1] < 1/3`): a generated
sample counts as a copy when its distance to the nearest training image is less than a
third of its distance to the second nearest, i.e. it sits on one training image rather
than between several. Those studies measure pixels; here, as the other metrics, the
Inception features, against the training images the model itself learned from.

An exact copy of a training image is at distance 0 and always counts (unless the
training set holds that image twice); a held-out image of the same distribution is
about as far from its nearest training image as from the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fid.fidelity import as_tensor, pairwise_distances, row_blocks

COPY_RATIO = 1 / 3


@dataclass(frozen=True)
class Memorization:
    rate: float  # the share of generated samples counted as copies
    ratios: np.ndarray  # (M,) nearest / second-nearest training distance
    nearest: np.ndarray  # (M,) index of each sample's nearest training image

    @property
    def copies(self) -> int:
        return int(round(self.rate * len(self.ratios)))


def memorization(
    generated: np.ndarray,
    train: np.ndarray,
    *,
    ratio: float = COPY_RATIO,
    device="cpu",
) -> Memorization:
    """(M, d) generated features against (N, d) training features (N >= 2)."""
    if len(train) < 2:
        raise ValueError(f"memorization needs at least 2 training samples, got "
                         f"{len(train)}")  # fmt: skip
    x_gen, x_train = as_tensor(generated, device), as_tensor(train, device)
    ratios = np.empty(len(x_gen))
    nearest = np.empty(len(x_gen), dtype=np.int64)
    for start, stop in row_blocks(len(x_gen), len(x_train)):
        block = pairwise_distances(x_gen[start:stop], x_train)
        two = torch.topk(block, 2, largest=False)
        first, second = two.values[:, 0], two.values[:, 1]
        # both at 0: a training image held twice, copied exactly
        ratios[start:stop] = torch.where(second > 0, first / second,
                                         torch.zeros_like(first)).cpu().numpy()
        nearest[start:stop] = two.indices[:, 0].cpu().numpy()
    return Memorization(float((ratios < ratio).mean()), ratios, nearest)
