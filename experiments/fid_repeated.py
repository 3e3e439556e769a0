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

import pandas as pd

from experiments.fid_commands import (
    add_common_options,
    build_engine,
    check_options,
    finish,
    load_split,
    plot_fid_curve,
    read_published,
    test_reference,
)
from experiments.protocols.repeated import (
    DEFAULT_SIZES,
    DEFAULT_TOTAL,
    plan,
    run_protocol,
)
from experiments.protocols.summary import summarise
from fid.options import cache_scope
from selection.datasets import SPLIT_SIZES
from vae_sweep.checks import at_least, distinct, positive_list
from vae_sweep.cli import Parser, int_list
from vae_sweep.errors import InputError, run_cli


def plot(table: pd.DataFrame, total: int, published: pd.DataFrame | None = None,
         label: str = "the study, Table 1"):  # fmt: skip
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
        published_label=label,
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
        plot(table, args.count, *published),
        train=train,
        engine=engine,
        started=started,
    )


if __name__ == "__main__":
    run_cli(main)
