"""Latent priors: the shared uint8 conversion, each prior's output, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.tiny import TINY_STAGE1
from vae.inference import decode, encode, to_uint8
from vae.models import Stage1VAE
from vae.priors import PRIORS, GMMOptions, PriorContext, prior_seed, sample_images
from vae.stage2 import TwoStageOptions
from vae.train_config import TrainConfig
from vae_sweep.errors import InputError


def test_to_uint8_scales_rounds_and_clips_by_hand():
    # channel-first floats -> channel-last bytes
    x = torch.tensor([-0.1, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 1.2]).reshape(
        1, 1, 1, 7
    )
    x = x.expand(1, 3, 1, 7)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 7, 3)
    # 0.5 and 1.5 round half to even: 0 and 2; 0.5 * 255 = 127.5 -> 128
    assert out[0, 0, :, 0].tolist() == [0, 0, 0, 2, 128, 255, 255]


@pytest.fixture
def context(rng) -> PriorContext:
    torch.manual_seed(0)
    model = Stage1VAE(TINY_STAGE1).eval()
    train = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    means, log_vars = encode(model, train)
    return PriorContext(
        model,
        means,
        train_log_vars=log_vars,
        seed=3,
        recon_images=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
        gmm=GMMOptions(components=3, reg_covar=1e-4),
        two_stage=TwoStageOptions(
            latent_dim=2, hidden=(8,), train=TrainConfig(epochs=2, batch_size=10)
        ),
    )


@pytest.mark.parametrize("name", list(PRIORS))
def test_every_prior_gives_seeded_uint8_images(context, name):
    images = sample_images(name, context, 10)
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, sample_images(name, context, 10))


def test_gaussian_prior_decodes_standard_normal_draws(context):
    generator = torch.Generator().manual_seed(prior_seed(3, "gaussian"))
    z = torch.randn(5, TINY_STAGE1.latent_dim, generator=generator)
    expected = to_uint8(decode(context.model, z))
    assert np.array_equal(sample_images("gaussian", context, 5), expected)


def test_recon_prior_decodes_encoder_means(context):
    means, _ = encode(context.model, context.recon_images[:4])
    expected = to_uint8(decode(context.model, torch.as_tensor(means)))
    assert np.array_equal(sample_images("recon", context, 4), expected)
    with pytest.raises(InputError, match="13 reconstructions of 12 images"):
        sample_images("recon", context, 13)


def test_gmm_prior_fits_the_training_means(context, monkeypatch):
    import sklearn.mixture  # vae.priors imports it when it fits

    fitted = {}
    real = sklearn.mixture.GaussianMixture

    def spy(**options):
        fitted.update(options)
        mixture = real(**options)
        fit = mixture.fit
        mixture.fit = lambda x: fitted.update(data=x) or fit(x)
        return mixture

    monkeypatch.setattr(sklearn.mixture, "GaussianMixture", spy)
    sample_images("gmm", context, 6)
    assert fitted["n_components"] == 3 and fitted["covariance_type"] == "full"
    assert fitted["reg_covar"] == 1e-4 and fitted["max_iter"] == 500
    np.testing.assert_array_equal(fitted["data"], context.train_means)
    assert context.gmm_fit["converged"] is True
    assert 1 <= context.gmm_fit["iterations"] <= 500


def test_gmm_non_convergence_is_recorded(context):
    context.gmm = GMMOptions(components=3, reg_covar=1e-4, max_iter=1)
    sample_images("gmm", context, 6)  # one EM step: not converged, still sampled
    assert context.gmm_fit == {"converged": False, "iterations": 1}


def test_two_stage_trains_stage2_once_on_the_posteriors(context, monkeypatch):
    import vae.stage2 as stage2

    seen = []
    real = stage2.stage2_data
    monkeypatch.setattr(stage2, "stage2_data",
                        lambda *a: seen.append(a) or real(*a))  # fmt: skip
    sample_images("two_stage", context, 4)
    fit = context.stage2
    assert fit.model.config.input_dim == TINY_STAGE1.latent_dim
    assert fit.result.epochs == 2 and fit.model.config.layout == "dai_wipf"
    # fitted on the context's stage-1 posteriors: means and log-variances
    ((means, log_vars, inputs),) = seen
    assert inputs == "posterior_draws"
    assert means is context.train_means and log_vars is context.train_log_vars
    sample_images("two_stage", context, 4)
    assert context.stage2 is fit and len(seen) == 1  # not retrained


def test_two_stage_generates_with_its_gamma_noise(context):
    sample_images("two_stage", context, 4)
    fit = context.stage2
    generator = torch.Generator().manual_seed(prior_seed(3, "two_stage"))
    u = torch.randn(4, fit.model.latent_dim, generator=generator)
    z = decode(fit.model, u) + fit.gamma * torch.randn(
        4, TINY_STAGE1.latent_dim, generator=generator
    )
    expected = to_uint8(decode(context.model, z))
    assert np.array_equal(sample_images("two_stage", context, 4), expected)
    assert fit.gamma > 0


def test_priors_draw_independent_streams(context):
    assert prior_seed(3, "gaussian") != prior_seed(3, "gmm")
    assert prior_seed(3, "gaussian") != prior_seed(4, "gaussian")


def test_unknown_prior_lists_choices(context):
    with pytest.raises(
        InputError, match="choose from: gaussian, gmm, two_stage, recon"
    ):
        sample_images("flow", context, 3)


def test_recon_reconstructs_test_images_spread_over_the_classes(rng):
    from selection.datasets import ImageSet
    from vae.priors import recon_images

    # a class-sorted x_test (as the image-folder copies are): 3 classes x 3 images
    images = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    test = ImageSet(images, np.repeat([0, 1, 2], 3), ("a", "b", "c"), "sha", "src",
                    "png")  # fmt: skip
    # round-robin by rank within the class: 0, 3, 6, then 1, 4
    np.testing.assert_array_equal(recon_images(test, 5), images[[0, 3, 6, 1, 4]])


def test_gaussian_latents_are_standard_normal(context):
    z = PRIORS["gaussian"](context, 20_000, prior_seed(3, "gaussian")).double().numpy()
    dim = context.model.latent_dim
    # by hand: N(0, I) has mean 0 and covariance I; 20,000 draws pin both to ~0.02
    np.testing.assert_allclose(z.mean(axis=0), np.zeros(dim), atol=0.04)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(dim), atol=0.05)


def test_gmm_latents_follow_the_mixture_the_means_came_from(context, rng):
    """Training means drawn from a known, well-separated 3-component mixture: the
    prior's draws must come back in the known proportions, around the known centres,
    with the known spreads (the oracle is the generating mixture, not scikit-learn's
    fit)."""
    dim = context.model.latent_dim
    centres = np.zeros((3, dim))
    centres[:, 0] = [-20.0, 0.0, 20.0]
    scales = np.array([0.5, 1.0, 2.0])
    weights = np.array([0.5, 0.3, 0.2])
    component = rng.choice(3, size=3000, p=weights)
    context.train_means = centres[component] + rng.normal(size=(3000, dim)) * \
        scales[component][:, None]  # fmt: skip
    z = PRIORS["gmm"](context, 20_000, prior_seed(3, "gmm")).double().numpy()
    nearest = np.abs(z[:, :1] - centres[:, 0]).argmin(axis=1)
    np.testing.assert_allclose(np.bincount(nearest, minlength=3) / len(z), weights,
                               atol=0.03)  # fmt: skip
    for k in range(3):
        mine = z[nearest == k]
        np.testing.assert_allclose(mine.mean(axis=0), centres[k], atol=0.15 * scales[k])
        np.testing.assert_allclose(mine.std(axis=0), np.full(dim, scales[k]),
                                   rtol=0.1)  # fmt: skip
