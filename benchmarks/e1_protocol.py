"""Cost of E1's full protocol (11 sizes x 10 repetitions) against extracting its
distinct images' features alone.

    python -m benchmarks.e1_protocol --data ../shared/data/cifar10-jpeg [--full]

The protocol is: extract each distinct image once, then for each of the 110 draws the
count-weighted statistics and one FID against a cached reference square root. The
statistics-and-FID phase always runs at full scale (110 draws, 10,000-image sets, d =
2048). The extraction phase runs in full with `--full` (meant for a GPU); without it,
the real network's throughput is measured on `--measure` images and the time for all
distinct images is projected from it (the ~45k distinct images take over an hour on a
2-core CPU). The naive protocol, extracting all 10,000 images of every draw, is given
for comparison. Writes benchmarks/results/e1_protocol_<device>.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import timed, write_result
from experiments.protocols.repeated import (
    DEFAULT_SIZES,
    DEFAULT_TOTAL,
    distinct_indices,
    fids_from_features,
    plan,
)
from fid.distance import FrechetReference
from fid.features import InceptionExtractor, extract_features
from fid.stats import statistics
from selection.datasets import load_cifar10
from vae_sweep.devices import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: the extractor's preferred batch",
    )
    parser.add_argument(
        "--measure",
        type=int,
        default=300,
        help="images timed to project extraction (without --full)",
    )
    parser.add_argument(
        "--full", action="store_true", help="extract every distinct image"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    train = load_cifar10(args.data, "train")
    draws = plan(len(train), DEFAULT_SIZES, 10, DEFAULT_TOTAL, seed=0)
    distinct = distinct_indices(draws)
    extractor = InceptionExtractor(device=str(device))
    extract_features(
        np.array(train.images[distinct[:64]]),
        extractor,
        batch_size=args.batch_size,
        progress=False,
    )  # warm-up

    measured = distinct if args.full else distinct[: args.measure]
    extract_s, features = timed(
        extract_features,
        np.array(train.images[measured]),
        extractor,
        batch_size=args.batch_size,
    )
    per_image_s = extract_s / len(measured)
    extraction_s = per_image_s * len(distinct)
    if not args.full:  # same shape and dtype as real features: the cost is the same
        rng = np.random.default_rng(0)
        features = rng.gamma(0.5, 0.6, (len(distinct), extractor.dim)).astype(
            np.float32
        )
    reference = FrechetReference(statistics(features[:DEFAULT_TOTAL]))
    fid_phase_s, table = timed(fids_from_features, draws, distinct, features, reference)
    naive_images = len(draws) * DEFAULT_TOTAL
    write_result(
        f"e1_protocol_{device.type}",
        {
            "benchmark": "E1 protocol cost vs extracting its distinct images",
            "device": str(device),
            "draws": len(draws),
            "set_size": DEFAULT_TOTAL,
            "distinct_images": int(len(distinct)),
            "extraction": "measured in full"
            if args.full
            else f"projected from {len(measured)} images",
            "extraction_images_per_s": 1.0 / per_image_s,
            "extraction_s": extraction_s,
            "statistics_and_fid_s": fid_phase_s,
            "protocol_s": extraction_s + fid_phase_s,
            "protocol_over_extraction": (extraction_s + fid_phase_s) / extraction_s,
            "naive_extraction_images": naive_images,
            "naive_over_protocol": per_image_s
            * naive_images
            / (extraction_s + fid_phase_s),
            "fids": len(table),
        },
    )


if __name__ == "__main__":
    main()
