"""The sweep's front door.

    python -m sweep.run grids/smoke.yaml [--address auto|HOST:PORT] [--resume]
                                         [--dry-run] [--set key.path=value ...]

Validates the grid (nothing starts on a bad file), saves the resolved grid beside the
results, starts or joins Ray, puts the datasets in the object store once, starts the
named FID actor(s), computes the shared prerequisites once (x_train features, reference
VAE scores), runs the trials on Ray Tune, and writes results.parquet and
history.parquet into <storage>/<name>/.
"""

from __future__ import annotations

import argparse
import sys

from selection.errors import InputError, run_cli
from sweep.config import GridConfig, load_grid, resolved_yaml
from sweep.storage import join, read_text, write_bytes
from sweep.trials import estimate, expand, trial_name

GRID_FILE = "grid.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("grid", help="grid YAML file")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join ('auto' or HOST:PORT); default: a local Ray",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the sweep in <storage>/<name>"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the trials and their cost; exit"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a grid value (YAML), e.g. --set stage1.epochs=2",
    )
    return parser


def print_plan(config: GridConfig, trials: list[dict]) -> None:
    cost = estimate(config, trials)
    print(
        f"{config.name}: {config.kind}, {len(trials)} trials -> "
        f"{join(config.storage, config.name)}"
    )
    for number, params in enumerate(trials, 1):
        print(f"  {number:4d}  {trial_name(params)}")
    print(
        f"cost: {cost['stage1_images']:,} stage-1 training images, "
        f"{cost['fid_images']:,} FID images; about {cost['hours']:.2f} hours at "
        f"{config.estimate.train_images_per_s:g} training and "
        f"{config.estimate.fid_images_per_s:g} FID images/s (the grid's estimate "
        f"section), divided by the number of trials running at once"
    )


def check_storage(folder: str, text: str, resume: bool) -> None:
    """A new sweep needs an empty place; a resumed one the same resolved grid."""
    saved = read_text(join(folder, GRID_FILE))
    if resume and saved is None:
        raise InputError(f"{folder}: nothing to resume (no {GRID_FILE} there)")
    if resume and saved != text:
        raise InputError(
            f"{join(folder, GRID_FILE)}: the grid differs from the one this sweep "
            f"started with; resume with the same file and --set values"
        )
    if not resume and saved is not None:
        raise InputError(
            f"{folder} already holds a sweep: pass --resume to continue it, or "
            f"choose another name or storage"
        )


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    config = load_grid(args.grid, args.set)
    trials = expand(config)
    if args.dry_run:
        print_plan(config, trials)
        return
    folder = join(config.storage, config.name)
    text = resolved_yaml(config)
    check_storage(folder, text, args.resume)

    # torch and Ray load only past validation: a bad grid fails in a blink
    from sweep.driver import check_local_resources, load_data, run_sweep

    if args.address is None:
        check_local_resources(config)
    train, test = load_data(config)  # a bad data path stops here, before any write
    trials = expand(config, len(train))
    # the resolved grid is saved before any trial starts
    write_bytes(join(folder, GRID_FILE), text.encode())
    table = run_sweep(
        config,
        trials,
        folder,
        train=train,
        test=test,
        address=args.address,
        resume=args.resume,
    )
    if table.empty or (table["status"] == "error").any():
        print("some trials failed: see the status and error columns", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
