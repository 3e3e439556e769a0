"""The two VAEs of the study (DESIGN section 5): a convolutional stage 1 on 32x32 images
and a dense stage 2 on stage-1 latents (Dai & Wipf's two-stage VAE).

Each model is built from a small frozen config, which checkpoints store so that resume
and sampling rebuild the same network without the caller repeating its options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vae_sweep.errors import InputError


@dataclass(frozen=True)
class Stage1Config:
    kind = "Stage1VAE"  # class attributes, not fields: the model this config builds
    latent_dim: int = 128
    # one conv 4x4 stride 2 per entry: 32 -> 16 -> 8 -> 4 -> 2 pixels
    encoder_channels: tuple[int, ...] = (128, 256, 512, 1024)
    # dense to (decoder_channels[0], 8, 8), then one transposed conv per further entry
    decoder_channels: tuple[int, ...] = (1024, 256)
    image_size: int = 32
    decoder_start = 8  # pixels per side of the dense decoder output (not a field)

    def __post_init__(self):
        _check_widths("encoder_channels", self.encoder_channels)
        _check_widths("decoder_channels", self.decoder_channels)
        if self.latent_dim < 1:
            raise InputError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.image_size % 2 ** len(self.encoder_channels):
            raise InputError(
                f"encoder_channels {self.encoder_channels}: each entry halves the "
                f"{self.image_size}-pixel image, which {len(self.encoder_channels)} "
                f"halvings do not divide"
            )
        if self.decoder_start * 2 ** len(self.decoder_channels) != self.image_size:
            raise InputError(
                f"decoder_channels {self.decoder_channels}: the decoder starts at 8x8 "
                f"and doubles once per entry, so it needs "
                f"{_log2(self.image_size // 8)} entries for {self.image_size} pixels"
            )


# Stage-2 layouts by name: (hidden widths, skip). `dai_wipf` is Dai & Wipf's reference
# implementation (daib13/TwoStageVAE): three dense ReLU layers of 1024 units on each
# side, with the layer's input concatenated to the last hidden layer before the
# output heads. `table4` keeps the earlier 2048/512 layout (mirrored decoder, no
# skip), read from the thesis' Table 4, whose extracted text is garbled: it is kept
# as a named variant, not as a faithful reading.
STAGE2_LAYOUTS = {
    "dai_wipf": ((1024, 1024, 1024), True),
    "table4": ((2048, 512), False),
}


@dataclass(frozen=True)
class Stage2Config:
    kind = "Stage2VAE"
    input_dim: int = 128
    latent_dim: int = 64
    layout: str = "dai_wipf"
    hidden: tuple[int, ...] | None = None  # None: the layout's widths

    def __post_init__(self):
        if self.layout not in STAGE2_LAYOUTS:
            raise InputError(
                f"stage-2 layout {self.layout!r} is unknown; choose from "
                f"{', '.join(STAGE2_LAYOUTS)}"
            )
        if self.hidden is None:
            object.__setattr__(self, "hidden", STAGE2_LAYOUTS[self.layout][0])
        _check_widths("hidden", self.hidden)
        for name in ("input_dim", "latent_dim"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )

    @property
    def skip(self) -> bool:
        """Whether the heads also see the layer input (Dai & Wipf)."""
        return STAGE2_LAYOUTS[self.layout][1]


def _check_widths(name: str, widths: tuple[int, ...]) -> None:
    if not widths or any(int(w) < 1 for w in widths):
        raise InputError(
            f"{name} must be a non-empty list of positive widths, got {widths}"
        )


def _log2(value: int) -> int:
    return max(value, 1).bit_length() - 1


class VAE(nn.Module):
    """Shared by both stages: encode -> reparameterise -> decode."""

    config: Stage1Config | Stage2Config

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        return self.mean(hidden), self.log_var(hidden)

    def forward(self, x: torch.Tensor):
        mean, log_var = self.encode(x)
        # the reparameterisation draws from torch's global generator, which
        # checkpoints save, so a resumed run draws the same noise
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decode(z), mean, log_var

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def describe(self) -> dict:
        return {"kind": type(self).__name__, **asdict(self.config)}


class Stage1VAE(VAE):
    def __init__(self, config: Stage1Config | None = None):
        super().__init__()
        self.config = config = config or Stage1Config()
        layers, channels = [], 3
        for width in config.encoder_channels:
            # no conv bias: the batch norm right after it has its own shift
            layers += [
                nn.Conv2d(channels, width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        layers.append(nn.Flatten())
        self.encoder = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.encoder_channels)
        flat = channels * side * side
        self.mean = nn.Linear(flat, config.latent_dim)
        self.log_var = nn.Linear(flat, config.latent_dim)

        first, start = config.decoder_channels[0], config.decoder_start
        decoder = [
            nn.Linear(config.latent_dim, first * start * start, bias=False),
            nn.BatchNorm1d(first * start * start),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (first, start, start)),
        ]
        channels = first
        for width in config.decoder_channels[1:]:
            decoder += [
                nn.ConvTranspose2d(channels, width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        # the last layer has no batch norm after it, so it keeps its bias
        decoder += [
            nn.ConvTranspose2d(channels, 3, 4, stride=2, padding=1),
            nn.Sigmoid(),
        ]
        self.decoder = nn.Sequential(*decoder)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, 3, 32, 32) in (0, 1)

    @staticmethod
    def prepare(batch: torch.Tensor) -> torch.Tensor:
        """(B, 32, 32, 3) uint8 -> (B, 3, 32, 32) float32 in [0, 1]."""
        return batch.permute(0, 3, 1, 2).float().div_(255.0)


class Stage2VAE(VAE):
    """A dense VAE on stage-1 latents (DESIGN section 5).

    Trained on fresh posterior draws: a training batch holds [mean | log variance]
    of the stage-1 posteriors, and `prepare` draws z = mean + sigma * eps from it with
    the trainer's own random stream, so every epoch sees new draws, seeded and
    resumable. A batch of plain latents (the `means` variant) is used as it is.
    """

    def __init__(self, config: Stage2Config | None = None):
        super().__init__()
        self.config = c = config or Stage2Config()
        self.encoder = _mlp((c.input_dim, *c.hidden))
        heads = c.hidden[-1] + (c.input_dim if c.skip else 0)
        self.mean = nn.Linear(heads, c.latent_dim)
        self.log_var = nn.Linear(heads, c.latent_dim)
        widths = c.hidden if c.skip else tuple(reversed(c.hidden))
        self.decoder_body = _mlp((c.latent_dim, *widths))
        # a Gaussian decoder on unbounded latents: linear output, no squashing
        self.output = nn.Linear(
            widths[-1] + (c.latent_dim if c.skip else 0), c.input_dim
        )

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(z)
        if self.config.skip:
            hidden = torch.cat([z, hidden], dim=1)
        return self.mean(hidden), self.log_var(hidden)

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        hidden = self.decoder_body(u)
        if self.config.skip:
            hidden = torch.cat([u, hidden], dim=1)
        return self.output(hidden)  # (B, input_dim)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.float()
        if batch.shape[1] == 2 * self.config.input_dim:  # [mean | log variance]
            mean, log_var = batch.chunk(2, dim=1)
            return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return batch


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


MODELS = {
    "Stage1VAE": (Stage1VAE, Stage1Config),
    "Stage2VAE": (Stage2VAE, Stage2Config),
}


def build_model(description: dict) -> VAE:
    """Rebuild a model from `VAE.describe()` (as stored in checkpoints)."""
    options = dict(description)
    model_cls, config_cls = MODELS[options.pop("kind")]
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return model_cls(config_cls(**tuples))
