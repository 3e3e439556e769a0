"""Criterion scores the trials need, computed beside the trials, not before them.

The recon criteria need a reference VAE trained on all of x_train; the Mahalanobis
criteria need x_train's FID features. Run before the first trial, they would leave a
GPU cluster idle for hours. Instead:

* `Prerequisites.start` reads each kind's scores from the cache (ready at once) or
  launches it as a Ray task. x_train reaches the task as an object-store reference
  (zero-copy), never inside a closure: Ray refuses functions over 95 MiB, and x_train
  alone is 147 MiB.
* `GatedTrials`, a Tune searcher, hands Tune the grid's trials in grid order, except
  that a trial whose criterion needs scores is handed over only once they exist. Trials
  of `all`, `random` and `class_balanced` start at once; a waiting trial is not yet a
  Tune trial, so it holds no resources.
* Trials read the scores from the object store (`SweepData.scores`); the driver writes
  them to the score cache as they arrive, so a re-run or `--resume` skips the work.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
from ray.tune.search import Searcher

from fid.client import ClientOptions, FIDClient
from fid.mahalanobis_scores import pixel_mahalanobis_scores, reference_distances
from fid.priority_lock import BULK
from fid.stats import Statistics
from selection.criteria import SCORE_KIND, CovarianceEstimate, ScoreBook
from selection.feature_scores import (
    FEATURE_KINDS,
    SEEDED_KINDS,
    feature_scores,
    pixel_features,
)
from sweep.cluster import trial_device
from sweep.config import GridConfig
from sweep.storage import fetch, publish
from sweep.trials import section as settings_section
from vae.recon_scores import reference_scores
from vae.trainer import read_checkpoint
from vae_sweep.files import content_key

FEATURE_CHUNK = 5000  # x_train images per feature call to the FID service

# The live Prerequisites of each sweep in this driver process, by sweep folder. Tune
# pickles its searcher into the experiment and unpickles it on --resume, so the
# searcher finds the current driver's tasks here rather than holding them.
GATES: dict[str, Prerequisites] = {}


def waiting_for(gate: str) -> dict[str, int]:
    """The prerequisites of the sweep at `gate` not ready yet, by kind (for the
    console); {} when it has none, or none is live in this driver."""
    prerequisites = GATES.get(gate)
    return prerequisites.waiting() if prerequisites is not None else {}


def _span(started: float) -> dict:
    """When a task ran, for the sweep's accounting (and to check the overlap)."""
    return {"started_at": started, "finished_at": time.time(),
            "seconds": time.time() - started}  # fmt: skip


@ray.remote(num_returns=2)
def recon_task(train, options: dict, checkpoint: str, checkpoint_every: int):
    """Reference-VAE reconstruction errors of x_train; (scores, span), a checkpoint
    every `checkpoint_every` rounds.

    `checkpoint` is in the sweep's storage, which every node sees: Ray retries a task
    whose node was lost, and the retry continues from the last epoch saved there.
    """
    started = time.time()
    training = dataclasses.replace(options["training"], device=trial_device())
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / "reference.pt"
        resumed = fetch(checkpoint, local)
        resumed_epoch = int(read_checkpoint(local)["epoch"]) if resumed else 0

        def publish_checkpoint(report) -> None:
            if report.epoch % checkpoint_every == 0:
                publish(local, checkpoint)

        scores = reference_scores(
            train.images,
            **{**options, "training": training},
            checkpoint=local,
            checkpoint_every=checkpoint_every,
            callbacks=[publish_checkpoint],
        )
        publish(local, checkpoint)
    return scores, {**_span(started), "resumed_from_epoch": resumed_epoch}


@ray.remote(num_returns=2)
def mahalanobis_task(features, reference: Statistics,
                     covariance: CovarianceEstimate):  # fmt: skip
    """Mahalanobis distances of x_train's FID features (the features prerequisite's,
    which Ray hands over once it has ended) to the reference; (scores, span)."""
    started = time.time()
    scores = reference_distances(features, reference, covariance)
    return scores, _span(started)


@ray.remote(num_returns=2)
def feature_score_task(train, features, kind: str, seed: int):
    """A literature criterion's scores (selection.feature_scores) of x_train, on its
    FID features (the prerequisite's) or, `features` None, its pixels."""
    started = time.time()
    source = pixel_features(train.images) if features is None else features
    scores = feature_scores(kind, source, np.asarray(train.labels), seed=seed)
    return scores, _span(started)


@ray.remote(num_returns=2)
def pixel_mahalanobis_task(train, test, covariance: CovarianceEstimate):
    """Pixel-space Mahalanobis distances of x_train to x_test; (scores, span)."""
    started = time.time()
    scores = pixel_mahalanobis_scores(train.images, test.images,
                                      covariance=covariance)  # fmt: skip
    return scores, _span(started)


FEATURES = "features"  # the prerequisite of x_train's FID features (memorization)


def measures_memorization(config: GridConfig) -> bool:
    """Whether trials read x_train's FID features: memorization measures each
    prior's samples against the trial's own training images."""
    return config.kind == "vae" and "memorization" in config.fid.metrics


@ray.remote(num_returns=2)
def features_task(train, services: tuple[str, ...], namespace: str,
                  client: ClientOptions):  # fmt: skip
    """x_train's FID features, (N, d) float32, from the FID service in chunks at bulk
    priority (each chunk cached by the service); (features, span)."""
    started = time.time()
    features = FIDClient(services, namespace, client).features_in_chunks(
        train.images, FEATURE_CHUNK, cache=True, priority=BULK
    )
    return features, _span(started)


@dataclass
class _Job:
    scores: ray.ObjectRef  # (N,) float64
    span: ray.ObjectRef | None  # when the task ran; None: read from the cache
    gpu: float  # GPUs the task holds, for the sweep's GPU accounting
    done: bool = False
    ran: dict | None = None  # the span, once done: started_at, finished_at, seconds
    error: str | None = None
    persist: bool = True  # cached in the score cache (features: the FID service's)


class Prerequisites:
    """Score references by kind: cached ones ready at once, the rest Ray tasks."""

    def __init__(self, book: ScoreBook):
        self.book = book  # keys of every kind (compute functions are not used)
        self.jobs: dict[str, _Job] = {}

    def start(
        self,
        kind: str,
        launch: Callable[[], tuple[ray.ObjectRef, ray.ObjectRef]],
        *,
        gpu: float = 0.0,
        persist: bool = True,
    ) -> None:
        cached = self.book.cached(kind) if persist else None
        if cached is not None:
            self.jobs[kind] = _Job(ray.put(cached), None, gpu, done=True)
            return
        scores, span = launch()
        self.jobs[kind] = _Job(scores, span, gpu, persist=persist)

    def ready(self, kind: str) -> bool:
        """Whether `kind`'s task has ended (well or not); caches scores that arrived."""
        job = self.jobs[kind]
        if not job.done and ray.wait([job.scores], timeout=0)[0]:
            self._finish(kind, job)
        return job.done

    def _finish(self, kind: str, job: _Job) -> None:
        job.done = True
        try:
            scores = ray.get(job.scores)
        except Exception as error:  # the trials that need them fail with it
            job.error = str(error).strip().splitlines()[-1]
            return
        if job.persist:
            self.book.save(kind, scores)
        job.ran = ray.get(job.span)

    def wait_all(self) -> None:
        for kind, job in self.jobs.items():
            if not job.done:
                ray.wait([job.scores])
                self._finish(kind, job)

    def waiting(self) -> dict[str, int]:
        """The prerequisites not ready yet, counted by kind (`recon`, `k_center`,
        `features`, ...: a key's part before its content hash)."""
        counts: dict[str, int] = {}
        for key in self.jobs:
            if not self.ready(key):
                kind = key.split("-")[0]
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def refs(self) -> dict[str, ray.ObjectRef]:
        return {kind: job.scores for kind, job in self.jobs.items()}

    def spans(self) -> dict[str, dict | None]:
        """Each kind's task span (None when its scores came from the cache)."""
        return {kind: job.ran for kind, job in self.jobs.items()}

    def gpu_seconds(self) -> float:
        return sum(
            job.ran["seconds"] * job.gpu for job in self.jobs.values() if job.ran
        )


def score_need(config: GridConfig, params: dict) -> tuple[str, str, dict] | None:
    """(key, kind, spec) of the scores a trial's criterion reads, or None.

    The spec holds the trial's own `selection.*` settings (they may be grid axes):
    trials with the same key share one score vector. Everything else the scores
    depend on is the grid's base recipe, one per sweep.
    """
    kind = SCORE_KIND.get(params.get("criterion"))
    if kind is None:
        return None
    selection = settings_section(config, "selection", params)
    if kind == "mahalanobis":
        spec = {"space": selection.mahalanobis_space,
                "covariance": selection.mahalanobis_covariance,
                "ridge": selection.mahalanobis_ridge}  # fmt: skip
    elif kind in FEATURE_KINDS:
        seeded = kind in SEEDED_KINDS
        spec = {"kind": kind, "space": selection.space,
                "seed": params["seed"] if seeded else None}  # fmt: skip
    else:
        seed = params["seed"] if selection.reference_per_seed else 0
        spec = {"reference_epochs": selection.reference_epochs, "seed": seed}
    return f"{kind}-{content_key(**spec)[:8]}", kind, spec


def score_key(config: GridConfig, params: dict) -> str | None:
    need = score_need(config, params)
    return need[0] if need else None


def trial_needs(config: GridConfig, params: dict) -> tuple[str, ...]:
    """The prerequisites a trial waits for before it starts: its criterion's scores.
    x_train's features, which memorization reads, are not among them: a trial
    trains first and takes them (a Ray reference) only for its final metrics, by
    when the features task, started with the sweep, has long ended."""
    key = score_key(config, params)
    return (key,) if key else ()


class GatedTrials(Searcher):
    """The grid's trials in order, each handed to Tune once its scores exist."""

    def __init__(self, trials: list[dict], needs: list[tuple[str, ...]], gate: str):
        super().__init__()
        self.trials = trials
        self.needs = needs  # per trial, the prerequisite keys it waits for
        self.gate = gate
        self.suggested: list[int] = []  # indices into trials, in the order handed out

    def suggest(self, trial_id: str):
        if len(self.suggested) >= len(self.trials):
            return Searcher.FINISHED
        prerequisites = GATES.get(self.gate)
        taken = set(self.suggested)
        for index, needed in enumerate(self.needs):
            if index in taken:
                continue
            if not isinstance(needed, tuple):  # a searcher pickled before: one key
                needed = () if needed is None else (needed,)
            if prerequisites is None or all(map(prerequisites.ready, needed)):
                self.suggested.append(index)
                return {"trial": self.trials[index]}
        return None  # Tune asks again shortly

    def on_trial_complete(self, trial_id, result=None, error=False) -> None:
        pass

    def get_state(self) -> dict:
        return {"suggested": list(self.suggested)}

    def set_state(self, state: dict) -> None:
        self.suggested = [int(i) for i in state["suggested"]]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as file:
            json.dump(self.get_state(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as file:
            self.set_state(json.load(file))
