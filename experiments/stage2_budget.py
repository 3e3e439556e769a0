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
import json
import math
import time
from pathlib import Path

import torch

from fid.cache import FIDCache, cached_features
from fid.distance import FrechetReference
from fid.features import InceptionExtractor, extract_features, extractor_factory
from fid.fidelity import DC_K, PR_K, fidelity
from fid.sample_metrics import kid
from fid.stats import statistics
from selection.criteria import select
from sweep.config import GridConfig
from sweep.driver import load_data
from sweep.folder import GRID_FILE, STATE_FILE
from sweep.grid_file import load_grid
from sweep.prerequisites import score_need
from sweep.trials import settings
from vae.evaluate import latent_summary
from vae.priors import PriorContext, sample_images
from vae.trainer import new_trainer
from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import atomic_path

FEWEST_SAMPLES = max(PR_K, DC_K) + 2  # prdc's neighbourhoods need more than k


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.stage2_budget", __doc__)
    parser.add_argument("folder", type=text, metavar="RESULTS_DIR",
                        help="a sweep folder (<storage>/<name>)")  # fmt: skip
    parser.add_argument("--trial", type=text, required=True,
                        help="the trial id (its folder is trial_<ID>)")  # fmt: skip
    parser.add_argument("--steps", type=text, default="10000,20000,40000",
                        help="stage-2 budgets in steps, comma-separated")  # fmt: skip
    parser.add_argument("--samples", type=int, default=None,
                        help="two-stage samples per budget (default: fid.samples)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own)")  # fmt: skip
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


def stretched(options, steps: int, grid_steps: int):
    """Stage-2 options trained for `steps`, the grid's step schedule scaled alike."""
    train = stretched_schedule(options.train, steps, grid_steps)
    return dataclasses.replace(options, train=train)


def stretched_schedule(train, steps: int, grid_steps: int):
    """A TrainConfig for `steps`, the grid's step schedule scaled alike: the learning
    rate halves as many times over the run, on whole rounds (TrainConfig wants
    `lr_step` a multiple of `round_steps`)."""
    rounds = min(train.round_steps or steps, steps)
    lr_step = train.lr_step
    if lr_step is not None:
        scaled = lr_step * steps / grid_steps
        if scaled < rounds:  # shorter than a round: rounds shrink to fit it
            rounds = max(1, math.gcd(round(scaled), rounds))
        lr_step = max(rounds, round(scaled / rounds) * rounds)
    return dataclasses.replace(train, steps=steps, lr_step=lr_step, round_steps=rounds)


@dataclasses.dataclass
class Trial:
    """What the trial trained on and from: settings, training images, stage 1."""

    grid: GridConfig
    params: dict
    settings: object
    test_images: object
    model: torch.nn.Module
    means: object
    log_vars: object
    final: dict | None  # the trial's final report


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot be read ({error})") from None


def check_trial(folder: Path, trial: str,
                two_stage: bool = True) -> tuple[GridConfig, dict, dict]:  # fmt: skip
    """The grid, the trial's parameters and its last stage-1 state, or one line
    (`two_stage`: the grid must have the two_stage prior, its stage 2 in steps)."""
    trial_dir = folder / f"trial_{trial}"
    if not (folder / GRID_FILE).is_file() or not trial_dir.is_dir():
        raise InputError(f"{trial_dir}: no such trial in a sweep folder")
    grid = load_grid(folder / GRID_FILE)
    params = _read_json(trial_dir / "params.json")["trial"]
    if two_stage and ("two_stage" not in grid.priors or grid.stage2.steps is None):
        raise InputError(f"{folder / GRID_FILE}: wants the two_stage prior with "
                         "stage 2 budgeted in steps (stage2.steps)")  # fmt: skip
    if score_need(grid, params) is not None:
        raise InputError(f"--trial {trial}: its criterion {params['criterion']} "
                         "reads scores; pick a trial of random, class_balanced "
                         "or all")  # fmt: skip
    found = sorted(trial_dir.glob(f"checkpoint_*/{STATE_FILE}"))
    if not found:
        raise InputError(f"{trial_dir}: no checkpoint holds a stage-1 state")
    state = torch.load(found[-1], map_location="cpu", weights_only=True)
    if state.get("outcome") != "completed":
        raise InputError(f"--trial {trial}: its stage 1 did not finish (outcome "
                         f"{state.get('outcome')})")  # fmt: skip
    return grid, params, state


def load_trial(folder: Path, trial: str, grid, params, state) -> Trial:
    s = settings(grid, params, device="cpu")
    train, test = load_data(grid)
    chosen = select(s.criterion, train, s.n_train, seed=s.seed, scores=None)
    subset = train.images[chosen.indices]
    trainer = new_trainer(s.model, torch.from_numpy(subset), s.stage1, loss=s.loss,
                          kl_weight=s.kl_weight)  # fmt: skip
    trainer.load_state_dict(state)
    model = trainer.model.eval()
    means, log_vars, _ = latent_summary(model, subset)
    result = folder / f"trial_{trial}" / "result.json"
    reports = [json.loads(line) for line in result.read_text().splitlines()
               if line.strip()] if result.is_file() else []  # fmt: skip
    final = next((r for r in reports if "fid_two_stage" in r), None)
    return Trial(grid, params, s, test.images, model, means, log_vars, final)


def _extractor(grid: GridConfig):
    if grid.fid.extractor:
        return extractor_factory(grid.fid.extractor)()
    return InceptionExtractor(grid.fid.network, device="cpu")


def score_budget(trial: Trial, steps: int, samples: int, extract, real,
                 reference: FrechetReference) -> dict:  # fmt: skip
    """Stage 2 trained for `steps` and its samples scored against `real` (whose
    Frechet statistics are `reference`)."""
    started = time.time()
    s = trial.settings
    options = stretched(s.two_stage, steps, s.two_stage.train.steps)
    ctx = PriorContext(trial.model, trial.means, seed=s.seed,
                       train_log_vars=trial.log_vars, two_stage=options)  # fmt: skip
    features = extract(sample_images("two_stage", ctx, samples))
    last = ctx.stage2.result.history[-1]
    return {"steps": steps, "lr_step": options.train.lr_step,
            "kid": kid(features, real, seed=s.seed).mean,
            "fid": reference.distance(statistics(features)),
            **fidelity(real, features).as_dict(),
            "stage2_loss": last.loss, "stage2_mse": last.mse,
            "gamma_z": ctx.stage2.gamma, "seconds": time.time() - started}  # fmt: skip


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    budgets = _budgets(args.steps)
    grid, params, state = check_trial(folder, args.trial)
    samples = grid.fid.samples if args.samples is None else args.samples
    if samples < FEWEST_SAMPLES:
        raise InputError(f"--samples {samples}: at least {FEWEST_SAMPLES}")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: at least 1")
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else folder / f"stage2_budget_{args.trial}.json"
    trial = load_trial(folder, args.trial, grid, params, state)
    extractor = _extractor(grid)

    def extract(images):
        return extract_features(images, extractor, progress=False)

    real = cached_features(FIDCache(), extractor.key, trial.test_images, extract)
    reference = FrechetReference(statistics(real))  # once, for every budget
    own = trial.settings.two_stage.train.steps
    rows = []
    for steps in budgets:
        row = score_budget(trial, steps, samples, extract, real, reference)
        if (steps == own and samples == grid.fid.samples and trial.final
                and "kid_two_stage" in trial.final):  # fmt: skip
            row["sweep_kid"] = trial.final["kid_two_stage"]
        rows.append(row)
        print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in row.items()), flush=True)  # fmt: skip
    report = {"folder": str(folder), "trial": args.trial, "params": params,
              "samples": samples, "grid_steps": own, "rows": rows}  # fmt: skip
    with atomic_path(out, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    run_cli(main)
