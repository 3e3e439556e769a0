"""What the E1 and E2 commands share: their common options and checks, the data and
the FID engine those options describe, the figure of a FID curve, and the outputs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.protocols.summary import DEFAULT_REPETITIONS
from experiments.published_tables import study_table
from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.options import FIDOptions, add_network_options, check_network_options
from fid.options import build_engine as engine_from_options
from selection.datasets import SPLIT_SIZES, ImageSet, load_cifar10
from vae_sweep.checks import at_least, at_most, data_folder, writable_folder
from vae_sweep.cli import seed, text
from vae_sweep.devices import resolve_device
from vae_sweep.errors import InputError
from vae_sweep.files import atomic_path


def add_common_options(parser: argparse.ArgumentParser, out_default: str) -> None:
    parser.add_argument(
        "--data",
        type=text,
        default=None,
        help="CIFAR-10 root: python batches, or train/test image folders "
        "or zips (default $VAE_SWEEP_DATA, else ./data)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download CIFAR-10 into --data if it is not there",
    )
    parser.add_argument("--out", type=text, default=out_default, help="output folder")
    parser.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS,
                        help="independent draws per point, for the mean and "
                        "sample variance")  # fmt: skip
    parser.add_argument("--seed", type=seed, default=0, help="seed of every draw")
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="reference statistics from only N test images, spread over the classes "
        "(quick runs; published figures use all 10,000)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per batch (default: 16 on CPU, 200 on CUDA)",
    )
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:1, ...")  # fmt: skip
    add_network_options(parser)
    parser.add_argument(
        "--published",
        type=text,
        default=None,
        metavar="CSV",
        help="a table of published values to draw beside this project's (columns: "
        "the size or tile count, fid_mean; default: the study's own table, "
        "experiments/published; none: no overlay)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def read_published(path: str | None, x: str) -> tuple[pd.DataFrame | None, str]:
    """The published values to overlay and their label, checked (one line naming the
    file if bad): the study's own table by default, `path`'s, or none ("none")."""
    if path is not None and path.lower() == "none":
        return None, ""
    if path is None:
        return study_table(x)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise InputError(f"--published {path}: cannot read it ({error})") from None
    missing = {x, "fid_mean"} - set(table.columns)
    if missing:
        raise InputError(
            f"--published {path}: needs the columns {x} and fid_mean, missing "
            f"{', '.join(sorted(missing))}"
        )
    return table, f"published ({Path(path).name})"


def check_options(args: argparse.Namespace, *positive: str) -> None:
    """The options E1 and E2 share, before any work: the named counts at least 1,
    a reference of at least two test images, the device, a writable --out."""
    at_least(args, 1, *positive)
    at_least(args, 2, "test_limit")  # a covariance needs two images
    at_most(args, SPLIT_SIZES["test"], "the CIFAR-10 test set", "test_limit")
    resolve_device(args.device)
    writable_folder(args.out, f"--out {args.out}")
    data_folder(args)
    check_network_options(args)


def load_split(
    args: argparse.Namespace, split: str, limit: int | None = None
) -> ImageSet:
    return load_cifar10(
        args.data,
        split,
        download=args.download,
        limit=limit,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )


def build_engine(args: argparse.Namespace) -> FIDEngine:
    return engine_from_options(FIDOptions.from_args(args), args.batch_size)


def test_reference(args: argparse.Namespace, engine: FIDEngine) -> FrechetReference:
    test = load_split(args, "test", args.test_limit)
    return engine.reference(np.asarray(test.images), sha256=test.sha256)


def plot_fid_curve(
    axis,
    table: pd.DataFrame,
    x: str,
    *,
    xlabel: str,
    title: str,
    log_base: int = 10,
    published: pd.DataFrame | None = None,
    published_label: str = "published",
) -> None:
    """FID mean with a one-sd error bar against `x` on a log axis, beside the
    published values when given (a table with `x` and `fid_mean` columns)."""
    axis.errorbar(
        table[x],
        table["fid_mean"],
        yerr=np.sqrt(table["fid_variance_ddof1"]),
        marker="o",
        capsize=3,
        label="this project",
    )
    if published is not None:
        axis.plot(published[x], published["fid_mean"], "s--", color="0.3",
                  label=published_label)  # fmt: skip
        axis.legend(fontsize=8)
    axis.set_xscale("log", base=log_base)
    axis.set_xticks(table[x], [str(v) for v in table[x]], rotation=45, fontsize=8)
    axis.minorticks_off()
    axis.set_xlabel(xlabel)
    axis.set_ylabel("FID against x_test (mean ± sd)")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)


def finish(
    args: argparse.Namespace,
    name: str,
    table: pd.DataFrame,
    figure,
    *,
    train: ImageSet,
    engine: FIDEngine,
    started: float,
) -> None:
    """Write the experiment's outputs and print its table."""
    meta = {
        **vars(args),
        "train_sha256": train.sha256,
        "network": engine.extractor.key,
        "seconds": time.time() - started,
    }
    write_outputs(Path(args.out), name, table, figure, meta)
    print(table.drop(columns="fid_values").to_string(index=False))


def write_outputs(
    out: Path, name: str, table: pd.DataFrame, figure, meta: dict
) -> None:
    """`name.parquet`, `name.png` and `name.json` (the run's options), each atomic."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{name}.parquet", suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out / f"{name}.png", suffix=".png") as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
    with atomic_path(out / f"{name}.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, default=str))
