"""What computing the criterion scores beside the trials saves, against doing it first.

    python -m benchmarks.prerequisite_overlap --data ../shared/data/cifar10-jpeg

A small grid that mixes `random` and `lowest_recon` trials (the smoke grid's narrow
model on 10,000 training images, 2 sizes x 2 criteria x 2 seeds, 5 epochs; a
reference VAE of 5 epochs on all 10,000; the stand-in feature network), run on the
local Ray twice per round with empty score caches: serial (the reference VAE first,
then every trial: the order before) and overlapped (`random` trials start at once, the
`lowest_recon` ones when their scores exist). Rounds alternate the order, so both see
the same machine. Writes benchmarks/results/prerequisite_overlap.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import ray

from benchmarks.common import write_result

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [
    "fid.extractor=fid.standin:make_standin",
    "data.train_limit=10000",
    "data.test_limit=500",
    "grid.n_train=[2000, 4000]",
    "grid.criterion=[random, lowest_recon]",
    "grid.seed=[0, 1]",
    "stage1.epochs=5",
    "selection.reference_epochs=5",
    "resources.cpu=0.5",
    "fid_service.cpu=0.25",
]


def one_sweep(overlap: bool, datasets: Path) -> float:
    from sweep.driver import load_data, run_sweep
    from sweep.grid_file import load_grid
    from sweep.trials import expand

    work = Path(tempfile.mkdtemp(prefix="overlap-bench-"))
    (work / "cache").mkdir()
    (work / "cache" / "datasets").symlink_to(datasets)  # decoded once, shared
    os.environ["VAE_SWEEP_CACHE"] = str(work / "cache")  # empty score caches
    config = load_grid(ROOT / "grids" / "smoke.yaml", [*SETTINGS, f"storage={work}"])
    train, test = load_data(config)
    trials = expand(config, len(train))
    started = time.perf_counter()
    run_sweep(config, trials, f"{work}/smoke", train=train, test=test,
              address=None, resume=False, overlap=overlap)  # fmt: skip
    seconds = time.perf_counter() - started
    ray.shutdown()
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="CIFAR-10 root")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.data:
        os.environ["VAE_SWEEP_DATA"] = args.data
    from selection.datasets import load_cifar10

    shared = Path(tempfile.mkdtemp(prefix="overlap-datasets-"))
    for split in ("train", "test"):  # decoded into shared/datasets once
        load_cifar10(None, split, cache_dir=shared)
    datasets = shared / "datasets"
    runs = {"serial": [], "overlapped": []}
    for round_ in range(args.rounds):
        order = (
            ["serial", "overlapped"] if round_ % 2 == 0 else ["overlapped", "serial"]
        )
        for name in order:
            runs[name].append(one_sweep(name == "overlapped", datasets))
    serial, overlapped = (min(runs[k]) for k in ("serial", "overlapped"))
    write_result(
        "prerequisite_overlap",
        {
            "command": "python -m benchmarks.prerequisite_overlap "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "grid": "grids/smoke.yaml --set " + " --set ".join(SETTINGS),
            "sweep_seconds": runs,
            "best_serial_s": round(serial, 1),
            "best_overlapped_s": round(overlapped, 1),
            "speedup": round(serial / overlapped, 3),
        },
    )


if __name__ == "__main__":
    main()
