"""The objectives against closed forms and torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from vae.losses import (
    GammaLoss,
    MSELoss,
    OptimalGammaLoss,
    build_loss,
    kl_divergence,
)
from vae_sweep.errors import InputError


def test_kl_by_hand():
    # one sample, two dims: mean (1, 0), variance (1, e^-2)
    mean = torch.tensor([[1.0, 0.0]])
    log_var = torch.tensor([[0.0, -2.0]])
    # 0.5 * sum(mu^2 + s2 - 1 - log s2) = 0.5 * [(1 + 1 - 1 - 0) + (0 + e^-2 - 1 + 2)]
    expected = 0.5 * (1.0 + math.exp(-2.0) + 1.0)
    assert kl_divergence(mean, log_var).item() == pytest.approx(expected, rel=1e-6)


def test_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    log_var = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    q = Normal(mean, torch.exp(0.5 * log_var))
    p = Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch_kl(q, p).sum(dim=1)
    torch.testing.assert_close(kl_divergence(mean, log_var), expected)


def test_gamma_loss_is_gaussian_nll_plus_kl():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 2, 2, generator=generator, dtype=torch.float64)
    recon = torch.rand(4, 3, 2, 2, generator=generator, dtype=torch.float64)
    mean = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    log_var = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    loss = GammaLoss().double()
    with torch.no_grad():
        loss.log_gamma.fill_(math.log(0.3))
    terms = loss(x, recon, mean, log_var)
    nll = -Normal(recon, 0.3).log_prob(x).flatten(1).sum(dim=1)
    expected = (nll + kl_divergence(mean, log_var)).mean()
    torch.testing.assert_close(terms.total, expected)
    torch.testing.assert_close(terms.squared_error, ((x - recon) ** 2).sum())


def test_gamma_is_learned():
    loss = GammaLoss()
    x, recon = torch.zeros(2, 4), torch.full((2, 4), 0.1)
    terms = loss(x, recon, torch.zeros(2, 1), torch.zeros(2, 1))
    terms.total.backward()
    # d/dlog_gamma [sq / (2 g^2) + D log g] = -sq / g^2 + D; at g = 1 each sample has
    # sq = 4 * 0.1^2 = 0.04 and D = 4
    assert loss.log_gamma.grad.item() == pytest.approx(-0.04 + 4.0, rel=1e-5)


def test_mse_loss_with_kl_weight_by_hand():
    x = torch.zeros(1, 2)
    recon = torch.tensor([[0.5, -1.0]])  # squared error 0.25 + 1
    mean, log_var = torch.tensor([[2.0]]), torch.tensor([[0.0]])  # KL 0.5 * 4 = 2
    terms = MSELoss(kl_weight=0.5)(x, recon, mean, log_var)
    assert terms.total.item() == pytest.approx(1.25 + 0.5 * 2.0)
    assert terms.kl.item() == pytest.approx(2.0)


def test_unknown_loss_lists_choices():
    with pytest.raises(InputError, match="choose one of: gamma, mse, optimal_gamma"):
        build_loss("l1")
    with pytest.raises(InputError, match="kl_weight"):
        build_loss("mse", kl_weight=-1)


def _batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    recon = torch.rand(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    mean = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    log_var = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    return x, recon, mean, log_var


def _sigma_vae_objective(x, recon, mean, log_var):
    """The sigma-VAE objective transcribed from its reference code
    (orybkin/sigma-vae-pytorch, model.py), element by element:
    log_sigma = softclip(log(sqrt(mean((x - x_hat)^2))), -6) over the whole batch;
    gaussian_nll = 0.5 ((x - x_hat) / sigma)^2 + log_sigma + 0.5 log(2 pi), summed over
    the pixels; plus the KL, and averaged over the batch as this project does."""
    mse = ((x - recon) ** 2).mean()
    log_sigma = -6.0 + torch.log1p(torch.exp(torch.log(mse.sqrt()) + 6.0))
    elementwise = (0.5 * ((x - recon) / log_sigma.exp()) ** 2 + log_sigma
                   + 0.5 * math.log(2 * math.pi))  # fmt: skip
    per_image = elementwise.flatten(1).sum(dim=1)
    return (per_image + kl_divergence(mean, log_var)).mean(), log_sigma


def test_optimal_gamma_is_the_root_of_the_batch_mse_and_the_objective_the_papers():
    x, recon, mean, log_var = _batch(2)
    loss = OptimalGammaLoss().double()
    terms = loss(x, recon, mean, log_var)
    mse = float(((x - recon) ** 2).mean())
    # exp(-6 + softplus(log s + 6)) = e^-6 (1 + s e^6) = s + e^-6: the root of the
    # MSE, raised by the clip's e^-6 (0.0025)
    assert loss.gamma == pytest.approx(math.sqrt(mse) + math.exp(-6.0), rel=1e-12)
    expected, _ = _sigma_vae_objective(x, recon, mean, log_var)
    torch.testing.assert_close(terms.total, expected)
    # the same as the learned-gamma likelihood at that gamma
    fixed = GammaLoss().double()
    with torch.no_grad():
        fixed.log_gamma.fill_(math.log(math.sqrt(mse) + math.exp(-6.0)))
    torch.testing.assert_close(fixed(x, recon, mean, log_var).total, terms.total)


def test_optimal_gamma_is_not_detached_and_is_soft_clipped():
    x, recon, mean, log_var = _batch(3)
    recon.requires_grad_(True)
    OptimalGammaLoss().double()(x, recon, mean, log_var).total.backward()
    ours = recon.grad.clone()
    recon.grad = None
    _sigma_vae_objective(x, recon, mean, log_var)[0].backward()
    torch.testing.assert_close(ours, recon.grad)  # gradients flow through gamma too
    # a near-perfect reconstruction: gamma stops near e^-6, not at the error's root
    loss = OptimalGammaLoss().double()
    loss(x, x + 1e-6, mean.detach(), log_var)
    assert loss.gamma == pytest.approx(math.exp(-6.0) + 1e-6, rel=1e-9)


def test_learned_gamma_moves_by_about_the_learning_rate_per_step():
    """Adam's steps are about lr long whatever the gradient's size, so log gamma,
    starting at 0, can fall only about lr per step: short runs keep gamma large."""
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(8, 3, 4, 4, generator=generator)
    recon = x + 0.05 * torch.randn(x.shape, generator=generator)  # optimum ~0.05
    loss = GammaLoss()
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    zeros = torch.zeros(8, 2)
    for _ in range(50):
        optimizer.zero_grad()
        loss(x, recon, zeros, zeros).total.backward()
        optimizer.step()
    moved = -loss.log_gamma.item()
    assert 0.9 * 50 * 1e-3 <= moved <= 1.01 * 50 * 1e-3
    assert loss.gamma > 0.9  # against an optimum of about 0.05
