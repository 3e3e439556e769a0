"""FID between two image sets, in the manner of pytorch-fid.

    python -m fid PATH1 PATH2                   # prints the FID
    python -m fid PATH1 PATH2 --kid --fid-inf   # also KID and FID-infinity
    python -m fid --save-stats PATH OUT.npz     # writes mu, sigma, n of PATH

Each PATH is an image folder, a zip of one, or an `.npz` of statistics (`mu`, `sigma`).
KID needs images on both sides; FID-infinity extrapolates PATH1's sample count (its
images) against PATH2 (images or statistics). See fid/sample_metrics.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fid.distance import FrechetReference, frechet_distance
from fid.engine import FIDEngine
from fid.fidelity import DC_K, fidelity
from fid.memorization import memorization
from fid.options import (
    FIDOptions,
    add_network_options,
    build_engine,
    check_network_options,
)
from fid.sample_metrics import (
    FID_INF_MIN_SAMPLES,
    FID_INF_SMALLEST,
    fid_infinity,
    kid,
)
from fid.stats import Statistics, warn_small_sample
from selection.datasets import count_images, load_images
from vae_sweep.checks import writable_folder
from vae_sweep.cli import Parser, seed, text
from vae_sweep.devices import resolve_device
from vae_sweep.errors import InputError, run_cli


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m fid", __doc__)
    parser.add_argument(
        "paths",
        type=text,
        nargs=2,
        metavar="PATH",
        help="image folder, zip of one, or .npz statistics; with "
        "--save-stats: the images, then the output .npz",
    )
    parser.add_argument(
        "--save-stats",
        action="store_true",
        help="write the statistics of the first PATH to the second",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per batch (default: 16 on CPU, 200 on CUDA)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N images in sorted file order (default: all)",
    )
    add_network_options(parser)
    parser.add_argument(
        "--kid",
        action="store_true",
        help="also KID: unbiased MMD^2, cubic kernel, 100 subsets of 1000 (Binkowski "
        "et al. 2018), with its standard deviation",
    )
    parser.add_argument(
        "--fid-inf",
        action="store_true",
        help="also FID-infinity of PATH1: FID against 1/n, extrapolated to n = "
        "infinity (Chong & Forsyth 2020)",
    )
    parser.add_argument(
        "--prdc",
        action="store_true",
        help="also precision and recall (k = 3, Kynkaanniemi et al. 2019) and density "
        "and coverage (k = 5, Naeem et al. 2020), PATH1 being the real set",
    )
    parser.add_argument(
        "--memorization",
        type=text,
        default=None,
        metavar="TRAIN",
        help="also the share of PATH2's images that copy an image of TRAIN (a folder "
        "or zip): nearest / second-nearest distance below 1/3 in Inception features",
    )
    parser.add_argument("--seed", type=seed, default=0,
                        help="seed of the subsets of KID and FID-inf")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 2:
        raise InputError(f"--limit must be at least 2 images, got {args.limit}")
    resolve_device(args.device)
    if args.save_stats and not args.paths[1].endswith(".npz"):
        raise InputError(f"{args.paths[1]}: the statistics output must end in .npz")
    for path in args.paths[: 1 if args.save_stats else 2]:
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or directory")
    if args.save_stats:
        output = Path(args.paths[1])
        if output.is_dir():
            raise InputError(f"{output}: is a folder; name the .npz file to write")
        writable_folder(output.parent, f"{output}: its folder {output.parent}")
    inputs = args.paths[: 1 if args.save_stats else 2]
    if not all(path.endswith(".npz") for path in inputs):  # some images: the network
        check_network_options(args)
    extras = {"--kid": args.kid, "--fid-inf": args.fid_inf, "--prdc": args.prdc,
              "--memorization": args.memorization is not None}  # fmt: skip
    if args.save_stats and any(extras.values()):
        raise InputError(f"{', '.join(f for f, on in extras.items() if on)} compare "
                         f"two sets: drop --save-stats")  # fmt: skip
    needs = {"--fid-inf": args.paths[:1], "--kid": args.paths, "--prdc": args.paths,
             "--memorization": args.paths[1:]}  # fmt: skip
    for flag, paths in needs.items():
        for path in paths if extras[flag] else ():
            if path.endswith(".npz"):
                raise InputError(f"{path}: {flag} needs images, not statistics")
    if args.prdc:
        for path in args.paths:
            count = min(count_images(path), args.limit or count_images(path))
            if count < DC_K + 1:
                raise InputError(f"--prdc: {path} gives {count} images; density and "
                                 f"coverage (k = {DC_K}) need at least "
                                 f"{DC_K + 1}")  # fmt: skip
    if args.memorization is not None:
        if not Path(args.memorization).exists():
            raise InputError(f"--memorization {args.memorization}: no such file or "
                             f"directory")  # fmt: skip
        if count_images(args.memorization) < 2:
            raise InputError(f"--memorization {args.memorization}: needs at least 2 "
                             f"training images")  # fmt: skip
    if args.fid_inf:
        count = count_images(args.paths[0])
        count = min(count, args.limit) if args.limit else count
        if count < FID_INF_MIN_SAMPLES:
            raise InputError(
                f"--fid-inf: {args.paths[0]} gives {count:,} images; FID-infinity "
                f"needs at least {FID_INF_MIN_SAMPLES:,} (its 1/n law holds from "
                f"about {FID_INF_SMALLEST:,})"
            )


class _Session:
    """Builds the network only when some PATH actually holds images."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._engine: FIDEngine | None = None

    def engine(self) -> FIDEngine:
        if self._engine is None:
            self._engine = build_engine(FIDOptions.from_args(self.args),
                                        self.args.batch_size)  # fmt: skip
        return self._engine

    def _images(self, path: str):
        a = self.args
        data = load_images(
            path,
            size=None,
            limit=a.limit,
            cache=not a.no_cache,
            cache_dir=a.cache_dir,
            progress=not a.quiet,
        )
        if len(data) < 2:
            raise InputError(f"{path}: need at least 2 images for a covariance")
        return data

    def stats(self, path: str) -> Statistics:
        if path.endswith(".npz"):
            return Statistics.load(path)
        data = self._images(path)
        return self.engine().stats(
            data.images,
            sha256=data.sha256,
            cache=not self.args.no_cache,
            desc=Path(path).name,
        )

    def features(self, path: str):
        data = self._images(path)
        return self.engine().features(
            data.images,
            sha256=data.sha256,
            cache=not self.args.no_cache,
            desc=Path(path).name,
        )


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    _check_args(args)
    session = _Session(args)
    if args.save_stats:
        stats = session.stats(args.paths[0])
        stats.save(args.paths[1])
        print(
            f"saved statistics of {stats.n} images to {args.paths[1]}", file=sys.stderr
        )
        return
    first, second = (session.stats(p) for p in args.paths)
    try:
        value = frechet_distance(first, second)
    except ValueError as error:
        raise InputError(f"{args.paths[0]} vs {args.paths[1]}: {error}") from None
    counts = [str(s.n) if s.n >= 0 else "unknown" for s in (first, second)]
    print(f"samples: {counts[0]} vs {counts[1]}", file=sys.stderr)
    if min(first.n, second.n) >= 0:
        warn_small_sample(min(first.n, second.n), "samples")
    print(f"FID: {value}")
    if args.kid:
        result = kid(session.features(args.paths[0]), session.features(args.paths[1]),
                     seed=args.seed)  # fmt: skip
        print(f"KID: {result.mean} +- {result.std} ({result.subsets} subsets of "
              f"{result.subset_size})")  # fmt: skip
    if args.fid_inf:
        result = fid_infinity(session.features(args.paths[0]),
                              FrechetReference(second), seed=args.seed)  # fmt: skip
        print(f"FID-infinity: {result.value} (FID at n = {result.sizes[0]} .. "
              f"{result.sizes[-1]}, slope {result.slope:.4g} per 1/n)")  # fmt: skip
    if args.prdc:
        scores = fidelity(session.features(args.paths[0]),
                          session.features(args.paths[1])).as_dict()  # fmt: skip
        for name, value in scores.items():
            print(f"{name}: {value}")
    if args.memorization is not None:
        copied = memorization(session.features(args.paths[1]),
                              session.features(args.memorization))  # fmt: skip
        print(f"memorization: {copied.rate} ({copied.copies} of {len(copied.ratios)} "
              f"samples of {args.paths[1]} within 1/3 of one image of "
              f"{args.memorization})")  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
