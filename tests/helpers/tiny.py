"""Tiny model settings so that VAE tests train in well under a second on a CPU."""

from __future__ import annotations

from vae.models import Stage1Config, Stage2Config

TINY_STAGE1 = Stage1Config(
    latent_dim=4, encoder_channels=(4, 8, 8, 8), decoder_channels=(8, 4)
)
TINY_STAGE2 = Stage2Config(input_dim=4, latent_dim=2, hidden=(16, 8))
TINY_CLI = [
    "--latent-dim", "4",
    "--encoder-channels", "4,8,8,8",
    "--decoder-channels", "8,4",
    "--stage2-hidden", "16,8",
    "--stage2-latent-dim", "2",
]  # fmt: skip
