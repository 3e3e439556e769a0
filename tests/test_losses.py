"""The objectives against closed forms and torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from vae.losses import GammaLoss, MSELoss, build_loss, kl_divergence
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
    with pytest.raises(InputError, match="choose one of: gamma, mse"):
        build_loss("l1")
    with pytest.raises(InputError, match="kl_weight"):
        build_loss("mse", kl_weight=-1)
