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
import time
from pathlib import Path

import torch

from experiments.finished_trial import (
    Scorer,
    Trial,
    add_trial_arguments,
    budgets,
    check_trial,
    load_trial,
    print_row,
    sample_count,
    stretched_schedule,
    use_threads,
    write_report,
)
from vae.diagnostics import loss_plateau
from vae.evaluate import latent_summary
from vae.priors import PriorContext, sample_images
from vae.trainer import new_trainer
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli

STAGE1_PRIORS = ("gaussian", "gmm")  # what stage 1 alone decides


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.stage1_budget", __doc__)
    add_trial_arguments(parser, steps="4000,8000,16000", what="stage-1",
                        out="stage1_budget_<ID>.json")  # fmt: skip
    parser.add_argument("--priors", type=text, default="gaussian,gmm",
                        help="priors to score, of gaussian and gmm")  # fmt: skip
    return parser


def _priors(value: str) -> list[str]:
    priors = [p.strip() for p in value.split(",") if p.strip()]
    if not priors or any(p not in STAGE1_PRIORS for p in priors):
        raise InputError(f"--priors {value!r}: choose from {', '.join(STAGE1_PRIORS)}")
    return priors


def trained_stage1(trial: Trial, steps: int):
    """The trial's stage 1 trained afresh for `steps` (schedule stretched): (model,
    training means, per-round MSEs, final gamma, lr_step)."""
    s = trial.settings
    config = stretched_schedule(s.stage1, steps, s.stage1.steps)
    trainer = new_trainer(s.model, torch.from_numpy(trial.subset), config,
                          loss=s.loss, kl_weight=s.kl_weight)  # fmt: skip
    result = trainer.run()
    if result.outcome != "completed":
        raise RuntimeError(f"stage 1 at {steps} steps: {result.outcome}")
    model = trainer.model.eval()
    means, _, _ = latent_summary(model, trial.subset)
    return (model, means, [r.mse for r in result.history], result.history[-1].gamma,
            config.lr_step)  # fmt: skip


def score_budget(trial: Trial, steps: int, state: dict, priors, samples: int,
                 scorer: Scorer) -> list[dict]:  # fmt: skip
    """Stage 1 at `steps` (the trial's own at its budget) and each prior's samples
    scored against x_test, a row per prior."""
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
        rows.append({"steps": steps, "lr_step": lr_step, "prior": prior,
                     **scorer.scores(sample_images(prior, ctx, samples)),
                     "mse": float(mses[-1]), "gamma": gamma,
                     "converged": converged, "loss_change": change,
                     "train_seconds": trained})  # fmt: skip
    return rows


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    steps_asked = budgets(args.steps)
    priors = _priors(args.priors)
    grid, params, state = check_trial(folder, args.trial, two_stage=False)
    if grid.stage1.steps is None:
        raise InputError(f"{folder}: its stage 1 is budgeted in epochs; this tool "
                         "stretches a step budget (stage1.steps)")  # fmt: skip
    samples = sample_count(grid, args.samples)
    use_threads(args.threads)
    out = Path(args.out) if args.out else folder / f"stage1_budget_{args.trial}.json"
    trial = load_trial(folder, args.trial, grid, params, state)
    scorer = Scorer(trial)
    own = grid.stage1.steps
    rows = []
    for steps in steps_asked:
        for row in score_budget(trial, steps, state, priors, samples, scorer):
            key = f"kid_{row['prior']}"
            if (steps == own and samples == grid.fid.samples and trial.final
                    and key in trial.final):  # fmt: skip
                row["sweep_kid"] = trial.final[key]
            rows.append(row)
            print_row(row)
    report = {"folder": str(folder), "trial": args.trial, "params": params,
              "samples": samples, "grid_steps": own, "rows": rows}  # fmt: skip
    write_report(out, report)


if __name__ == "__main__":
    run_cli(main)
