"""One trial, read top to bottom: select -> stage 1 -> priors -> FID -> diagnostics.

Stage 1 reports every `eval.every` epochs (every epoch when 0) with a checkpoint, and an
intermediate FID of `eval.samples` Gaussian-prior samples at those epochs, which the
early-stopping schedulers act on; the last report carries the final FID per prior.
Restarted after a fault, a trial continues from its last checkpoint.
The E1/E2 kinds run in sweep/experiment_trials.py with the same data and FID actor.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune

from fid.client import ClientOptions, FIDClient
from fid.memorization import memorization
from fid.priority_lock import FINAL, INTERACTIVE
from selection.criteria import ScoreBook, select
from selection.datasets import ImageSet
from sweep.budget import budget_unit, checkpoint_rounds, in_units
from sweep.cluster import trial_device
from sweep.config import GridConfig
from sweep.folder import (
    NAMESPACE,
    SAMPLES_FOLDER,
    STAGE2_FOLDER,
    STATE_FILE,
    copies_file,
    sample_grid_file,
)
from sweep.prerequisites import score_need
from sweep.storage import fetch, join, publish, write_bytes
from sweep.trials import settings
from vae.evaluate import (
    class_counts,
    evaluate_priors,
    gmm_summary,
    latent_summary,
    stage1_convergence,
    stage2_summary,
)
from vae.inference import decode, to_uint8
from vae.plots import pairs_png, sample_grid_png
from vae.priors import PriorContext, prior_seed, recon_images
from vae.stage2 import Stage2Checkpoint
from vae.train_config import EpochReport
from vae.trainer import Trainer, new_trainer, read_checkpoint

SAMPLE_GRID = 64  # samples shown per prior


@dataclass(frozen=True)
class SweepData:
    """What every trial reads: object-store references the driver made once.

    A trial resolves only what it needs; the arrays arrive as read-only views of the
    node's object store (zero-copy), shared by every trial process on the node.
    """

    train: ray.ObjectRef  # ImageSet of plain arrays (x_train)
    test: ray.ObjectRef  # ImageSet (x_test)
    scores: dict[str, ray.ObjectRef]  # criterion scores by kind, (N,) float64
    services: tuple[str, ...]  # FID actor names
    client: ClientOptions = ClientOptions()
    train_features: ray.ObjectRef | None = None  # (N, d) float32, for the E1 kind
    # the sweep's folder (local or s3://): each finished trial writes a sample grid per
    # prior into samples/<trial_id>/, for the analysis report
    folder: str | None = None


def share(images: ImageSet) -> ray.ObjectRef:
    """Put a dataset in the object store so that every process maps one copy.

    Ray stores a plain ndarray out of band and hands workers a read-only view of it;
    an np.memmap (how the decoded-data cache opens files) would be pickled in-band,
    a private copy in every process.
    """
    plain = ImageSet(
        np.ascontiguousarray(images.images).view(np.ndarray),
        np.asarray(images.labels).view(np.ndarray),
        images.classes,
        images.sha256,
        images.source,
        images.encoding,
    )
    return ray.put(plain)


def fid_service(data: SweepData) -> FIDClient:
    """This trial's way to the FID actors: the least-loaded live replica per call."""
    return FIDClient(data.services, NAMESPACE, data.client)


class Stage1Reporter:
    """The epoch callback: reports, intermediate FIDs and checkpoints to Tune."""

    def __init__(
        self,
        trainer: Trainer,
        grid: GridConfig,
        service,
        seed: int,
        fid_by_epoch: dict[int, float],
    ):
        self.trainer, self.grid, self.service, self.seed = trainer, grid, service, seed
        # eval.every and checkpoint_every count in the budget's unit: epochs, or steps
        self.unit = budget_unit(grid)
        self.every = grid.eval.every
        self.checkpoint_every = in_units(grid, grid.checkpoint_every)
        # every intermediate FID so far, restored with the checkpoint: the trial's
        # own history, which Tune's result log (restored from a lagging experiment
        # state) may lack after a resume
        self.fid_by_epoch = dict(fid_by_epoch)

    def intermediate_fid(self, epoch: int) -> float:
        # Gaussian-prior samples drawn from their own seed: training never sees them
        generator = torch.Generator().manual_seed(prior_seed(self.seed + epoch, "eval"))
        model = self.trainer.model
        z = torch.randn(self.grid.eval.samples, model.latent_dim, generator=generator)
        images = to_uint8(decode(model, z))
        model.train()
        return self.service.fid(images, priority=INTERACTIVE)

    def __call__(self, report: EpochReport) -> None:
        epoch = report.epoch  # rounds: epochs under an epoch budget
        at = report.step if self.unit == "step" else epoch
        last = self.trainer.budget_spent
        evaluate = bool(self.every) and at % self.every == 0
        if self.every and not (evaluate or last):
            return  # with evaluations on, Tune hears from a trial only at them
        if evaluate:
            self.fid_by_epoch[epoch] = self.intermediate_fid(epoch)
        if not (evaluate or last or at % self.checkpoint_every == 0):
            tune.report(self.metrics(report))
            return
        with tempfile.TemporaryDirectory() as folder:
            state = self.trainer.state_dict()
            state["fid_by_epoch"] = self.fid_by_epoch
            state["fid_busy_seconds"] = self.service.busy_seconds
            torch.save(state, Path(folder) / STATE_FILE)
            checkpoint = tune.Checkpoint.from_directory(folder)
            tune.report(self.metrics(report), checkpoint=checkpoint)

    @property
    def fid_intermediate(self) -> float | None:
        """The latest intermediate FID, which the schedulers act on."""
        return self.fid_by_epoch[max(self.fid_by_epoch)] if self.fid_by_epoch else None

    def history(self) -> list[dict]:
        """One row per stage-1 epoch run, restored epochs included."""
        samples = self.grid.eval.samples
        return [
            {"epoch": r.epoch, "step": r.step, "images_seen": r.images_seen,
             "loss_mse": r.mse, "objective": r.loss, "lr": r.lr,
             "gamma": r.gamma, "fid_intermediate": self.fid_by_epoch.get(r.epoch),
             "fid_intermediate_samples": samples if r.epoch in self.fid_by_epoch
             else None,
             "finished_at": r.finished_at}
            for r in self.trainer.history
        ]  # fmt: skip

    def metrics(self, report: EpochReport) -> dict:
        metrics = {
            "phase": "stage1",
            "epoch": report.epoch,
            "step": report.step,
            "images_seen": report.images_seen,
            "loss_mse": report.mse,
            "objective": report.loss,
            "lr": report.lr,
            "gamma": report.gamma,
            "finished_at": report.finished_at,
        }
        if self.fid_intermediate is not None:
            metrics["fid_intermediate"] = self.fid_intermediate
            metrics["fid_intermediate_samples"] = self.grid.eval.samples
        metrics["fid_busy_seconds"] = self.service.busy_seconds
        return metrics


def restore(trainer: Trainer, service: FIDClient) -> dict[int, float]:
    """Load the trial's last checkpoint, if any; the intermediate FIDs it carried.

    The FID service time spent before the restart carries over, so the trial's
    share of it is counted once, in full.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return {}
    with checkpoint.as_directory() as folder:
        state = torch.load(
            Path(folder) / STATE_FILE, map_location="cpu", weights_only=True
        )
    trainer.load_state_dict(state)
    service.busy_seconds += float(state.get("fid_busy_seconds", 0.0))
    return {int(epoch): float(fid) for epoch, fid in state["fid_by_epoch"].items()}


def stage2_checkpoint(folder: str, trainer: Trainer, grid: GridConfig):
    """Stage 2's training state in the sweep's storage (stage2/<trial_id>.pt), saved as
    it trains, so that a trial restarted in stage 2 (a lost node, a retried error, a
    resumed sweep) goes on from there, not from its start. Tune's checkpoints hold
    stage 1; the stage-2 state is saved as often, in time, as they are: every
    `checkpoint_every` stage-1 epochs' worth of seconds."""
    path = join(folder, STAGE2_FOLDER, f"{tune.get_context().get_trial_id()}.pt")
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "stage2.pt"
        saved = read_checkpoint(local) if fetch(path, local) else None

    def save(state: dict) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / "stage2.pt"
            torch.save(state, local)
            publish(local, path)

    round_seconds = [r.seconds for r in trainer.history]
    rounds = checkpoint_rounds(grid)
    seconds = rounds * float(np.mean(round_seconds or [60.0]))
    return Stage2Checkpoint(save, saved, seconds)


def save_samples(folder: str, images: np.ndarray, prior: str, fid: float) -> None:
    trial = tune.get_context().get_trial_id()
    title = f"{trial}, {prior} prior: FID {fid:.2f}"
    write_bytes(join(folder, SAMPLES_FOLDER, trial, sample_grid_file(prior)),
                sample_grid_png(images, title))  # fmt: skip


COPY_PAIRS = 8  # generated samples shown beside their nearest training images


def save_copies(folder: str, images: np.ndarray, copied, subset: np.ndarray,
                prior: str) -> None:  # fmt: skip
    """samples/<trial>/memorization_<prior>.png: the generated samples most like one
    training image (lowest nearest / second-nearest ratio) above those images."""
    closest = np.argsort(copied.ratios, kind="stable")[:COPY_PAIRS]
    trial = tune.get_context().get_trial_id()
    title = (f"{trial}, {prior}: memorization {copied.rate:.3f} (top: samples "
             f"closest to one training image; below: that image)")  # fmt: skip
    png = pairs_png(images[closest], subset[copied.nearest[closest]], title)
    write_bytes(join(folder, SAMPLES_FOLDER, trial, copies_file(prior)), png)


# Ray Train logs each checkpoint at INFO from the trial's worker, which Ray forwards
# to the driver's console: a line per checkpoint, the sweep's own view says enough
CHECKPOINT_LOGGER = "ray.train._internal.storage"


def vae_trial(config: dict, *, grid: GridConfig, data: SweepData) -> None:
    logging.getLogger(CHECKPOINT_LOGGER).setLevel(logging.WARNING)
    s = settings(grid, config["trial"], device=trial_device())
    train = ray.get(data.train)  # read-only, zero-copy
    need = score_need(grid, config["trial"])
    # released by the driver's GatedTrials only once these scores exist
    scores = {need[1]: ray.get(data.scores[need[0]])} if need else {}
    chosen = select(
        s.criterion, train, s.n_train, seed=s.seed, scores=ScoreBook.in_memory(scores)
    )
    subset = train.images[chosen.indices]  # (n, 32, 32, 3) uint8, a private copy
    trainer = new_trainer(
        s.model,
        torch.from_numpy(subset),
        s.stage1,
        loss=s.loss,
        kl_weight=s.kl_weight,
        desc="stage 1",
    )
    service = fid_service(data)
    reporter = Stage1Reporter(trainer, grid, service, s.seed, restore(trainer, service))
    if trainer.outcome != "diverged":
        trainer.run([reporter])
    final = {
        "phase": "final",
        "class_counts": class_counts(train, chosen.indices),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "images_seen": trainer.images,
        **stage1_convergence(trainer.history),
        "outcome": trainer.outcome,
        "n_train_actual": len(subset),
        "config_hash": s.config_hash,
    }
    if trainer.history:
        last = trainer.history[-1]
        final.update(loss_mse=last.mse, objective=last.loss, gamma=last.gamma)
    if reporter.fid_intermediate is not None:
        final["fid_intermediate"] = reporter.fid_intermediate
    final["history_json"] = json.dumps(reporter.history())
    if trainer.outcome == "diverged":
        final["fid_busy_seconds"] = service.busy_seconds
        final["finished_at"] = time.time()  # Tune's own timestamp is whole seconds
        tune.report(final)
        return

    means, log_vars, latent = latent_summary(trainer.model, subset)
    ctx = PriorContext(
        trainer.model.eval(),
        means,
        seed=s.seed,
        recon_images=recon_images(ray.get(data.test), grid.fid.samples),
        gmm=s.gmm,
        two_stage=s.two_stage,
        train_log_vars=log_vars,
        stage2_checkpoint=stage2_checkpoint(data.folder, trainer, grid)
        if data.folder is not None and "two_stage" in grid.priors
        else None,
    )

    shown = []  # the first samples of each prior, in grid.priors order
    copies = []  # each prior's generated samples and their memorization
    # the trial's own training images' FID features: a view of x_train's
    memorize = "memorization" in grid.fid.metrics
    train_features = (ray.get(data.train_features)[chosen.indices]
                      if memorize else None)  # fmt: skip

    def fid(images: np.ndarray) -> float | dict:
        shown.append(images[:SAMPLE_GRID])
        if grid.fid.metrics == ("fid",) and not grid.fid.bootstrap:
            return service.fid(images, priority=FINAL)
        names = [m for m in grid.fid.metrics if m != "memorization"]
        out = service.metrics(images, names=names, priority=FINAL, seed=s.seed,
                              bootstrap=grid.fid.bootstrap,
                              features=memorize)  # fmt: skip
        if memorize:
            copied = memorization(out.pop("features"), train_features)
            copies.append((images, copied))
            out["memorization"] = copied.rate
        return out

    for result in evaluate_priors(ctx, grid.priors, samples=grid.fid.samples, fid=fid):
        if data.folder is not None and shown:
            save_samples(data.folder, shown[-1], result.prior, result.fid)
        if data.folder is not None and copies:
            save_copies(data.folder, *copies[-1], subset, result.prior)
        final[f"fid_{result.prior}"] = result.fid
        final[f"fid_samples_{result.prior}"] = result.fid_samples
        for metric, value in result.extra.items():  # kid, kid_std, fid_inf, *_ci_*
            final[f"{metric}_{result.prior}"] = value
    final.update(latent)
    if ctx.stage2 is not None:
        stage2 = stage2_summary(ctx.stage2)
        final["stage2_history_json"] = json.dumps(stage2.pop("stage2_history"))
        final.update(stage2)
    if ctx.gmm_fit is not None:
        final.update(gmm_summary(ctx))
    # the FID service's network time spent on this trial (its GPU share is in results)
    final["fid_busy_seconds"] = service.busy_seconds
    final["finished_at"] = time.time()  # Tune's own timestamp is whole seconds
    tune.report(final)
