"""Is stage 2 trained to a plateau? One finished trial's stage 1, its stage 2 trained
again at several budgets, and the two-stage prior's samples scored at each.

    python -m experiments.stage2_budget RESULTS_DIR --trial ID \
        [--steps 10000,20000,40000] [--samples N] [--threads N] [--out FILE]

Stage 2 learns its decoder scale gamma_z, which Dai & Wipf's analysis drives towards 0:
its reconstruction error keeps falling for as long as it trains, so a flat loss is no
test of it. What matters is whether the samples still change. For each budget B the
grid's stage-2 schedule is stretched to B steps (its learning rate halves as many
times over the run) and trained from the trial's own seed on its own training images'
posteriors; `--samples` (default: the grid's `fid.samples`) two-stage samples, drawn
as the trial drew them, go through the grid's feature network and are scored against
the grid's x_test: KID, FID and precision/recall/density/coverage.

At the grid's own budget and sample count the row is the trial's own two-stage prior,
and its KID is printed beside the trial's `kid_two_stage` as the check that it is: on
a CPU sweep the two agree to the digit (a GPU trial's to float precision). The trial
must have finished (its last checkpoint `completed`), its grid's stage 2 be budgeted
in steps, and its criterion one that reads no scores (random, class_balanced, all:
the others' scores live in the driver's cache under keys of its own). Writes one
JSON (default `<RESULTS_DIR>/stage2_budget_<ID>.json`) and prints a row per budget.
Beside a running sweep give it `--threads 1`: it then takes one core, not all of them
from the sweep's trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

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
from vae.priors import PriorContext, sample_images
from vae_sweep.cli import Parser
from vae_sweep.errors import run_cli


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.stage2_budget", __doc__)
    add_trial_arguments(parser, steps="10000,20000,40000", what="stage-2",
                        out="stage2_budget_<ID>.json")  # fmt: skip
    return parser


def stretched(options, steps: int, grid_steps: int):
    """Stage-2 options trained for `steps`, the grid's step schedule scaled alike."""
    train = stretched_schedule(options.train, steps, grid_steps)
    return dataclasses.replace(options, train=train)


def score_budget(trial: Trial, steps: int, samples: int, scorer: Scorer) -> dict:
    """Stage 2 trained for `steps` and its samples scored against x_test."""
    started = time.time()
    s = trial.settings
    options = stretched(s.two_stage, steps, s.two_stage.train.steps)
    ctx = PriorContext(trial.model, trial.means, seed=s.seed,
                       train_log_vars=trial.log_vars, two_stage=options)  # fmt: skip
    scores = scorer.scores(sample_images("two_stage", ctx, samples))
    last = ctx.stage2.result.history[-1]
    return {"steps": steps, "lr_step": options.train.lr_step, **scores,
            "stage2_loss": last.loss, "stage2_mse": last.mse,
            "gamma_z": ctx.stage2.gamma, "seconds": time.time() - started}  # fmt: skip


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    steps_asked = budgets(args.steps)
    grid, params, state = check_trial(folder, args.trial)
    samples = sample_count(grid, args.samples)
    use_threads(args.threads)
    out = Path(args.out) if args.out else folder / f"stage2_budget_{args.trial}.json"
    trial = load_trial(folder, args.trial, grid, params, state)
    scorer = Scorer(trial)
    own = trial.settings.two_stage.train.steps
    rows = []
    for steps in steps_asked:
        row = score_budget(trial, steps, samples, scorer)
        if (steps == own and samples == grid.fid.samples and trial.final
                and "kid_two_stage" in trial.final):  # fmt: skip
            row["sweep_kid"] = trial.final["kid_two_stage"]
        rows.append(row)
        print_row(row)
    report = {"folder": str(folder), "trial": args.trial, "params": params,
              "samples": samples, "grid_steps": own, "rows": rows}  # fmt: skip
    write_report(out, report)


if __name__ == "__main__":
    run_cli(main)
