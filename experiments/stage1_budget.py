"""Is stage 1 trained to a plateau? One finished trial's stage 1 trained again at
several budgets, and its priors' samples scored at each.

    python -m experiments.stage1_budget RESULTS_DIR --trial ID \
        [--steps 4000,8000,16000] [--priors gaussian,gmm] [--samples N] \
        [--threads N] [--out FILE]

A flat loss is no test of a VAE whose decoder scale follows its error (the calibrated
decoder, `optimal_gamma`): its reconstruction error keeps falling slowly while its
samples may still change a great deal. So the test is the samples. For each budget B
the trial's stage 1 is trained from its own seed on its own training images with the
grid's step schedule stretched to B steps (its learning rate halves as many times
over the run); at the grid's own budget the trial's last checkpoint is loaded
instead. `--samples` (default the grid's `fid.samples`) samples of each of `--priors`
(gaussian, gmm: the priors stage 1 alone decides), drawn as the trial drew them, go
through the grid's feature network and are scored against the grid's x_test: KID,
FID, precision/recall/density/coverage; beside them the final per-pixel MSE, gamma
and the loss-plateau test (`converged`: under 1% from the fourth fifth to the last).
At the grid's own budget and sample count each prior's KID is printed beside the
trial's own as the check that the row is the trial's.

The trial must have finished with a criterion that reads no scores (random,
class_balanced, all) and a stage 1 budgeted in steps. Writes one JSON (default
`<RESULTS_DIR>/stage1_budget_<ID>.json`) and prints a row per budget and prior.
Give it `--threads 1` beside a running sweep, and to retrain a CPU trial's stage 1
bit for bit: Ray runs a trial of one CPU or less on one thread, and at another
thread count the sums differ in their last bits (tested: at the grid's own budget,
stage 1 trained afresh on one thread is the trial's, weight for weight).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from experiments.stage2_budget import (
    FEWEST_SAMPLES,
    _budgets,
    _extractor,
    check_trial,
    load_trial,
    stretched_schedule,
)
from fid.cache import FIDCache, cached_features
from fid.distance import FrechetReference
from fid.features import extract_features
from fid.fidelity import fidelity
from fid.sample_metrics import kid
from fid.stats import statistics
from selection.criteria import select
from sweep.driver import load_data
from vae.diagnostics import loss_plateau
from vae.evaluate import latent_summary
from vae.priors import PriorContext, sample_images
from vae.trainer import new_trainer
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import atomic_path

STAGE1_PRIORS = ("gaussian", "gmm")  # what stage 1 alone decides


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.stage1_budget", __doc__)
    parser.add_argument("folder", type=text, metavar="RESULTS_DIR",
                        help="a sweep folder (<storage>/<name>)")  # fmt: skip
    parser.add_argument("--trial", type=text, required=True,
                        help="the trial id (its folder is trial_<ID>)")  # fmt: skip
    parser.add_argument("--steps", type=text, default="4000,8000,16000",
                        help="stage-1 budgets in steps, comma-separated")  # fmt: skip
    parser.add_argument("--priors", type=text, default="gaussian,gmm",
                        help="priors to score, of gaussian and gmm")  # fmt: skip
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per prior and budget (default: fid.samples)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own)")  # fmt: skip
    parser.add_argument("--out", type=text, default=None,
                        help="the JSON (default <RESULTS_DIR>/stage1_budget_<ID>.json)")
    return parser


def _priors(value: str, grid) -> list[str]:
    priors = [p.strip() for p in value.split(",") if p.strip()]
    wrong = [p for p in priors if p not in STAGE1_PRIORS]
    if not priors or wrong:
        raise InputError(f"--priors {value!r}: choose from {', '.join(STAGE1_PRIORS)}")
    return priors


def trained_stage1(trial, steps: int):
    """The trial's stage 1 trained afresh for `steps` (schedule stretched), with its
    training history."""
    s = trial.settings
    train, _ = load_data(trial.grid)
    chosen = select(s.criterion, train, s.n_train, seed=s.seed, scores=None)
    subset = torch.from_numpy(train.images[chosen.indices])
    config = stretched_schedule(s.stage1, steps, s.stage1.steps)
    trainer = new_trainer(s.model, subset, config, loss=s.loss, kl_weight=s.kl_weight)
    result = trainer.run()
    if result.outcome != "completed":
        raise RuntimeError(f"stage 1 at {steps} steps: {result.outcome}")
    model = trainer.model.eval()
    means, _, _ = latent_summary(model, subset.numpy())
    return model, means, [r.mse for r in result.history], trainer.history[-1].gamma, \
        config.lr_step  # fmt: skip


def score_budget(trial, steps: int, state: dict, priors, samples: int, extract, real,
                 reference: FrechetReference) -> list[dict]:  # fmt: skip
    started = time.time()
    s = trial.settings
    if steps == s.stage1.steps:  # the trial's own stage 1, as it finished
        model, means = trial.model, trial.means
        mses = [r["mse"] for r in state["history"]]
        gamma, lr_step = state["history"][-1].get("gamma"), s.stage1.lr_step
    else:
        model, means, mses, gamma, lr_step = trained_stage1(trial, steps)
    converged, change = loss_plateau(mses)
    trained = time.time() - started
    rows = []
    for prior in priors:
        ctx = PriorContext(model, means, seed=s.seed, gmm=s.gmm)
        features = extract(sample_images(prior, ctx, samples))
        rows.append({"steps": steps, "lr_step": lr_step, "prior": prior,
                     "kid": kid(features, real, seed=s.seed).mean,
                     "fid": reference.distance(statistics(features)),
                     **fidelity(real, features).as_dict(),
                     "mse": float(mses[-1]), "gamma": gamma,
                     "converged": converged, "loss_change": change,
                     "train_seconds": trained})  # fmt: skip
    return rows


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    budgets = _budgets(args.steps)
    grid, params, state = check_trial(folder, args.trial, two_stage=False)
    priors = _priors(args.priors, grid)
    if grid.stage1.steps is None:
        raise InputError(f"{folder}: its stage 1 is budgeted in epochs; this tool "
                         "stretches a step budget (stage1.steps)")  # fmt: skip
    samples = grid.fid.samples if args.samples is None else args.samples
    if samples < FEWEST_SAMPLES:
        raise InputError(f"--samples {samples}: at least {FEWEST_SAMPLES}")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: at least 1")
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else folder / f"stage1_budget_{args.trial}.json"
    trial = load_trial(folder, args.trial, grid, params, state)
    extractor = _extractor(grid)

    def extract(images):
        return extract_features(images, extractor, progress=False)

    real = cached_features(FIDCache(), extractor.key, trial.test_images, extract)
    reference = FrechetReference(statistics(real))
    own = grid.stage1.steps
    rows = []
    for steps in budgets:
        for row in score_budget(trial, steps, state, priors, samples, extract, real,
                                reference):  # fmt: skip
            key = f"kid_{row['prior']}"
            if (steps == own and samples == grid.fid.samples and trial.final
                    and key in trial.final):  # fmt: skip
                row["sweep_kid"] = trial.final[key]
            rows.append(row)
            print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items()), flush=True)  # fmt: skip
    report = {"folder": str(folder), "trial": args.trial, "params": params,
              "samples": samples, "grid_steps": own, "rows": rows}  # fmt: skip
    with atomic_path(out, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=_plain) + "\n")
    print(f"written: {out}")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")


if __name__ == "__main__":
    run_cli(main)
