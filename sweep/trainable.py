"""One trial, read top to bottom: select -> stage 1 -> priors -> FID -> diagnostics.

Stage 1 reports every `eval.every` epochs (every epoch when 0) with a checkpoint, and an
intermediate FID of `eval.samples` Gaussian-prior samples at those epochs, which the
early-stopping schedulers act on; the last report carries the final FID per prior.
Restarted after a fault, a trial continues from its last checkpoint.
The E1/E2 kinds run in sweep/experiment_trials.py with the same data and FID actor.
"""

from __future__ import annotations

import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune

from fid.service import get_fid_service
from selection.criteria import ScoreBook, select
from selection.datasets import ImageSet
from sweep.config import GridConfig
from sweep.trials import settings
from vae.evaluate import evaluate_priors, latent_summary
from vae.inference import decode, to_uint8
from vae.priors import PriorContext, prior_seed
from vae.train import EpochReport, Trainer, new_trainer

STATE_FILE = "trial.pt"
NAMESPACE = "vae-sweep"


@dataclass(frozen=True)
class SweepData:
    """What every trial reads, put in the object store once by the driver."""

    train: ImageSet
    test: ImageSet
    scores: dict[str, np.ndarray]  # criterion scores by kind ('recon', 'mahalanobis')
    services: tuple[str, ...]  # FID actor names
    train_features: np.ndarray | None = None  # for the E1 kind


def fid_service(data: SweepData):
    """This trial's FID actor: replicas are shared out by trial id."""
    trial = tune.get_context().get_trial_id() or ""
    name = data.services[zlib.crc32(trial.encode()) % len(data.services)]
    return get_fid_service(name, namespace=NAMESPACE)


def device() -> str:
    return "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"


class Stage1Reporter:
    """The epoch callback: reports, intermediate FIDs and checkpoints to Tune."""

    def __init__(
        self,
        trainer: Trainer,
        grid: GridConfig,
        service,
        seed: int,
        fid_intermediate: float | None,
    ):
        self.trainer, self.grid, self.service, self.seed = trainer, grid, service, seed
        self.every = grid.eval.every
        self.fid_intermediate = fid_intermediate

    def intermediate_fid(self, epoch: int) -> float:
        # Gaussian-prior samples drawn from their own seed: training never sees them
        generator = torch.Generator().manual_seed(prior_seed(self.seed + epoch, "eval"))
        model = self.trainer.model
        z = torch.randn(self.grid.eval.samples, model.latent_dim, generator=generator)
        images = to_uint8(decode(model, z))
        model.train()
        return float(ray.get(self.service.fid.remote(images, reference="test")))

    def __call__(self, report: EpochReport) -> None:
        epoch = report.epoch
        last = epoch == self.trainer.config.epochs
        evaluate = bool(self.every) and epoch % self.every == 0
        if self.every and not (evaluate or last):
            return  # with evaluations on, Tune hears from a trial only at them
        if evaluate:
            self.fid_intermediate = self.intermediate_fid(epoch)
        if not (evaluate or last or epoch % self.grid.checkpoint_every == 0):
            tune.report(self.metrics(report))
            return
        with tempfile.TemporaryDirectory() as folder:
            state = self.trainer.state_dict()
            state["fid_intermediate"] = self.fid_intermediate
            torch.save(state, Path(folder) / STATE_FILE)
            checkpoint = tune.Checkpoint.from_directory(folder)
            tune.report(self.metrics(report), checkpoint=checkpoint)

    def metrics(self, report: EpochReport) -> dict:
        metrics = {
            "phase": "stage1",
            "epoch": report.epoch,
            "loss_mse": report.mse,
            "objective": report.loss,
            "lr": report.lr,
        }
        if self.fid_intermediate is not None:
            metrics["fid_intermediate"] = self.fid_intermediate
            metrics["fid_intermediate_samples"] = self.grid.eval.samples
        return metrics


def restore(trainer: Trainer) -> float | None:
    """Load the trial's last checkpoint, if any; the intermediate FID it carried."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        state = torch.load(
            Path(folder) / STATE_FILE, map_location="cpu", weights_only=True
        )
    trainer.load_state_dict(state)
    return state.get("fid_intermediate")


def vae_trial(config: dict, *, grid: GridConfig, data: SweepData) -> None:
    s = settings(grid, config["trial"], device=device())
    chosen = select(
        s.criterion,
        data.train,
        s.n_train,
        seed=s.seed,
        scores=ScoreBook.in_memory(data.scores),
    )
    subset = np.asarray(data.train.images)[chosen.indices]  # (n, 32, 32, 3) uint8
    trainer = new_trainer(
        s.model,
        torch.from_numpy(subset),
        s.stage1,
        loss=s.loss,
        kl_weight=s.kl_weight,
        desc="stage 1",
    )
    service = fid_service(data)
    reporter = Stage1Reporter(trainer, grid, service, s.seed, restore(trainer))
    if trainer.outcome != "diverged":
        trainer.run([reporter])
    final = {
        "phase": "final",
        "epoch": trainer.epoch,
        "outcome": trainer.outcome,
        "n_train_actual": len(subset),
        "config_hash": s.config_hash,
    }
    if trainer.history:
        final.update(
            loss_mse=trainer.history[-1].mse, objective=trainer.history[-1].loss
        )
    if reporter.fid_intermediate is not None:
        final["fid_intermediate"] = reporter.fid_intermediate
    if trainer.outcome == "diverged":
        tune.report(final)
        return

    means, latent = latent_summary(trainer.model, subset)
    ctx = PriorContext(
        trainer.model.eval(),
        means,
        seed=s.seed,
        recon_images=np.asarray(data.test.images),
        gmm=s.gmm,
        two_stage=s.two_stage,
    )

    def fid(images: np.ndarray) -> float:
        return float(ray.get(service.fid.remote(images, reference="test")))

    for result in evaluate_priors(ctx, grid.priors, samples=grid.fid.samples, fid=fid):
        final[f"fid_{result.prior}"] = result.fid
        final[f"fid_samples_{result.prior}"] = result.fid_samples
    final.update(latent)
    tune.report(final)
