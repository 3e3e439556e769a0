"""The two VAEs: parameter counts worked out by hand, shapes, and config errors."""

from __future__ import annotations

import pytest
import torch

from vae.models import Stage1Config, Stage1VAE, Stage2Config, Stage2VAE, build_model
from vae_sweep.errors import InputError


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_stage1_default_parameter_count_by_hand():
    # encoder: conv 4x4 (no bias, batch norm follows) + batch norm (scale, shift)
    convs = 3 * 128 * 16 + 128 * 256 * 16 + 256 * 512 * 16 + 512 * 1024 * 16
    norms = 2 * (128 + 256 + 512 + 1024)
    heads = 2 * (1024 * 2 * 2 * 128 + 128)  # mean and log-variance from 2x2x1024
    # decoder: dense 128 -> 8*8*1024 (no bias) + batch norm, transposed convs
    dense = 128 * 8 * 8 * 1024 + 2 * 8 * 8 * 1024
    up1 = 1024 * 256 * 16 + 2 * 256
    up2 = 256 * 3 * 16 + 3  # last layer keeps its bias
    assert (
        _count(Stage1VAE()) == convs + norms + heads + dense + up1 + up2 == 24_795_651
    )


def test_stage1_shapes_and_range():
    model = Stage1VAE(
        Stage1Config(
            latent_dim=6, encoder_channels=(4, 8, 8, 16), decoder_channels=(16, 8)
        )
    )
    x = Stage1VAE.prepare(torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8))
    assert x.shape == (5, 3, 32, 32) and x.max() <= 1
    recon, mean, log_var = model(x)
    assert recon.shape == x.shape and mean.shape == log_var.shape == (5, 6)
    assert recon.min() > 0 and recon.max() < 1  # sigmoid output


def test_widths_configurable_and_description_rebuilds_same_model():
    config = Stage2Config(input_dim=10, latent_dim=3, hidden=(7,))
    model = Stage2VAE(config)
    twin = build_model(model.describe())
    assert twin.describe() == model.describe()
    # the heads read [input, hidden]: 10 + 7 = 17 in, and the output [u, hidden]
    assert (
        _count(twin)
        == _count(model)
        == (10 * 7 + 7) + 2 * (17 * 3 + 3) + (3 * 7 + 7) + (10 * 10 + 10)
    )


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"encoder_channels": ()}, "encoder_channels"),
        ({"decoder_channels": (64,)}, "needs 2 entries"),
        ({"encoder_channels": (8, 8, 8, 8, 8, 8)}, "halvings do not divide"),
        ({"latent_dim": 0}, "latent_dim"),
    ],
)
def test_bad_stage1_config_names_the_key(options, needle):
    with pytest.raises(InputError, match=needle):
        Stage1Config(**options)
