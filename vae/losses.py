"""VAE objectives: reconstruction + KL(q(z|x) || N(0, I)), per image, batch-averaged.

Three reconstruction terms (DESIGN section 5), chosen by name:

* `gamma`: a Gaussian decoder N(x_hat, gamma^2 I) whose scale gamma is learned (Dai &
  Wipf, "Diagnosing and Enhancing VAE Models"); the term is the exact negative
  log-likelihood, so the total is the negative ELBO in nats. log gamma starts at 0 and
  Adam moves it by about the learning rate per step: a short run keeps gamma far above
  its optimum, which weighs the KL term up by (gamma / gamma*)^2.
* `optimal_gamma`: the same likelihood with gamma set, every batch, to its maximum-
  likelihood value, the root of the batch's per-pixel MSE (the calibrated decoder of
  Rybkin, Daniilidis & Levine 2021, "Simple and Effective VAE Training with
  Calibrated Decoders", as their code `orybkin/sigma-vae-pytorch` does it: one scalar
  over the batch and all pixels, not detached, log gamma soft-clipped at -6).
* `mse`: summed squared error with a KL weight (a beta-VAE when kl_weight != 1); it has
  no decoder scale (stage 2 then samples without noise).

Whatever the objective, the figure reported as the model's loss is the per-pixel MSE;
the two Gaussian ones report their decoder scale `gamma`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from vae_sweep.errors import InputError

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


class LossTerms(NamedTuple):
    total: torch.Tensor  # scalar, mean over the batch: what is minimised
    squared_error: torch.Tensor  # scalar, summed over pixels and batch (for MSE)
    kl: torch.Tensor  # scalar, mean over the batch


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per sample: (B, d) -> (B,)."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=1)


def _squared_error(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    return (x - recon).square().flatten(1).sum(dim=1)  # (B,)


class GammaLoss(nn.Module):
    """Gaussian decoder with one learned scale, log gamma initialised at 0."""

    name = "gamma"

    def __init__(self, kl_weight: float = 1.0):
        super().__init__()
        self.kl_weight = float(kl_weight)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x, recon, mean, log_var) -> LossTerms:
        squared = _squared_error(x, recon)
        dims = x[0].numel()
        nll = squared / (2.0 * torch.exp(2.0 * self.log_gamma)) + dims * (
            self.log_gamma + HALF_LOG_TWO_PI
        )
        kl = kl_divergence(mean, log_var)
        total = (nll + self.kl_weight * kl).mean()
        return LossTerms(total, squared.sum().detach(), kl.mean().detach())

    @property
    def gamma(self) -> float:
        return float(self.log_gamma.detach().exp())


def softclip(tensor: torch.Tensor, minimum: float) -> torch.Tensor:
    """A smooth max(tensor, minimum): minimum + softplus(tensor - minimum)."""
    return minimum + torch.nn.functional.softplus(tensor - minimum)


class OptimalGammaLoss(nn.Module):
    """Gaussian decoder, its scale the root of the batch's per-pixel MSE (sigma-VAE).

    The scale of the last batch is kept (a buffer, so checkpoints carry it): stage 2
    samples with it, and the history records it."""

    name = "optimal_gamma"
    MIN_LOG_GAMMA = -6.0  # the reference code's softclip bound: gamma >= about 0.0025

    def __init__(self, kl_weight: float = 1.0):
        super().__init__()
        self.kl_weight = float(kl_weight)
        self.register_buffer("log_gamma", torch.zeros(()))

    def forward(self, x, recon, mean, log_var) -> LossTerms:
        squared = _squared_error(x, recon)  # (B,)
        dims = x[0].numel()
        # one scalar over the batch and every pixel, gradients flowing through it
        log_gamma = softclip(0.5 * torch.log(squared.sum() / (len(x) * dims)),
                             self.MIN_LOG_GAMMA)  # fmt: skip
        nll = squared / (2.0 * torch.exp(2.0 * log_gamma)) + dims * (
            log_gamma + HALF_LOG_TWO_PI
        )
        kl = kl_divergence(mean, log_var)
        total = (nll + self.kl_weight * kl).mean()
        self.log_gamma.copy_(log_gamma.detach())
        return LossTerms(total, squared.sum().detach(), kl.mean().detach())

    @property
    def gamma(self) -> float:
        return float(self.log_gamma.exp())


class MSELoss(nn.Module):
    """Summed squared error + kl_weight * KL."""

    name = "mse"

    def __init__(self, kl_weight: float = 1.0):
        super().__init__()
        self.kl_weight = float(kl_weight)

    def forward(self, x, recon, mean, log_var) -> LossTerms:
        squared = _squared_error(x, recon)
        kl = kl_divergence(mean, log_var)
        total = (squared + self.kl_weight * kl).mean()
        return LossTerms(total, squared.sum().detach(), kl.mean().detach())


def describe_loss(loss: nn.Module) -> dict:
    return {"name": loss.name, "kl_weight": loss.kl_weight}


LOSSES: dict[str, type[nn.Module]] = {
    "gamma": GammaLoss,
    "optimal_gamma": OptimalGammaLoss,
    "mse": MSELoss,
}
DEFAULT_LOSS = "gamma"  # the learned decoder scale of Dai & Wipf


def build_loss(name: str, *, kl_weight: float = 1.0) -> nn.Module:
    if name not in LOSSES:
        raise InputError(
            f"unknown loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}"
        )
    if not math.isfinite(kl_weight) or kl_weight < 0:
        raise InputError(f"kl_weight must be a finite number >= 0, got {kl_weight}")
    return LOSSES[name](kl_weight=kl_weight)
