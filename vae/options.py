"""The options of `python -m vae.train` and their checks (see vae/cli.py)."""

from __future__ import annotations

import argparse

from fid.features import resolve_device
from selection.checks import at_least, positive, positive_list, writable_folder
from selection.criteria import CRITERIA, check_criterion
from selection.errors import InputError
from selection.scores import MAHALANOBIS_SPACES
from vae.losses import LOSSES
from vae.models import STAGE2_LAYOUTS
from vae.priors import PRIORS, STAGE2_INPUTS, check_priors
from vae.train import PRECISIONS


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers like 128,256, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vae.train", description=description.strip().split("\n")[0]
    )
    p.add_argument(
        "--data",
        default=None,
        help="CIFAR-10 root: python batches, or "
        "train/test image folders or zips (default $VAE_SWEEP_DATA, ./data)",
    )
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 if missing")
    p.add_argument("--n", type=int, default=None, help="training images (default: all)")
    p.add_argument("--criterion", default="all", help=f"one of: {', '.join(CRITERIA)}")
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--priors",
        type=_names,
        default=list(PRIORS),
        help=f"comma-separated, from: {','.join(PRIORS)}",
    )
    p.add_argument(
        "--fid-samples",
        type=int,
        default=10_000,
        help="generated images per prior for FID (0: no FID)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-patience", type=int, default=5)
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--encoder-channels", type=_ints, default=(128, 256, 512, 1024))
    p.add_argument("--decoder-channels", type=_ints, default=(1024, 256))
    p.add_argument("--loss", choices=sorted(LOSSES), default="gamma")
    p.add_argument("--kl-weight", type=float, default=1.0)
    p.add_argument(
        "--stage2-epochs",
        type=int,
        default=None,
        help="default: twice --epochs (the study's 1200 for 600)",
    )
    p.add_argument("--stage2-latent-dim", type=int, default=64)
    p.add_argument(
        "--stage2-layout",
        choices=list(STAGE2_LAYOUTS),
        default="dai_wipf",
        help="dai_wipf: 3 x 1024 with the skip (Dai & Wipf's code); table4: 2048/512",
    )
    p.add_argument(
        "--stage2-hidden",
        type=_ints,
        default=None,
        help="stage-2 hidden widths (default: the layout's)",
    )
    p.add_argument(
        "--stage2-inputs",
        choices=list(STAGE2_INPUTS),
        default="posterior_draws",
        help="posterior_draws: fresh z = mu + sigma * eps every epoch (Dai & Wipf)",
    )
    p.add_argument("--gmm-reg-covar", type=float, default=1e-6)
    p.add_argument("--gmm-max-iter", type=int, default=500, help="EM iterations")
    p.add_argument("--gmm-n-init", type=int, default=1, help="k-means restarts")
    p.add_argument(
        "--reference-epochs",
        type=int,
        default=None,
        help="epochs of the recon criterion's reference VAE (default --epochs)",
    )
    p.add_argument(
        "--mahalanobis-space",
        choices=list(MAHALANOBIS_SPACES),
        default="inception",
        help="where the Mahalanobis criteria measure (an interpretation: the thesis "
        "does not say): inception features or pixels, against x_test's",
    )
    p.add_argument(
        "--mahalanobis-ridge",
        type=float,
        default=0.0,
        help="0: pseudo-inverse covariance; >0: ridge * mean variance added",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="FID reference from N test images spread over the classes (quick runs)",
    )
    p.add_argument("--fid-batch-size", type=int, default=None)
    p.add_argument("--network", default=None, help="FID network file")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--preview", type=int, default=64, help="samples in each PNG grid")
    p.add_argument("--resume", action="store_true", help="continue --out/stage1.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def check(args: argparse.Namespace) -> None:
    """Every argument, the device and the output folder, before any work."""
    check_criterion(args.criterion)
    check_priors(args.priors)
    at_least(args, 1, "epochs", "batch_size", "latent_dim", "preview", "gmm_max_iter",
             "gmm_n_init", "n", "stage2_epochs", "stage2_latent_dim",
             "reference_epochs", "fid_batch_size")  # fmt: skip
    at_least(args, 2, "test_limit")  # a covariance needs two images
    at_least(args, 0, "fid_samples", "gmm_reg_covar", "mahalanobis_ridge",
             "lr_patience", "kl_weight")  # fmt: skip
    positive(args, "lr")
    positive_list(args, "encoder_channels", "decoder_channels", "stage2_hidden")
    device = resolve_device(args.device)
    if args.precision == "bf16" and device.type != "cuda":
        raise InputError(f"--precision bf16 needs a CUDA device, got --device "
                         f"{args.device} ({device.type})")  # fmt: skip
    out = writable_folder(args.out, f"--out {args.out}")
    stage1 = out / "stage1.pt"
    if stage1.exists() and not args.resume:
        raise InputError(
            f"{stage1} exists: pass --resume to continue it, or a new --out"
        )
    if args.resume and not stage1.exists():
        raise InputError(f"--resume: nothing to resume, {stage1} does not exist")
