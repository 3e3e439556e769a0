"""One finished trial of a sweep, read back for the tools that ask more of it
(experiments.stage1_budget, stage2_budget, latent_fit): its checks, its stage 1 and
training images as the sweep had them, the grid's feature network and the scores of
a set of samples against x_test, and the command-line pieces the tools share."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
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
from vae.trainer import new_trainer
from vae_sweep.cli import text
from vae_sweep.errors import InputError
from vae_sweep.files import atomic_path

FEWEST_SAMPLES = max(PR_K, DC_K) + 2  # prdc's neighbourhoods need more than k


@dataclasses.dataclass
class Trial:
    """What the trial trained on and from: settings, training images, stage 1."""

    grid: GridConfig
    params: dict
    settings: object
    subset: np.ndarray  # (N, 32, 32, 3) uint8: its training images
    test_images: np.ndarray
    model: torch.nn.Module
    means: np.ndarray
    log_vars: np.ndarray
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


def load_trial(folder: Path, trial: str, grid, params, state, data=None) -> Trial:
    """`data`: the grid's (x_train, x_test) where the caller has them already (the
    trials of one sweep share them), else decoded here."""
    s = settings(grid, params, device="cpu")
    train, test = data if data is not None else load_data(grid)
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
    final = next((r for r in reversed(reports)
                  if any(f"fid_{p}" in r for p in grid.priors)), None)  # fmt: skip
    return Trial(grid, params, s, subset, test.images, model, means, log_vars, final)


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


def extractor(grid: GridConfig):
    """The grid's feature network, on the CPU."""
    if grid.fid.extractor:
        return extractor_factory(grid.fid.extractor)()
    return InceptionExtractor(grid.fid.network, device="cpu")


class Scorer:
    """Samples scored as the sweep scores them against x_test: KID (the trial's
    seed), FID, precision/recall/density/coverage; x_test's features and Frechet
    statistics computed once (the features from the FID cache where it has them)."""

    def __init__(self, trial: Trial):
        self.network = extractor(trial.grid)
        self.real = cached_features(FIDCache(), self.network.key, trial.test_images,
                                    self.features)  # fmt: skip
        self.reference = FrechetReference(statistics(self.real))
        self.seed = trial.settings.seed

    def features(self, images: np.ndarray) -> np.ndarray:
        return extract_features(images, self.network, progress=False)

    def scores(self, images: np.ndarray) -> dict:
        features = self.features(images)
        return {"kid": kid(features, self.real, seed=self.seed).mean,
                "fid": self.reference.distance(statistics(features)),
                **fidelity(self.real, features).as_dict()}  # fmt: skip


# ---- the command line the tools share ----
def add_trial_arguments(parser: argparse.ArgumentParser, *, steps: str | None,
                        what: str, out: str, many: bool = False) -> None:  # fmt: skip
    """RESULTS_DIR, --trial (repeatable if `many`), --steps (when `steps` is its
    default), --samples, --threads, --out."""
    parser.add_argument("folder", type=text, metavar="RESULTS_DIR",
                        help="a sweep folder (<storage>/<name>)")  # fmt: skip
    parser.add_argument("--trial", type=text, required=True,
                        action="append" if many else "store",
                        help="the trial id (its folder is trial_<ID>)"
                        + ("; repeatable" if many else ""))  # fmt: skip
    if steps is not None:
        parser.add_argument("--steps", type=text, default=steps,
                            help=f"{what} budgets in steps, comma-separated")
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per prior and budget (default: fid.samples)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own)")  # fmt: skip
    parser.add_argument("--out", type=text, default=None,
                        help=f"the JSON (default <RESULTS_DIR>/{out})")


def budgets(value: str) -> list[int]:
    """--steps: comma-separated whole numbers, each at least 1, or one line."""
    try:
        found = [int(v) for v in value.split(",")]
    except ValueError:
        raise InputError(f"--steps {value!r}: comma-separated whole numbers") from None
    if not found or min(found) < 1:
        raise InputError(f"--steps {value!r}: each budget at least 1 step")
    return found


def sample_count(grid: GridConfig, samples: int | None) -> int:
    """--samples, or the grid's fid.samples; enough for prdc's neighbourhoods."""
    count = grid.fid.samples if samples is None else samples
    if count < FEWEST_SAMPLES:
        raise InputError(f"--samples {count}: at least {FEWEST_SAMPLES}")
    return count


def use_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads}: at least 1")
        torch.set_num_threads(threads)


def print_row(row: dict) -> None:
    print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                   for k, v in row.items()), flush=True)  # fmt: skip


def write_report(out: Path, report: dict) -> None:
    """The tool's JSON, whole or not at all."""
    with atomic_path(out, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=_plain) + "\n")
    print(f"written: {out}")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")
