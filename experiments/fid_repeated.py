"""E1: FID of x_test against sets of `count` images made of `n` distinct images.

    python -m experiments.fid_repeated --data ../shared/data/cifar10-jpeg

For each n (10, 20, 40, ..., 5120, 10000) and repetition, n distinct images are drawn
from x_train and repeated to `count` images (each count // n times, the remainder going
to randomly chosen images). Features are extracted once per distinct image over the
whole protocol; each set's statistics are the count-weighted statistics of its distinct
images (fid.stats.weighted_statistics), equal to those of the repeated set itself.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.common import (
    add_common_options,
    build_engine,
    check_options,
    finish,
    load_split,
    plot_fid_curve,
    read_published,
    summarise,
    test_reference,
)
from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.options import cache_scope
from fid.stats import weighted_statistics
from selection.datasets import SPLIT_SIZES
from vae_sweep.checks import at_least, distinct, positive_list
from vae_sweep.cli import Parser, int_list
from vae_sweep.errors import InputError, run_cli

DEFAULT_SIZES = (10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10000)
DEFAULT_TOTAL = 10_000


@dataclass(frozen=True)
class RepeatedSet:
    size: int  # distinct images
    repetition: int
    indices: np.ndarray  # (size,) sorted indices into the training pool
    counts: np.ndarray  # (size,) how often each appears; sums to the set's total


def draw_repeated_set(
    pool_size: int, size: int, total: int, *, seed: int, repetition: int
) -> RepeatedSet:
    """One seeded draw; the generator depends only on (seed, size, repetition)."""
    rng = np.random.default_rng([seed, size, repetition])
    indices = np.sort(rng.choice(pool_size, size, replace=False))
    counts = np.full(size, total // size, dtype=np.int64)
    counts[rng.choice(size, total % size, replace=False)] += 1
    return RepeatedSet(size, repetition, indices, counts)


def plan(
    pool_size: int, sizes, repetitions: int, total: int, seed: int
) -> list[RepeatedSet]:
    for size in sizes:
        if size < 1 or size > min(total, pool_size):
            raise InputError(
                f"--sizes: {size} distinct images must be between 1 and "
                f"min(--count {total}, training pool {pool_size})"
            )
    return [
        draw_repeated_set(pool_size, size, total, seed=seed, repetition=r)
        for size in sizes
        for r in range(repetitions)
    ]


def distinct_indices(draws: list[RepeatedSet]) -> np.ndarray:
    """Sorted indices of every training image any draw uses: the images to extract."""
    return np.unique(np.concatenate([d.indices for d in draws]))


def fids_from_features(
    draws: list[RepeatedSet],
    distinct: np.ndarray,
    features: np.ndarray,
    reference: FrechetReference,
) -> pd.DataFrame:
    """Each draw's FID from the features of `distinct`; a row per (size, repetition)."""
    rows = []
    for draw in draws:
        rows_of_draw = np.searchsorted(distinct, draw.indices)
        stats = weighted_statistics(features[rows_of_draw], draw.counts)
        rows.append(
            {
                "size": draw.size,
                "repetition": draw.repetition,
                "fid": reference.distance(stats),
                "sample_count": stats.n,
            }
        )
    return pd.DataFrame(rows)


def run_protocol(
    train_images: np.ndarray,
    draws: list[RepeatedSet],
    engine: FIDEngine,
    reference: FrechetReference,
) -> pd.DataFrame:
    """Extract each distinct image once (cached), then every draw's FID."""
    distinct = distinct_indices(draws)
    features = engine.features(np.asarray(train_images[distinct]), desc="E1 distinct")
    return fids_from_features(draws, distinct, features, reference)


def plot(table: pd.DataFrame, total: int, published: pd.DataFrame | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    plot_fid_curve(
        axis,
        table,
        "size",
        title="E1: FID vs diversity",
        xlabel=f"distinct training images n (set of {total})",
        published=published,
        published_label="published (study, Table 1)",
    )
    return figure


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.fid_repeated", __doc__)
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=list(DEFAULT_SIZES),
        help="comma-separated numbers of distinct images",
    )
    parser.add_argument(
        "--count", type=int, default=DEFAULT_TOTAL, help="images in each set"
    )
    # its name before it matched E2's --count; kept so old scripts still run
    parser.add_argument("--total", type=int, dest="count", help=argparse.SUPPRESS)
    add_common_options(parser, "results/fid_repeated")
    return parser


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    check_options(args, "count", "repetitions", "batch_size")
    at_least(args, 2, "count")
    positive_list(args, "sizes")
    distinct(args, "sizes")
    if max(args.sizes) > (pool := SPLIT_SIZES["train"]):
        raise InputError(f"--sizes: {max(args.sizes)} distinct images is more than "
                         f"the CIFAR-10 training set ({pool})")  # fmt: skip
    if max(args.sizes) > args.count:
        raise InputError(f"--sizes: {max(args.sizes)} distinct images is more than "
                         f"--count {args.count}")  # fmt: skip
    published = read_published(args.published, "size")  # checked before work
    with cache_scope(args):
        _run(args, published)


def _run(args: argparse.Namespace, published) -> None:
    started = time.time()
    train = load_split(args, "train")
    draws = plan(len(train), args.sizes, args.repetitions, args.count, args.seed)
    engine = build_engine(args)
    reference = test_reference(args, engine)
    raw = run_protocol(train.images, draws, engine, reference)
    table = summarise(raw, "size")
    finish(
        args,
        "fid_repeated",
        table,
        plot(table, args.count, published),
        train=train,
        engine=engine,
        started=started,
    )


if __name__ == "__main__":
    run_cli(main)
