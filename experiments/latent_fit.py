"""How close does each prior's latent distribution lie to the codes stage 1 decodes?

    python -m experiments.latent_fit RESULTS_DIR --trial ID [--trial ID ...] \
        [--samples N] [--threads N] [--out FILE]

For each finished trial, each generative prior's latents are drawn exactly as the trial
drew them (its seeds, its GMM fit, its own saved stage 2, which is loaded, not trained
again) and compared, in stage 1's latent space, with posterior draws of its training
images, z = mu + sigma * eps: what the decoder saw in training. Per prior:

- `frechet`: the Frechet distance to the posterior draws (FID's formula on the
  latents; no image is decoded and no network runs);
- `total_variance`: the trace of the latents' covariance, beside the draws' own
  (`posterior_total_variance`): above it a prior is over-dispersed, below it
  under-dispersed;
- `posterior_floor`: the Frechet distance between two independent sets of posterior
  draws of the same size, what sampling alone gives.

`--samples` (default the grid's `fid.samples`) latents per prior, the first ones the
trial decoded, and as many posterior draws. The trial must be one
`experiments.stage2_budget` accepts (finished; two_stage in its grid; a criterion
that reads no scores). Writes one JSON (default `<RESULTS_DIR>/latent_fit.json`) and
prints a line per trial and prior.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from experiments.finished_trial import (
    add_trial_arguments,
    check_trial,
    load_trial,
    sample_count,
    use_threads,
    write_report,
)
from fid.distance import frechet_distance
from fid.stats import statistics
from sweep.driver import load_data
from sweep.folder import STAGE2_FOLDER
from sweep.trials import train_size
from vae.priors import PRIORS, PriorContext, prior_seed
from vae.stage2 import Stage2Checkpoint
from vae_sweep.cli import Parser
from vae_sweep.errors import InputError, run_cli

CEILING = "recon"  # decodes x_test's encodings: not a distribution to compare


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m experiments.latent_fit", __doc__)
    add_trial_arguments(parser, steps=None, what="", out="latent_fit.json", many=True)
    return parser


def posterior_draws(means: np.ndarray, log_vars: np.ndarray, n: int,
                    seed: int) -> np.ndarray:  # fmt: skip
    """n posterior draws, one each of n training images chosen without replacement."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(means), size=n, replace=False)
    noise = rng.standard_normal((n, means.shape[1]))
    return means[rows] + np.exp(0.5 * log_vars[rows]) * noise


def saved_stage2(folder: Path, trial: str) -> Stage2Checkpoint:
    """The trial's own stage 2, as the sweep saved it when it finished."""
    path = folder / STAGE2_FOLDER / f"{trial}.pt"
    if not path.is_file():
        raise InputError(f"{path}: the trial's stage 2 is not there")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("outcome") != "completed":
        raise InputError(f"{path}: its stage 2 did not finish")

    def refuse(_state: dict) -> None:  # loading it must not train, so never save
        raise RuntimeError(f"{path}: stage 2 trained again instead of loading")

    return Stage2Checkpoint(refuse, state)


def prior_latents(trial, name: str, n: int, stage2: Stage2Checkpoint | None):
    """The first n latents the trial's prior `name` decoded."""
    s = trial.settings
    ctx = PriorContext(trial.model, trial.means, seed=s.seed, gmm=s.gmm,
                       two_stage=s.two_stage, train_log_vars=trial.log_vars,
                       stage2_checkpoint=stage2)  # fmt: skip
    latents = PRIORS[name](ctx, n, prior_seed(s.seed, name))
    if name == "two_stage":
        done = ctx.stage2.result.history
        if len(done) != len(stage2.saved["history"]):  # a key mismatch retrains
            raise RuntimeError("stage 2 trained again instead of loading")
    return np.asarray(latents, dtype=np.float64)


def _fit(latents: np.ndarray, draws) -> dict:
    stats = statistics(latents)
    return {"frechet": frechet_distance(draws, stats),
            "total_variance": float(np.trace(stats.sigma)),
            "mean_norm": float(np.linalg.norm(latents, axis=1).mean())}  # fmt: skip


def trial_rows(folder: Path, trial_id: str, checked, n: int, data=None) -> list[dict]:
    """`checked`: check_trial's (grid, params, state); `data`: the grid's x_train and
    x_test, shared by the sweep's trials."""
    grid, params, state = checked
    trial = load_trial(folder, trial_id, grid, params, state, data)
    means = np.asarray(trial.means, dtype=np.float64)
    log_vars = np.asarray(trial.log_vars, dtype=np.float64)
    seed = trial.settings.seed
    draws = posterior_draws(means, log_vars, n, seed)
    again = posterior_draws(means, log_vars, n, seed + 1)
    reference = statistics(draws)
    floor = frechet_distance(reference, statistics(again))
    stage2 = saved_stage2(folder, trial_id) if "two_stage" in grid.priors else None
    rows = []
    for name in (p for p in grid.priors if p != CEILING):
        rows.append({"trial": trial_id, **params, "prior": name, "samples": n,
                     **_fit(prior_latents(trial, name, n, stage2), reference),
                     "posterior_total_variance": float(np.trace(reference.sigma)),
                     "posterior_floor": floor})  # fmt: skip
    return rows


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    folder = Path(args.folder)
    # every trial checked before any is read
    checked = {trial_id: check_trial(folder, trial_id) for trial_id in args.trial}
    grid = next(iter(checked.values()))[0]  # one sweep folder: one grid
    n = sample_count(grid, args.samples)
    for trial_id, (_, params, _) in checked.items():  # one draw per training image
        images = params.get("n_train") or train_size(grid)
        if n > images:
            raise InputError(f"--samples {n}: trial {trial_id} trained on {images} "
                             "images")  # fmt: skip
    use_threads(args.threads)
    out = Path(args.out) if args.out else folder / "latent_fit.json"
    data = load_data(grid)  # decoded once for all the trials
    rows = []
    for trial_id in args.trial:
        for row in trial_rows(folder, trial_id, checked[trial_id], n, data):
            rows.append(row)
            print(f"{trial_id} {row['prior']:10s} frechet {row['frechet']:.4g} "
                  f"(floor {row['posterior_floor']:.3g})  total variance "
                  f"{row['total_variance']:.4g} (posterior "
                  f"{row['posterior_total_variance']:.4g})", flush=True)  # fmt: skip
    write_report(out, {"folder": str(folder), "rows": rows})


if __name__ == "__main__":
    run_cli(main)
