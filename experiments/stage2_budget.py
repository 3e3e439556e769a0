"""Is stage 2 trained to a plateau? One finished trial's stage 1, its stage 2 trained
again at several budgets, and the two-stage prior's samples scored at each.

    python -m experiments.stage2_budget RESULTS_DIR --trial ID \
        [--steps 10000,20000,40000] [--samples 1000] [--out FILE]

Stage 2 learns its decoder scale gamma_z, which Dai & Wipf's analysis drives towards 0:
its reconstruction error keeps falling for as long as it trains, so a flat loss is no
test of it. What matters is whether the samples still change. For each budget B the
grid's stage-2 schedule is stretched to B steps (the learning rate still halves
`B / steps` times as often as the grid's) and trained from the trial's own seed on its
own training images' posteriors; 1,000 (`--samples`) two-stage samples, drawn as the
trial drew them, go through the FID network and are scored against all of x_test:
KID, FID and precision/recall/density/coverage. The grid's own budget is one of the
rows and reproduces the trial's `kid_two_stage` (the check that this is the trial's
model, printed beside it).

The trial must be one whose criterion reads no scores (random, class_balanced, all):
the others' scores live in the driver's cache under keys of its own. Writes one JSON
(default `<RESULTS_DIR>/stage2_budget_<ID>.json`) and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from fid.cache import FIDCache, cached_features
from fid.distance import FrechetReference
from fid.features import InceptionExtractor, extract_features
from fid.fidelity import fidelity
from fid.sample_metrics import kid
from fid.stats import statistics
from selection.criteria import select
from sweep.driver import load_data
from sweep.grid_file import load_grid
from sweep.trainable import STATE_FILE
from sweep.trials import settings
from vae.evaluate import latent_summary
from vae.priors import PriorContext, sample_images
from vae.trainer import new_trainer
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import atomic_path

NO_SCORES = ("random", "class_balanced", "all")


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.stage2_budget", __doc__)
    parser.add_argument("folder", type=text, metavar="RESULTS_DIR",
                        help="a sweep folder (<storage>/<name>)")  # fmt: skip
    parser.add_argument("--trial", type=text, required=True,
                        help="the trial id (its folder is trial_<ID>)")  # fmt: skip
    parser.add_argument("--steps", type=text, default="10000,20000,40000",
                        help="stage-2 budgets in steps, comma-separated")  # fmt: skip
    parser.add_argument("--samples", type=int, default=1000,
                        help="two-stage samples scored per budget")  # fmt: skip
    parser.add_argument("--out", type=text, default=None,
                        help="the JSON (default <RESULTS_DIR>/stage2_budget_<ID>.json)")
    return parser


def _budgets(value: str) -> list[int]:
    try:
        budgets = [int(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"--steps {value!r}: comma-separated whole numbers") from None
    if not budgets or min(budgets) < 1:
        raise InputError(f"--steps {value!r}: each budget at least 1 step")
    return budgets


def _last_checkpoint(trial: Path) -> Path:
    found = sorted(trial.glob("checkpoint_*/" + STATE_FILE))
    if not found:
        raise InputError(f"{trial}: no checkpoint holds a stage-1 state")
    return found[-1]


def stretched(options, steps: int, grid_steps: int):
    """Stage-2 options trained for `steps`, its step schedule scaled alike."""
    train = options.train
    lr_step = train.lr_step and max(1, round(train.lr_step * steps / grid_steps))
    # a round must divide the budget and the schedule's step (TrainConfig's rule)
    rounds = math.gcd(steps, lr_step or steps, train.round_steps or steps)
    return dataclasses.replace(
        options, train=dataclasses.replace(train, steps=steps, lr_step=lr_step,
                                           round_steps=rounds))  # fmt: skip


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    budgets = _budgets(args.steps)
    if args.samples < 2:
        raise InputError(f"--samples {args.samples}: at least 2")
    trial_dir = folder / f"trial_{args.trial}"
    if not (folder / "grid.yaml").is_file() or not trial_dir.is_dir():
        raise InputError(f"{trial_dir}: no such trial in a sweep folder")
    grid = load_grid(folder / "grid.yaml")
    params = json.loads((trial_dir / "params.json").read_text())["trial"]
    if params["criterion"] not in NO_SCORES:
        raise InputError(f"--trial {args.trial}: its criterion "
                         f"{params['criterion']} reads scores; pick a trial of "
                         f"{', '.join(NO_SCORES)}")  # fmt: skip
    reported = [json.loads(line) for line in (trial_dir / "result.json").open()]
    final = next((r for r in reported if "kid_two_stage" in r), None)
    out = Path(args.out) if args.out else folder / f"stage2_budget_{args.trial}.json"
    torch.set_num_threads(1)  # beside a running sweep

    s = settings(grid, params, device="cpu")
    train, test = load_data(grid)
    chosen = select(s.criterion, train, s.n_train, seed=s.seed, scores=None)
    subset = train.images[chosen.indices]
    trainer = new_trainer(s.model, torch.from_numpy(subset), s.stage1, loss=s.loss,
                          kl_weight=s.kl_weight)  # fmt: skip
    state = torch.load(_last_checkpoint(trial_dir), map_location="cpu",
                       weights_only=True)  # fmt: skip
    trainer.load_state_dict(state)
    model = trainer.model.eval()
    means, log_vars, _ = latent_summary(model, subset)

    extractor = InceptionExtractor(device="cpu")

    def extract(images):
        return extract_features(images, extractor, progress=False)

    real = cached_features(FIDCache(), extractor.key, test.images, extract)
    reference = FrechetReference(statistics(real))
    grid_steps = s.two_stage.train.steps
    rows = []
    for steps in budgets:
        started = time.time()
        options = stretched(s.two_stage, steps, grid_steps)
        ctx = PriorContext(model, means, seed=s.seed, train_log_vars=log_vars,
                           two_stage=options)  # fmt: skip
        features = extract(sample_images("two_stage", ctx, args.samples))
        history = ctx.stage2.result.history
        row = {"steps": steps, "lr_step": ctx.two_stage.train.lr_step,
               "kid": kid(features, real, seed=s.seed).mean,
               "fid": reference.distance(statistics(features)),
               **fidelity(real, features).as_dict(),
               "stage2_loss": history[-1].loss, "stage2_mse": history[-1].mse,
               "gamma_z": ctx.stage2.gamma,
               "seconds": time.time() - started}  # fmt: skip
        if steps == grid_steps and final is not None:
            row["sweep_kid"] = final["kid_two_stage"]
        rows.append(row)
        print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in row.items()), flush=True)  # fmt: skip
    report = {"folder": str(folder), "trial": args.trial, "params": params,
              "samples": args.samples, "grid_steps": grid_steps, "rows": rows}
    with atomic_path(out, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    run_cli(main)
