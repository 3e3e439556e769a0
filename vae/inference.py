"""Batched, gradient-free passes through a trained VAE, and the one conversion from
decoder output to uint8 images that every prior and the FID share."""

from __future__ import annotations

import numpy as np
import torch

from vae.models import VAE

INFERENCE_BATCH = 500


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8: scale, round, clip."""
    pixels = (images.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode(
    model: VAE, data: np.ndarray, *, batch_size: int = INFERENCE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and log-variances, each (N, latent) float32, in eval mode."""
    model.eval()
    device = model_device(model)
    means, log_vars = [], []
    for start in range(0, len(data), batch_size):
        batch = torch.from_numpy(np.array(data[start : start + batch_size]))
        mean, log_var = model.encode(model.prepare(batch.to(device)))
        means.append(mean.float().cpu())
        log_vars.append(log_var.float().cpu())
    return torch.cat(means).numpy(), torch.cat(log_vars).numpy()


@torch.no_grad()
def decode(
    model: VAE, latents: torch.Tensor, *, batch_size: int = INFERENCE_BATCH
) -> torch.Tensor:
    """Decoder outputs for (N, latent) latents, on the CPU."""
    model.eval()
    device = model_device(model)
    parts = [
        model.decode(latents[start : start + batch_size].to(device)).float().cpu()
        for start in range(0, len(latents), batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def reconstruction_errors(
    model: VAE, images: np.ndarray, *, batch_size: int = INFERENCE_BATCH
) -> np.ndarray:
    """Per-image, per-pixel MSE of decoding the encoder mean: (N,) float64.

    The mean, not a sample, so an image's score does not depend on random noise.
    """
    model.eval()
    device = model_device(model)
    errors = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start : start + batch_size]))
        x = model.prepare(batch.to(device))
        recon = model.decode(model.encode(x)[0])
        errors.append((x - recon).square().flatten(1).mean(dim=1).double().cpu())
    return torch.cat(errors).numpy()
