"""Stage-1 training throughput (images/s) of the default VAE, per precision/layout.

    python -m benchmarks.train_throughput --data ../shared/data/cifar10-jpeg
    python -m benchmarks.train_throughput --device cuda --images 20000   # on a GPU

Every variant trains the same default stage-1 model (DESIGN section 5, batch 100) from
the same seed on the same CIFAR-10 training images for two epochs through `vae.trainer`;
the first epoch is warm-up (and compilation), the second is timed. The baseline is
eager fp32 in the default memory layout; on CUDA the candidates are bf16 autocast,
bf16 + channels_last, and bf16 + channels_last + torch.compile, on CPU fp32 +
channels_last (+ torch.compile with --compile). Writes
benchmarks/results/train_throughput_<device>.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import write_result
from selection.datasets import load_cifar10
from vae.models import Stage1Config
from vae.train_config import TrainConfig
from vae.trainer import new_trainer
from vae_sweep.devices import resolve_device

CUDA_VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "bf16+channels_last+compile": {
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
    },
}
CPU_VARIANTS = {
    "fp32": {},
    "fp32+channels_last": {"channels_last": True},
    "fp32+channels_last+compile": {"channels_last": True, "compile": True},
}


def measure(images: torch.Tensor, device: str, options: dict) -> dict:
    config = TrainConfig(epochs=2, batch_size=100, seed=0, device=device, **options)
    trainer = new_trainer(Stage1Config(), images, config)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    result = trainer.run()
    warm, timed = result.history
    return {
        "images_per_second": timed.samples_per_second,
        "timed_epoch_seconds": timed.seconds,
        "warmup_epoch_seconds": warm.seconds,
        "loss_epoch2": timed.loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="images per epoch (default: 500 on CPU, 20000 on CUDA)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="include torch.compile on CPU (slow to compile)",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    count = args.images or (20_000 if cuda else 500)
    train = load_cifar10(args.data, "train", limit=count)
    images = torch.from_numpy(np.array(train.images))
    variants = CUDA_VARIANTS if cuda else CPU_VARIANTS
    if not cuda and not args.compile:
        variants = {k: v for k, v in variants.items() if "compile" not in k}
    runs = {}
    for name, options in variants.items():
        runs[name] = {**measure(images, str(device), options), "options": options}
        print(f"{name}: {runs[name]['images_per_second']:.1f} images/s")
    baseline = runs["fp32"]["images_per_second"]
    for run in runs.values():
        run["speedup_vs_fp32"] = run["images_per_second"] / baseline
    write_result(
        f"train_throughput_{device.type}",
        {
            "benchmark": "stage-1 training throughput, default model, batch 100",
            "device": str(device),
            "images_per_epoch": count,
            "baseline": "fp32",
            "variants": runs,
        },
    )


if __name__ == "__main__":
    main()
