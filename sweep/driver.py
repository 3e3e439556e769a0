"""The driver's work between a valid grid and the result tables (DESIGN section 2).

Ray Tune 2.60 facts that shape it (DESIGN section 7): trials find the FID actors by
name, never through `param_space`; big arrays travel once with `tune.with_parameters`;
a killed driver resumes with `Tuner.restore`.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule

from fid.features import extractor_factory
from fid.network import NETWORK_SHA1
from fid.service import start_fid_service
from selection.criteria import SCORE_KIND, ScoreBook
from selection.datasets import ImageSet, load_cifar10
from selection.errors import InputError
from selection.scores import mahalanobis_source
from sweep.config import GridConfig
from sweep.experiment_trials import repeated_trial, scrambled_trial
from sweep.results import build_tables, package_version, summary, write_tables
from sweep.storage import write_bytes
from sweep.trainable import NAMESPACE, SweepData, vae_trial
from sweep.trials import settings, trial_name
from vae.reference import recon_source

METRIC = "fid_intermediate"


def load_data(config: GridConfig) -> tuple[ImageSet, ImageSet]:
    data = config.data
    train = load_cifar10(
        data.root, "train", download=data.download, limit=data.train_limit
    )
    test = load_cifar10(
        data.root, "test", download=data.download, limit=data.test_limit
    )
    return train, test


def check_local_resources(config: GridConfig) -> None:
    """On the embedded local Ray, a GPU request it cannot meet would wait forever."""
    import torch

    gpus = torch.cuda.device_count()  # what a local Ray detects
    for key, wanted in (("resources.gpu", config.resources.gpu),
                        ("fid_service.gpu", config.fid_service.gpu)):  # fmt: skip
        if wanted > gpus:
            raise InputError(
                f"{key} = {wanted:g}, but this machine's Ray has {gpus:g} GPUs: set it "
                f"to 0 here (--set {key}=0), or pass --address to use a cluster"
            )


def service_names(config: GridConfig) -> tuple[str, ...]:
    """The FID actors' names: trials look them up, and a restart keeps them."""
    return tuple(f"{config.name}-fid-{i}" for i in range(config.fid_service.replicas))


def start_services(config: GridConfig, test: ImageSet) -> tuple[list, ray.ObjectRef]:
    """Named, restartable FID actors holding the x_test reference; started once.

    The driver keeps the handles for the whole sweep: an actor nobody holds is
    destroyed, and trials only look them up by name.
    """
    options = {
        "network": config.fid.network,
        "network_sha1": NETWORK_SHA1,
        "batch_size": config.fid.batch_size,
    }
    if config.fid.extractor:
        options["extractor_factory"] = extractor_factory(config.fid.extractor)
    reference = ray.put(test)  # held by the caller's handles for restarts
    actors = [
        start_fid_service(
            {"test": reference},
            name=name,
            namespace=NAMESPACE,
            num_gpus=config.fid_service.gpu,
            num_cpus=config.fid_service.cpu,
            **options,
        )
        for name in service_names(config)
    ]
    # the x_test statistics are computed (or read from the cache) once, here
    ray.get([actor.reference_stats.remote("test") for actor in actors])
    return actors, reference


def prerequisites(
    config: GridConfig, trials: list[dict], train: ImageSet, service, network: str
) -> dict[str, np.ndarray]:
    """Criterion scores needed by any trial, computed once per sweep and cached."""
    kinds = {SCORE_KIND[t["criterion"]] for t in trials if t["criterion"] in SCORE_KIND}
    providers = {}
    if "mahalanobis" in kinds:
        # x_train features through the actor, whose cache keeps them for E1 too
        providers["mahalanobis"] = mahalanobis_source(
            train,
            ray.get(service.reference_stats.remote("test")),
            network=network,
            extract=lambda images: ray.get(service.features.remote(images, cache=True)),
            ridge=config.selection.mahalanobis_ridge,
        )
    if "recon" in kinds:
        providers["recon"] = _recon(config, train)
    book = ScoreBook(providers)
    return {kind: book.get(kind) for kind in sorted(kinds)}


def _recon(config: GridConfig, train: ImageSet):
    # the reference VAE takes the grid's base settings (not its axes): one per sweep
    base = settings(config, {"n_train": len(train), "criterion": "all", "seed": 0})
    resources = config.resources
    key, train_and_score = recon_source(
        train,
        model=base.model,
        training=base.reference,
        loss=base.loss,
        kl_weight=base.kl_weight,
    )
    task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(train_and_score)
    return key, lambda: ray.get(task.remote())


def scheduler(config: GridConfig):
    options = config.scheduler
    # one past the last stage-1 epoch: a trial that survives every rung must not be
    # stopped at its last epoch, before its priors are scored
    epochs = max(config.grid.get("stage1.epochs", [config.stage1.epochs])) + 1
    common = {"time_attr": "epoch", "metric": METRIC, "mode": "min"}
    if options.name == "asha":
        return ASHAScheduler(
            max_t=epochs,
            grace_period=options.grace_period,
            reduction_factor=options.reduction_factor,
            **common,
        )
    if options.name == "median":
        return MedianStoppingRule(
            grace_period=options.grace_period,
            min_samples_required=options.min_samples_required,
            **common,
        )
    if options.name == "hyperband":
        return HyperBandScheduler(
            max_t=epochs, reduction_factor=options.reduction_factor, **common
        )
    return None


TRAINABLES = {
    "vae": vae_trial,
    "fid_repeated": repeated_trial,
    "fid_scrambled": scrambled_trial,
}


def name_trial(trial) -> str:
    return trial_name(trial.config["trial"])


def trial_folder(trial) -> str:
    return f"trial_{trial.trial_id}"  # short: the axis values are in the results


def build_tuner(
    config: GridConfig, trials: list[dict], folder: str, data: SweepData, resume: bool
) -> tune.Tuner:
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    function = TRAINABLES[config.kind]
    trainable = tune.with_parameters(
        tune.with_resources(function, resources), grid=config, data=data
    )
    if resume and tune.Tuner.can_restore(folder):
        return tune.Tuner.restore(folder, trainable, resume_unfinished=True)
    storage, name = folder.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            scheduler=scheduler(config),
            trial_name_creator=name_trial,
            trial_dirname_creator=trial_folder,
            # one worker process serves trial after trial: torch is imported once
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
    )


class Stopwatch:
    """Seconds per driver phase, saved as timings.json beside the results."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def run_sweep(
    config: GridConfig,
    trials: list[dict],
    folder: str,
    *,
    train: ImageSet,
    test: ImageSet,
    address: str | None,
    resume: bool,
) -> pd.DataFrame:
    watch = Stopwatch()
    ray.init(
        address=address,
        namespace=NAMESPACE,
        include_dashboard=False,
        ignore_reinit_error=True,
    )
    watch.lap("ray_init")
    actors, _reference = start_services(config, test)  # both live until the end
    first = actors[0]
    network = ray.get(first.info.remote())["extractor"]
    watch.lap("fid_services")
    scores = {}
    if config.kind == "vae":
        scores = prerequisites(config, trials, train, first, network)
    features = None
    if config.kind == "fid_repeated":
        # every E1 size draws from x_train: extract it once, cached by the actor
        features = ray.get(first.features.remote(np.asarray(train.images), cache=True))
    watch.lap("prerequisites")
    data = SweepData(
        train=train,
        test=test,
        scores=scores,
        services=service_names(config),
        train_features=features,
    )
    results = list(build_tuner(config, trials, folder, data, resume).fit())
    watch.lap("tune_fit")
    meta = {
        "package_version": package_version(),
        "dataset_sha256": train.sha256,
        "test_sha256": test.sha256,
        "fid_network": network,
    }
    table, history = build_tables(results, config, meta)
    write_tables(folder, table, history)
    watch.lap("tables")
    trial_seconds = sum(
        float((r.metrics or {}).get("time_total_s") or 0) for r in results
    )
    timings = {"driver_seconds": watch.seconds, "trial_seconds_sum": trial_seconds,
               "trials": len(results)}  # fmt: skip
    write_bytes(f"{folder}/timings.json", json.dumps(timings, indent=2).encode())
    print(summary(table))
    print(f"results: {folder}/results.parquet, {folder}/history.parquet")
    return table
