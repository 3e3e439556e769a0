"""Train one VAE on a selected CIFAR-10 subset and score its priors by FID.

    python -m vae.train --data ../shared/data/cifar10-jpeg --n 25000 \\
        --criterion random --epochs 600 --out runs/random-25k

Writes into --out: `stage1.pt` (full training state; `--resume` continues it),
`stage2.pt` (stage 2's training state, with the two_stage prior; `--resume` continues
it too), `metrics.json`, `selection.npy` (the chosen indices), `loss.png` and
`samples_<prior>.png`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.mahalanobis_scores import mahalanobis_source, pixel_source
from fid.options import FIDOptions, build_engine, cache_scope
from fid.stats import warn_small_sample
from selection.criteria import SCORE_KIND, ScoreBook, select
from selection.datasets import ImageSet, load_cifar10
from selection.feature_scores import (
    FEATURE_KINDS,
    SEEDED_KINDS,
    feature_scores,
    pixel_features,
)
from vae import evaluate
from vae.plots import save_loss_curve, save_sample_grid
from vae.priors import PriorContext, recon_images
from vae.recon_scores import recon_source
from vae.stage2 import Stage2Checkpoint
from vae.train_options import (
    check,
    covariance_estimate,
    gmm_options,
    parser,
    stage1_configs,
    stage2_options,
    stage2_training,
)
from vae.trainer import Trainer, new_trainer, read_checkpoint, write_checkpoint
from vae_sweep.errors import InputError, run_cli
from vae_sweep.files import atomic_path, content_key


class Run:
    """One invocation; the FID engine and test statistics are built only if needed."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self._engine: FIDEngine | None = None
        self._test: ImageSet | None = None
        self._reference: FrechetReference | None = None
        self.class_counts: str | None = None  # JSON, once the subset is chosen
        self.model_config, self.training = stage1_configs(args)

    def load(self, split: str, limit=None) -> ImageSet:
        a = self.args
        return load_cifar10(
            a.data,
            split,
            download=a.download,
            limit=limit,
            cache_dir=a.cache_dir,
            progress=not a.quiet,
        )

    @property
    def engine(self) -> FIDEngine:
        if self._engine is None:
            options = FIDOptions.from_args(self.args)
            self._engine = build_engine(options, self.args.fid_batch_size)
        return self._engine

    @property
    def test(self) -> ImageSet:
        if self._test is None:
            self._test = self.load("test", self.args.test_limit)
        return self._test

    @property
    def reference(self) -> FrechetReference:
        """x_test statistics with their square root, built once for every prior."""
        if self._reference is None:
            stats = self.engine.stats(
                np.asarray(self.test.images), sha256=self.test.sha256, desc="x_test"
            )
            self._reference = FrechetReference(stats)
        return self._reference

    def scores(self, train: ImageSet) -> ScoreBook:
        a = self.args
        reference = self.training
        if a.reference_epochs is not None:
            reference = replace(reference, epochs=a.reference_epochs, steps=None)
        providers = {}
        kind = SCORE_KIND.get(a.criterion)
        if kind == "recon":
            providers["recon"] = recon_source(
                train,
                model=self.model_config,
                training=reference,
                loss=a.loss,
                kl_weight=a.kl_weight,
                cache_dir=a.cache_dir,
                progress=not a.quiet,
            )
        elif kind == "mahalanobis" and a.mahalanobis_space == "pixel":
            providers["mahalanobis"] = pixel_source(
                train, self.test, covariance=covariance_estimate(a)
            )
        elif kind == "mahalanobis":
            providers["mahalanobis"] = mahalanobis_source(
                train,
                self.reference.stats,
                network=self.engine.extractor.key,
                extract=lambda images: self.engine.features(
                    images, sha256=train.sha256, desc="x_train features"
                ),
                covariance=covariance_estimate(a),
            )
        elif kind in FEATURE_KINDS:
            providers[kind] = self.feature_source(train, kind)
        return ScoreBook(providers, cache_dir=a.cache_dir)

    def feature_source(self, train: ImageSet, kind: str):
        """(cache key, compute) of a literature criterion's scores, in the space
        --selection-space names (the same key the sweep's prerequisite uses)."""
        a = self.args
        inception = a.selection_space == "inception"
        seed = a.seed if kind in SEEDED_KINDS else None
        network = self.engine.extractor.key if inception else None
        key = content_key(train=train.sha256, kind=kind, space=a.selection_space,
                          seed=seed, network=network)  # fmt: skip

        def compute() -> np.ndarray:
            features = (self.engine.features(np.asarray(train.images),
                                             sha256=train.sha256,
                                             desc="x_train features")
                        if inception else pixel_features(train.images))  # fmt: skip
            return feature_scores(kind, features, np.asarray(train.labels),
                                  seed=seed or 0)  # fmt: skip

        return key, compute

    def train_stage1(self, images: np.ndarray) -> Trainer:
        a = self.args
        trainer = new_trainer(
            self.model_config,
            torch.as_tensor(images),
            self.training,
            loss=a.loss,
            kl_weight=a.kl_weight,
            progress=not a.quiet,
            desc="stage 1",
        )
        checkpoint = self.out / "stage1.pt"
        if a.resume and checkpoint.exists():
            trainer.load_state_dict(read_checkpoint(checkpoint))
        if not trainer.budget_spent and trainer.outcome != "diverged":
            trainer.run(checkpoint=checkpoint)
        return trainer

    def prior_context(
        self, trainer: Trainer, means: np.ndarray, log_vars: np.ndarray
    ) -> PriorContext:
        a = self.args
        return PriorContext(
            trainer.model.eval(),
            means,
            seed=a.seed,
            recon_images=recon_images(self.test, a.fid_samples or a.preview)
            if "recon" in a.priors
            else None,
            gmm=gmm_options(a),
            two_stage=stage2_options(a, stage2_training(a, self.training)),
            train_log_vars=log_vars,
            progress=not a.quiet,
            stage2_checkpoint=self.stage2_checkpoint(),
        )

    def stage2_checkpoint(self) -> Stage2Checkpoint:
        """`stage2.pt`: stage 2's training state, saved as it trains; --resume goes
        on from it (vae.priors.train_stage2_model checks that it belongs to this
        stage 1 and these stage-2 options)."""
        path = self.out / "stage2.pt"
        resumable = self.args.resume and path.is_file()
        return Stage2Checkpoint(
            lambda state: write_checkpoint(state, path),
            read_checkpoint(path) if resumable else None,
        )

    def check_recon_budget(self) -> None:
        """`recon` reconstructs x_test images: refuse a sample count it cannot meet
        now, not after hours of training."""
        if "recon" not in self.args.priors:
            return
        if self.args.fid_samples > len(self.test):
            raise InputError(
                f"--fid-samples {self.args.fid_samples}: the recon prior can make "
                f"{len(self.test)} reconstructions of {len(self.test)} test images"
            )
        self.args.preview = min(self.args.preview, len(self.test))

    def fid(self, images: np.ndarray) -> float:
        stats = self.engine.stats(images, cache=False, desc="samples")
        return self.reference.distance(stats)

    def selection(self) -> tuple[ImageSet, np.ndarray]:
        """The full x_train and the chosen subset's images, indices saved to --out."""
        a = self.args
        train = self.load("train")
        chosen = select(a.criterion, train, a.n, seed=a.seed,
                        scores=self.scores(train), label="--n ")  # fmt: skip
        saved = self.out / "selection.npy"
        changed = saved.is_file() and not np.array_equal(np.load(saved), chosen.indices)
        if a.resume and changed:
            raise InputError(
                f"--resume: {self.out / 'stage1.pt'} was trained on another subset "
                f"({saved}); resume with the --criterion, --n and --seed it started "
                f"with, or use a new --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(saved, suffix=".npy") as tmp:
            np.save(tmp, chosen.indices)
        self.class_counts = evaluate.class_counts(train, chosen.indices)
        return train, np.asarray(train.images)[chosen.indices]

    def stage1_metrics(self, train: ImageSet, subset, trainer: Trainer) -> dict:
        a = self.args
        history = [asdict(r) for r in trainer.history]
        if history:
            save_loss_curve(
                history,
                self.out / "loss.png",
                f"stage 1: {a.criterion}, n={len(subset)}",
            )
        last = history[-1] if history else {}
        return {
            "n_train": len(subset),
            "criterion": a.criterion,
            "mahalanobis_space": a.mahalanobis_space
            if SCORE_KIND.get(a.criterion) == "mahalanobis"
            else None,
            "mahalanobis_covariance": a.mahalanobis_covariance
            if SCORE_KIND.get(a.criterion) == "mahalanobis"
            else None,
            "seed": a.seed,
            "outcome": trainer.outcome,
            "class_counts": json.loads(self.class_counts),
            "epochs_run": trainer.epoch,  # rounds: epochs under an epoch budget
            "steps_run": trainer.step,
            "images_seen": trainer.images,
            **evaluate.stage1_convergence(trainer.history),
            "loss_mse_per_pixel": last.get("mse"),
            "objective": last.get("loss"),
            "train_sha256": train.sha256,
            # the original pixels, or a re-encoded copy whose FIDs are shifted
            "data": {"encoding": train.encoding, "lossless": train.lossless},
            "model": trainer.model.describe(),
            "training": asdict(self.training),
            "loss": a.loss,
            "kl_weight": a.kl_weight,
            "history": history,
        }

    def prior_metrics(self, ctx: PriorContext, subset) -> dict:
        a = self.args
        fid = self.fid if a.fid_samples > 0 else None
        results = evaluate.evaluate_priors(
            ctx, a.priors, samples=a.fid_samples, fid=fid, preview=a.preview
        )
        for result in results:
            save_sample_grid(
                result.preview,
                self.out / f"samples_{result.prior}.png",
                f"{result.prior} prior: {a.criterion}, n={len(subset)}",
            )
        metrics = {"priors": {r.prior: r.record() for r in results}}
        if ctx.stage2 is not None:
            metrics["stage2"] = evaluate.stage2_summary(ctx.stage2)
        if ctx.gmm_fit is not None:
            metrics["gmm"] = evaluate.gmm_summary(ctx)
        if fid is not None:
            metrics["fid_reference"] = {
                "split": "test",
                "n": len(self.test),
                "sha256": self.test.sha256,
                "network": self.engine.extractor.key,
            }
        return metrics


def main(argv=None) -> None:
    args = parser(__doc__).parse_args(argv)
    check(args)
    try:
        with cache_scope(args):
            _run(args)
    except KeyboardInterrupt:
        started = (Path(args.out) / "stage1.pt").is_file()
        raise KeyboardInterrupt(
            "continue with the same command and --resume (stage 1 goes on from "
            "its last epoch; stage 2, if it had started, from its last save, "
            "about a minute back)"
            if started
            else "no checkpoint yet; the same command starts afresh"
        ) from None


def _run(args: argparse.Namespace) -> None:
    started = time.time()
    run = Run(args)
    run.check_recon_budget()
    warn_small_sample(args.fid_samples, "--fid-samples")  # once the input is good
    train, subset = run.selection()
    trainer = run.train_stage1(subset)
    metrics = run.stage1_metrics(train, subset, trainer)
    if trainer.outcome == "diverged":
        _write_metrics(run.out, {**metrics, "seconds": time.time() - started})
        print(
            f"error: stage 1 diverged (non-finite loss) in epoch {trainer.epoch + 1}; "
            f"no samples drawn; see {run.out / 'metrics.json'}",
            file=sys.stderr,
        )
        raise SystemExit(1)
    means, log_vars, latent = evaluate.latent_summary(trainer.model, subset)
    metrics.update(latent)
    context = run.prior_context(trainer, means, log_vars)
    metrics.update(run.prior_metrics(context, subset))
    metrics["seconds"] = time.time() - started
    _write_metrics(run.out, metrics)
    _print_summary(metrics)


def _write_metrics(out: Path, metrics: dict) -> None:
    with atomic_path(out / "metrics.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str))


def _print_summary(metrics: dict) -> None:
    print(
        f"{metrics['criterion']} n={metrics['n_train']}: {metrics['steps_run']} steps "
        f"({metrics['epochs_run']} rounds), per-pixel MSE "
        f"{metrics['loss_mse_per_pixel']:.5f}, variance law "
        f"{metrics['variance_law']:.3f}, inactive dims {metrics['inactive_dims']}/"
        f"{metrics['latent_dim']}"
    )
    for prior, record in metrics["priors"].items():
        fid = "-" if record["fid"] is None else f"{record['fid']:.2f}"
        print(f"  {prior:10s} FID {fid} ({record['fid_samples']} samples)")


if __name__ == "__main__":
    run_cli(main)
