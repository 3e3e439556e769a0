"""The options of `python -m vae.train` and their checks (the command: vae/train.py)."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

from fid.mahalanobis_scores import MAHALANOBIS_SPACES
from fid.options import add_network_options, check_cache_dir, check_network_options
from selection.criteria import (
    CRITERIA,
    DEFAULT_COVARIANCE,
    MAHALANOBIS_COVARIANCES,
    CovarianceEstimate,
    check_criterion,
)
from selection.datasets import SPLIT_SIZES
from selection.feature_scores import SELECTION_SPACES
from vae.evaluate import FID_SAMPLES
from vae.losses import DEFAULT_LOSS, LOSSES
from vae.models import STAGE2_LAYOUTS, Stage1Config
from vae.priors import PRIORS, GMMOptions, check_priors
from vae.stage2 import EPOCHS as STAGE2_EPOCHS
from vae.stage2 import STAGE2_INPUTS, TwoStageOptions
from vae.train_config import LR_SCHEDULES, PLATEAU_ROUNDS, PRECISIONS, TrainConfig
from vae_sweep.checks import (
    at_least,
    at_most,
    data_folder,
    flag,
    positive,
    positive_list,
    writable_folder,
)
from vae_sweep.cli import Parser, finite_float, int_list, name_list, seed, text
from vae_sweep.configs import from_fields
from vae_sweep.devices import resolve_device
from vae_sweep.errors import InputError

PREVIEW_MAX = 1024  # a 32 x 32 grid of samples; more is not a preview

_ENCODER = ",".join(map(str, Stage1Config.encoder_channels))
STUDY_DEFAULTS = f"""\
Every default is the full study: {TrainConfig.epochs} epochs of the full-width model \
(encoder
{_ENCODER}), {STAGE2_EPOCHS} epochs of stage 2, and {FID_SAMPLES:,} generated images \
per prior for
FID against all 10,000 test images: days on a CPU, hours on a GPU. A quick try
(about 10 minutes on a 2-core CPU, most of it the FID network):

    python -m vae.train --out runs/quick --criterion random --n 2000 \\
        --epochs 3 --stage2-epochs 3 --encoder-channels 16,32,64,128 \\
        --decoder-channels 128,32 --fid-samples 200 --test-limit 500
"""


def parser(description: str) -> argparse.ArgumentParser:
    p = Parser("python -m vae.train", description, epilog=STUDY_DEFAULTS)
    p.add_argument(
        "--data",
        type=text,
        default=None,
        help="CIFAR-10 root: python batches, or train/test image folders or zips "
        "(default: $VAE_SWEEP_DATA, else ./data)",
    )
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 if missing")
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="training images, chosen by --criterion (default: all)",
    )
    p.add_argument("--criterion", default="all", help=f"one of: {', '.join(CRITERIA)}")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"stage-1 budget in epochs (default: {TrainConfig.epochs}, "
                   f"unless --steps)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None,
                   help="stage-1 budget in optimizer steps instead of epochs: equal "
                   "compute whatever --n")  # fmt: skip
    p.add_argument("--round-steps", type=int, default=TrainConfig.round_steps,
                   help="under a step budget: optimizer steps per round (a report, "
                   "the LR plateau check, a checkpoint)")  # fmt: skip
    p.add_argument("--out", type=text, required=True, help="output folder (required)")
    p.add_argument(
        "--priors",
        type=name_list,
        default=list(PRIORS),
        help=f"comma-separated, from: {','.join(PRIORS)}",
    )
    p.add_argument(
        "--fid-samples",
        type=int,
        default=FID_SAMPLES,
        help="generated images per prior for FID (0: no FID)",
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the selection, the weights and the sampling",
    )
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                   help="training batch")  # fmt: skip
    p.add_argument("--lr", type=finite_float, default=TrainConfig.lr,
                   help="Adam learning rate")  # fmt: skip
    p.add_argument(
        "--lr-patience",
        type=int,
        default=None,
        help=f"halve the LR after more than this many epochs (or steps) without a "
        f"lower round loss (default: {PLATEAU_ROUNDS} rounds)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=TrainConfig.lr_schedule,
        help="plateau: halve on a plateau (--lr-patience); step: halve every "
        "--lr-step epochs or steps (Dai & Wipf's code)",
    )
    p.add_argument("--lr-step", type=int, default=None,
                   help="with --lr-schedule step: epochs (or steps) between cuts")
    p.add_argument("--latent-dim", type=int, default=Stage1Config.latent_dim,
                   help="stage-1 latent size")  # fmt: skip
    p.add_argument(
        "--encoder-channels",
        type=int_list,
        default=Stage1Config.encoder_channels,
        help="channels of the four encoder convolutions",
    )
    p.add_argument(
        "--decoder-channels",
        type=int_list,
        default=Stage1Config.decoder_channels,
        help="channels of the decoder's two stages",
    )
    p.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        default=DEFAULT_LOSS,
        help="gamma: learned decoder variance (Dai & Wipf); mse: fixed",
    )
    p.add_argument(
        "--kl-weight", type=finite_float, default=1.0, help="weight of the KL term"
    )
    p.add_argument(
        "--stage2-epochs",
        type=int,
        default=None,
        help="stage-2 budget in epochs (default: twice stage 1's budget, the study's "
        "1200 for 600; with --steps, twice its steps)",
    )
    p.add_argument("--stage2-steps", type=int, default=None,
                   help="stage-2 budget in optimizer steps instead of epochs")
    p.add_argument("--stage2-lr-schedule", choices=LR_SCHEDULES,
                   default=TrainConfig.lr_schedule,
                   help="stage 2's LR schedule, as --lr-schedule")  # fmt: skip
    p.add_argument("--stage2-lr-step", type=int, default=None,
                   help="with --stage2-lr-schedule step: epochs (or steps) between "
                   "cuts (Dai & Wipf: 300 of 800 epochs)")  # fmt: skip
    p.add_argument(
        "--stage2-latent-dim",
        type=int,
        default=None,
        help="stage-2 latent size (default: stage 1's, as Dai & Wipf's code)",
    )
    p.add_argument(
        "--stage2-layout",
        choices=list(STAGE2_LAYOUTS),
        default=TwoStageOptions.layout,
        help="dai_wipf: 3 x 1024 with the skip (Dai & Wipf's code); table4: 2048/512",
    )
    p.add_argument(
        "--stage2-hidden",
        type=int_list,
        default=None,
        help="stage-2 hidden widths (default: the layout's)",
    )
    p.add_argument(
        "--stage2-inputs",
        choices=list(STAGE2_INPUTS),
        default=TwoStageOptions.inputs,
        help="posterior_draws: fresh z = mu + sigma * eps every epoch (Dai & Wipf); "
        "means: the posterior means",
    )
    p.add_argument(
        "--gmm-reg-covar",
        type=finite_float,
        default=GMMOptions.reg_covar,
        help="added to the GMM covariances' diagonal",
    )
    p.add_argument("--gmm-max-iter", type=int, default=GMMOptions.max_iter,
                   help="EM iterations")  # fmt: skip
    p.add_argument("--gmm-n-init", type=int, default=GMMOptions.n_init,
                   help="k-means restarts")  # fmt: skip
    p.add_argument(
        "--reference-epochs",
        type=int,
        default=None,
        help="epochs of the recon criterion's reference VAE (default: --epochs)",
    )
    p.add_argument(
        "--mahalanobis-space",
        choices=list(MAHALANOBIS_SPACES),
        default=MAHALANOBIS_SPACES[0],
        help="where the Mahalanobis criteria measure (an interpretation: the thesis "
        "does not say): inception features or pixels, against x_test's",
    )
    p.add_argument(
        "--selection-space",
        choices=list(SELECTION_SPACES),
        default=SELECTION_SPACES[0],
        help="where class_density, knn_density, k_center and the prototype criteria "
        "measure: inception features or pixels",
    )
    p.add_argument(
        "--mahalanobis-covariance",
        choices=list(MAHALANOBIS_COVARIANCES),
        default=DEFAULT_COVARIANCE.method,
        help="x_test's covariance for the Mahalanobis criteria: oas (shrinkage), pinv "
        "(the sample covariance's pseudo-inverse), ridge (see --mahalanobis-ridge)",
    )
    p.add_argument(
        "--mahalanobis-ridge",
        type=finite_float,
        default=0.0,
        help="with --mahalanobis-covariance ridge: ridge * mean variance added",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=TrainConfig.precision,
        help="bf16: autocast, on CUDA or on a CPU (fast on CPUs with bf16 "
        "instructions, AVX512-BF16 or AMX; slow elsewhere)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="channels_last memory format (faster convolutions on GPUs)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="FID reference from N test images spread over the classes (quick "
        "runs; default: all 10,000)",
    )
    p.add_argument(
        "--fid-batch-size",
        type=int,
        default=None,
        help="FID network batch (default: 16 on CPU, 200 on CUDA)",
    )
    add_network_options(p)
    p.add_argument("--preview", type=int, default=64, help="samples in each PNG grid")
    p.add_argument("--resume", action="store_true", help="continue --out/stage1.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _budget(epochs: int | None, steps: int | None, names: str) -> dict:
    if epochs is not None and steps is not None:
        raise InputError(f"{names} {epochs} and {steps}: give one budget, epochs or "
                         f"steps")  # fmt: skip
    return {"epochs": epochs, "steps": steps}


def stage1_configs(args: argparse.Namespace) -> tuple[Stage1Config, TrainConfig]:
    """The stage-1 model and training these options describe: each flag is the field
    of the same name (--latent-dim, latent_dim); the budget is --epochs (600 by
    default) or --steps."""
    budget = _budget(args.epochs, args.steps, "--epochs and --steps:")
    if args.steps is None:
        budget["epochs"] = args.epochs or TrainConfig.epochs
    values = {**vars(args), **budget}
    return from_fields(Stage1Config, values), from_fields(TrainConfig, values)


def stage2_training(args: argparse.Namespace, stage1: TrainConfig) -> TrainConfig:
    """Stage 2's training: stage 1's settings, its own budget and LR schedule
    (--stage2-*; the budget twice stage 1's, in stage 1's unit, unless given), and
    no channels_last or compile (a small dense model)."""
    budget = _budget(args.stage2_epochs, args.stage2_steps,
                     "--stage2-epochs and --stage2-steps:")  # fmt: skip
    if budget == {"epochs": None, "steps": None}:
        budget = {"epochs": stage1.epochs and 2 * stage1.epochs,
                  "steps": stage1.steps and 2 * stage1.steps}  # fmt: skip
    same_unit = (budget["steps"] is None) == (stage1.steps is None)
    return replace(stage1, **budget, lr_schedule=args.stage2_lr_schedule,
                   lr_step=args.stage2_lr_step, channels_last=False, compile=False,
                   lr_patience=stage1.lr_patience if same_unit else None)  # fmt: skip


def stage2_options(args: argparse.Namespace, train: TrainConfig) -> TwoStageOptions:
    """Stage 2 as the --stage2-* options describe it, with stage 1's loss."""
    return from_fields(TwoStageOptions, vars(args), prefix="stage2_", loss=args.loss,
                       train=train)  # fmt: skip


def gmm_options(args: argparse.Namespace) -> GMMOptions:
    return from_fields(GMMOptions, vars(args), prefix="gmm_")


def _check_configs(args: argparse.Namespace) -> None:
    """The model and training configurations these options make, built once here so
    their own checks run before any work; their errors name fields, which are the
    flags' names with underscores."""
    try:
        _, stage1 = stage1_configs(args)
    except InputError as error:
        raise InputError(_flags(str(error), args)) from None
    try:
        stage2_training(args, stage1)
    except InputError as error:
        raise InputError(_flags(str(error), args, "stage2_")) from None


def _flags(message: str, args: argparse.Namespace, prefix: str = "") -> str:
    """A config's error with its field names as the flags that set them."""
    if message.startswith("--"):
        return message  # names its flags already
    for name in sorted(vars(args), key=len, reverse=True):
        field = name.removeprefix(prefix)
        if prefix and field == name:
            continue
        message = re.sub(rf"(?<![\w.-]){field}\b", flag(name), message)
    return message


def covariance_estimate(args: argparse.Namespace) -> CovarianceEstimate:
    """The Mahalanobis criteria's covariance, as --mahalanobis-covariance and
    --mahalanobis-ridge ask."""
    try:
        return from_fields(CovarianceEstimate, vars(args), prefix="mahalanobis_",
                           method=args.mahalanobis_covariance)  # fmt: skip
    except InputError:
        raise InputError(
            f"--mahalanobis-ridge {args.mahalanobis_ridge}: a ridge above 0 goes with "
            f"--mahalanobis-covariance ridge, and only there "
            f"(--mahalanobis-covariance {args.mahalanobis_covariance})"
        ) from None


def check(args: argparse.Namespace) -> None:
    """Every argument, the device and the output folder, before any work."""
    try:
        check_criterion(args.criterion)
    except InputError as error:
        raise InputError(f"--criterion {args.criterion}: {error}") from None
    if args.criterion == "all" and args.n is not None:
        raise InputError(f"--n {args.n}: --criterion all takes the whole training "
                         f"set; drop --n, or choose another --criterion")  # fmt: skip
    try:
        check_priors(args.priors)
    except InputError as error:
        raise InputError(f"--priors: {error}") from None
    at_least(args, 1, "epochs", "steps", "round_steps", "batch_size", "latent_dim",
             "preview", "gmm_max_iter", "gmm_n_init", "n", "stage2_epochs",
             "stage2_steps", "stage2_latent_dim", "reference_epochs", "lr_step",
             "stage2_lr_step", "fid_batch_size")  # fmt: skip
    at_least(args, 2, "test_limit")  # a covariance needs two images
    at_most(args, SPLIT_SIZES["train"], "the CIFAR-10 training set", "n")
    at_most(args, SPLIT_SIZES["test"], "the CIFAR-10 test set", "test_limit")
    at_least(args, 0, "fid_samples", "gmm_reg_covar", "mahalanobis_ridge",
             "lr_patience", "kl_weight")  # fmt: skip
    positive(args, "lr")
    positive_list(args, "encoder_channels", "decoder_channels", "stage2_hidden")
    _check_configs(args)
    covariance_estimate(args)
    data_folder(args)
    resolve_device(args.device)
    out = writable_folder(args.out, f"--out {args.out}")
    stage1 = out / "stage1.pt"
    if stage1.exists() and not args.resume:
        raise InputError(
            f"{stage1} exists: pass --resume to continue it, or a new --out"
        )
    if args.resume and not stage1.exists():
        raise InputError(f"--resume: nothing to resume, {stage1} does not exist")
    if args.fid_samples == 1:
        raise InputError("--fid-samples must be 0 (no FID) or at least 2 (a "
                         "covariance needs two images), got 1")  # fmt: skip
    if args.preview > PREVIEW_MAX:
        raise InputError(f"--preview must be at most {PREVIEW_MAX} images, got "
                         f"{args.preview}")  # fmt: skip
    check_cache_dir(args)  # the decoded data is cached even without FID
    if args.fid_samples > 0:
        check_network_options(args)
