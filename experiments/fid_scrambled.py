"""E2: FID against x_test of training images whose tiles are shuffled within each image.

    python -m experiments.fid_scrambled --data ../shared/data/cifar10-jpeg

Each image is cut into k equal tiles (k = 2: top and bottom halves; 4: a 2x2 grid of
16x16 tiles; ...; 1024: single pixels) and its tiles are permuted by a permutation of
its own. The same `count` training images (a seeded draw) are used at every level; each
repetition draws new permutations. Scrambled images are made batch by batch and streamed
through the network into running statistics, never all held at once.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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
from experiments.protocols.scrambled import (
    DEFAULT_COUNT,
    DEFAULT_TILES,
    level_rng,
    run_protocol,
    scramble_tiles,
    tile_grid,
)
from experiments.protocols.summary import summarise
from fid.options import cache_scope
from selection.datasets import SPLIT_SIZES
from vae_sweep.checks import at_least, at_most, distinct
from vae_sweep.cli import Parser, int_list
from vae_sweep.errors import InputError, run_cli


def plot(
    table: pd.DataFrame,
    example: np.ndarray,
    seed: int,
    published: pd.DataFrame | None = None,
    label: str = "the study, Table 2",
):
    """FID against k, and one image at every scramble level (k = 1 is the original)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [1, *table["tiles"].tolist()]
    figure = plt.figure(figsize=(max(6, 1.1 * len(levels)), 5.5))
    grid = figure.add_gridspec(2, len(levels), height_ratios=[3, 1], hspace=0.45)
    axis = figure.add_subplot(grid[0, :])
    plot_fid_curve(
        axis,
        table,
        "tiles",
        xlabel="tiles k per image",
        title="E2: FID vs scrambling",
        log_base=2,
        published=published,
        published_label=label,
    )
    for column, tiles in enumerate(levels):
        ax = figure.add_subplot(grid[1, column])
        ax.imshow(scramble_tiles(example[None], tiles, level_rng(seed, tiles, 0))[0])
        ax.set_title(f"k={tiles}", fontsize=8)
        ax.axis("off")
    return figure


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.fid_scrambled", __doc__)
    parser.add_argument(
        "--tiles",
        type=int_list,
        default=list(DEFAULT_TILES),
        help="comma-separated tile counts (powers of two up to 1024)",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=DEFAULT_COUNT,
        help="training images scrambled at each level",
    )
    add_common_options(parser, "results/fid_scrambled")
    return parser


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    check_options(args, "count", "repetitions", "batch_size")
    at_least(args, 2, "count")
    at_most(args, SPLIT_SIZES["train"], "the CIFAR-10 training set", "count")
    distinct(args, "tiles")
    for tiles in args.tiles:
        tile_grid(tiles)
    published = read_published(args.published, "tiles")  # checked before work
    with cache_scope(args):
        _run(args, published)


def _run(args: argparse.Namespace, published) -> None:
    started = time.time()
    train = load_split(args, "train")
    if not 2 <= args.count <= len(train):
        raise InputError(
            f"--count must be between 2 and {len(train)}, got {args.count}"
        )
    chosen = np.sort(
        np.random.default_rng(args.seed).permutation(len(train))[: args.count]
    )
    images = train.images[chosen]  # (count, 32, 32, 3) uint8
    engine = build_engine(args)
    reference = test_reference(args, engine)
    raw = run_protocol(
        images, args.tiles, args.repetitions, args.seed, engine, reference
    )
    table = summarise(raw, "tiles")
    finish(
        args,
        "fid_scrambled",
        table,
        plot(table, images[0], args.seed, *published),
        train=train,
        engine=engine,
        started=started,
    )


if __name__ == "__main__":
    run_cli(main)
