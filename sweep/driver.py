"""The driver's work between a valid grid and the result tables (DESIGN section 2).

Ray Tune 2.60 facts that shape it (DESIGN section 7): trials find the FID actors by
name, never through `param_space`; big arrays go to the object store once and reach
every process as references (`sweep.trainable.share`), never inside a closure; the
criterion scores are computed beside the trials (`sweep.prerequisites`); a killed
driver resumes with `Tuner.restore`.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from functools import partial

import pandas as pd
import ray
from ray import tune

from fid.client import ClientOptions, FIDClient
from fid.features import extractor_factory
from fid.mahalanobis_scores import mahalanobis_key, pixel_key
from fid.network import NETWORK_SHA1
from fid.priority_lock import BULK
from fid.service import ALL_CORES, start_fid_service
from selection.criteria import CovarianceEstimate, ScoreBook
from selection.datasets import ImageSet, load_cifar10
from selection.feature_scores import FEATURE_KINDS
from sweep.accounting import Accounting
from sweep.budget import checkpoint_rounds
from sweep.cluster import (
    connect,
    head_placement,
    max_failures,
    preflight,
    remote_error,
    service_placement,
)
from sweep.config import GridConfig
from sweep.console import ConsoleView
from sweep.experiment_trials import repeated_trial, scrambled_trial
from sweep.folder import (
    GRID_FILE,
    HISTORY_FILE,
    NAMESPACE,
    PREREQUISITES_FOLDER,
    RESULTS_FILE,
)
from sweep.prerequisites import (
    FEATURE_CHUNK,
    FEATURES,
    GATES,
    GatedTrials,
    Prerequisites,
    feature_score_task,
    features_task,
    mahalanobis_task,
    measures_memorization,
    pixel_mahalanobis_task,
    recon_task,
    score_need,
    trial_needs,
    waiting_for,
)
from sweep.results import build_tables, package_version, summary, write_tables
from sweep.schedulers import scheduler
from sweep.stopping import ANALYSIS_LOGGER, stops_on_signals
from sweep.storage import join, write_bytes
from sweep.tracking import TrackingCallback, tracked
from sweep.trainable import SweepData, share, vae_trial
from sweep.trials import settings, trial_name
from vae.recon_scores import reference_key
from vae_sweep.errors import InputError, first_line
from vae_sweep.files import content_key


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
    """On the embedded local Ray, a request it cannot meet would wait forever."""
    import torch

    gpus = torch.cuda.device_count()  # what a local Ray detects
    for key, wanted in (("resources.gpu", config.resources.gpu),
                        ("fid_service.gpu", config.fid_service.gpu)):  # fmt: skip
        if wanted > gpus:
            raise InputError(
                f"{key} = {wanted:g}, but this machine's Ray has {gpus:g} GPUs: set it "
                f"to 0 here (--set {key}=0), or pass --address to use a cluster"
            )
    cpus = os.cpu_count() or 1
    service = config.fid_service
    needed = service.replicas * service.cpu + config.resources.cpu
    if needed > cpus:
        raise InputError(
            f"resources.cpu = {config.resources.cpu:g} with {service.replicas} FID "
            f"replica(s) of fid_service.cpu = {service.cpu:g} needs {needed:g} CPUs, "
            f"but this machine's Ray has {cpus}: lower them (--set ...), or pass "
            f"--address to use a cluster"
        )


def service_names(config: GridConfig) -> tuple[str, ...]:
    """The FID actors' names: trials look them up, and a restart keeps them."""
    return tuple(f"{config.name}-fid-{i}" for i in range(config.fid_service.replicas))


def standby_names(config: GridConfig, address: str | None) -> tuple[str, ...]:
    """The standby replica's name (fid_service.standby), where one runs: on a
    cluster; a local Ray restarts a lost replica at once, where it was."""
    service = config.fid_service
    if address and service.standby:
        return (f"{config.name}-fid-standby",)
    return ()


def client_options(config: GridConfig, address: str | None = None) -> ClientOptions:
    service = config.fid_service
    return ClientOptions(
        retries=service.retries,
        timeout=service.timeout_s,
        ping_timeout=service.ping_timeout_s,
        standby=standby_names(config, address),
    )


def start_services(
    config: GridConfig, test: ray.ObjectRef, address: str | None = None
) -> tuple[list, list]:
    """Named, restartable FID actors holding the x_test reference; started once.

    The driver keeps the handles (and `test`, from which a restarted actor rebuilds
    its reference) for the whole sweep: an actor nobody holds is destroyed, and
    trials only look them up by name. A replica that cannot start (a GPU it asked
    for is not there) stops the sweep with one line. (replicas, standbys).
    """
    options = {
        "network": config.fid.network,
        "network_sha1": NETWORK_SHA1,
        "batch_size": config.fid.batch_size,
        "chunk": config.fid_service.chunk,
        "threads": config.fid_service.threads,
    }
    if config.fid.extractor:
        options["extractor_factory"] = extractor_factory(config.fid.extractor)
    actors = [
        start_fid_service(
            {"test": test},
            name=name,
            namespace=NAMESPACE,
            num_gpus=config.fid_service.gpu,
            num_cpus=config.fid_service.cpu,
            placement=service_placement(config, address),
            **options,
        )
        for name in service_names(config)
    ]
    # the x_test statistics are computed (or read from the cache) once, here
    print(
        f"FID service: x_test statistics on {len(actors)} replica(s) (read from the "
        "cache when it holds them; minutes per 10,000 images on a CPU)",
        flush=True,
    )
    try:
        ray.get([actor.reference_stats.remote("test") for actor in actors])
    except ray.exceptions.RayActorError as error:
        found = remote_error(error)
        if found is None:
            raise
        raise InputError(f"FID service: {found}") from None
    standbys = [
        # on the head, which lives as long as the sweep does
        start_fid_service(
            {"test": test}, name=name, namespace=NAMESPACE, num_gpus=0, num_cpus=0,
            placement=head_placement(), **{**options, "threads": ALL_CORES},
        )  # fmt: skip
        for name in standby_names(config, address)
    ]
    for standby in standbys:  # its x_test statistics in the background, in time
        standby.reference_stats.remote("test")
    return actors, standbys


def start_prerequisites(
    config: GridConfig,
    trials: list[dict],
    folder: str,
    data: tuple[ImageSet, ray.ObjectRef, ImageSet, ray.ObjectRef],
    client: FIDClient,
    network: str,
) -> Prerequisites:
    """Launch every score vector a trial needs (one per score key), beside the
    trials; cached ones are ready at once. x_train's FID features come first, once,
    when any score in Inception space or memorization reads them."""
    needs = {need[0]: need for need in map(partial(score_need, config), trials)
             if need}  # fmt: skip
    plans = {key: _plan(config, kind, spec, folder, data, client, network)
             for key, kind, spec in needs.values()}  # fmt: skip
    prerequisites = Prerequisites(
        ScoreBook({key: (plan[0], None) for key, plan in plans.items()})
    )
    features = None
    # read by memorization, or by Inception-space scores not in the cache yet
    uncached = [key for key, (_, _, spec) in needs.items()
                if spec.get("space") == "inception"
                and prerequisites.book.cached(key) is None]  # fmt: skip
    if measures_memorization(config) or uncached:  # the FID service extracts
        launch = partial(features_task.options(num_cpus=0.25).remote, data[1],
                         service_names(config), NAMESPACE, client.options)
        prerequisites.start(FEATURES, launch, persist=False)
        features = prerequisites.jobs[FEATURES].scores
    for key in sorted(plans):
        _, launch, gpu = plans[key]
        prerequisites.start(key, partial(launch, features), gpu=gpu)
    return prerequisites


def _plan(config: GridConfig, kind: str, spec: dict, folder: str, data, client,
          network: str):  # fmt: skip
    """(cache key, launch(features) -> (scores, span) refs, GPUs) of one score key."""
    train, train_ref, test, test_ref = data
    if kind == "mahalanobis":
        covariance = CovarianceEstimate(spec["covariance"], spec["ridge"])
        if spec["space"] == "pixel":
            cache = pixel_key(train.sha256, test.sha256, covariance=covariance)
            return cache, lambda _: pixel_mahalanobis_task.options(num_cpus=1).remote(
                train_ref, test_ref, covariance), 0.0  # fmt: skip
        reference = client.reference_stats("test")
        cache = mahalanobis_key(train.sha256, reference, network=network,
                                covariance=covariance)  # fmt: skip
        return cache, lambda features: mahalanobis_task.options(
            num_cpus=_after_features(True)).remote(features, reference, covariance
        ), 0.0  # fmt: skip
    if kind in FEATURE_KINDS:
        inception = spec["space"] == "inception"
        cache = content_key(train=train.sha256, **spec,
                            network=network if inception else None)  # fmt: skip
        return cache, lambda features: feature_score_task.options(
            num_cpus=_after_features(inception)).remote(
            train_ref, features if inception else None, kind, spec["seed"] or 0
        ), 0.0  # fmt: skip
    # the reference VAE: the grid's base settings, its seed and epochs
    base = settings(config, {"n_train": len(train), "criterion": "all",
                             "seed": spec["seed"], **_selection(spec)})  # fmt: skip
    options = {"model": base.model, "training": base.reference,
               "loss": base.loss, "kl_weight": base.kl_weight}  # fmt: skip
    cache = reference_key(train.sha256, **options)
    # on shared storage: a task retried on another node continues from it
    checkpoint = join(folder, PREREQUISITES_FOLDER, f"reference-{cache}.pt")
    resources = config.resources
    return cache, lambda _: recon_task.options(
        num_cpus=resources.cpu, num_gpus=resources.gpu
    ).remote(train_ref, options, checkpoint, checkpoint_rounds(config)), resources.gpu


def _record_stopped_run(accounting: Accounting, stop: BaseException,
                        prerequisites: Prerequisites, phase: str) -> None:
    """timings.json gets the record of the run `stop` ended in `phase`; a storage
    that fails now, or a second signal, costs that record only, with a line saying
    so, never the stop's own message or exit code (the caller re-raises `stop`)."""
    try:
        accounting.write_stopped(stop, prerequisites, phase)
    except BaseException as error:  # noqa: BLE001 - the first stop is what propagates
        print(f"timings.json: this run's record was not written "
              f"({first_line(error)})", file=sys.stderr)  # fmt: skip


def _after_features(reads_features: bool) -> float:
    """The CPUs a score task reserves: none when it waits for x_train's features.
    Such a task becomes runnable only after trials have started, and Tune, once no
    trial is pending or running, waits up to 10 minutes for its searcher to hand
    out one without handling the ended trials' stops, so their CPUs stay reserved
    meanwhile; a task that asked for a CPU then waited those 10 minutes while the
    trials that need its scores waited for it. Unreserved, it runs at once beside
    whatever holds the CPUs (one score pass; the reference VAE and the tasks that
    start with the sweep keep theirs)."""
    return 0 if reads_features else 1


def _selection(spec: dict) -> dict:
    """The reference VAE's epochs as the axis value `settings` reads, and its seed
    taken as given (the trial seed the spec names)."""
    epochs = spec.get("reference_epochs")
    given = {"selection.reference_per_seed": True}
    return {**given, "selection.reference_epochs": epochs} if epochs else given


@contextmanager
def _unstarted_trials_unlisted():
    """Reading a sweep's state, Tune warns of each trial with no result yet, one
    line per trial (25 on a resume of study_cpu_v3): a resume expects them."""
    analysis = logging.getLogger(ANALYSIS_LOGGER)
    level = analysis.level
    analysis.setLevel(logging.ERROR)
    try:
        yield
    finally:
        analysis.setLevel(level)


def resumed_states(folder: str) -> dict[str, str]:
    """Tune's status of each trial a resume finds, by trial name."""
    with _unstarted_trials_unlisted():
        trials = tune.ExperimentAnalysis(folder).trials
    return {name_trial(t): t.status for t in trials}


def resume_plan(states: dict[str, str], total: int, retry_errored: bool) -> str:
    """One line: what a resume will skip, continue, retry and start."""
    states = list(states.values())
    done, errored = states.count("TERMINATED"), states.count("ERROR")
    unfinished = len(states) - done - errored
    fate = "retried from their last checkpoints" if retry_errored else (
        "kept as errors; --retry-errored retries them")  # fmt: skip
    return (
        f"resume: {done} trials finished (skipped), {unfinished} unfinished "
        f"(continue from their last checkpoints), {errored} errored ({fate}), "
        f"{total - len(states)} not started yet"
    )


TUNE_VERBOSE = 1  # --verbose: Tune's status tables and each finished trial's result

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
    config: GridConfig,
    trials: list[dict],
    folder: str,
    data: SweepData,
    *,
    resume: bool,
    retry_errored: bool = False,
    address: str | None = None,
    verbose: bool = False,
) -> tune.Tuner:
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    function = TRAINABLES[config.kind]
    trainable = tune.with_parameters(
        tune.with_resources(function, resources), grid=config, data=data
    )
    callbacks = [TrackingCallback(config, folder)] if tracked(config) else []
    console = None if verbose else ConsoleView(
        config, trials, waiting=partial(waiting_for, folder)
    )
    if console is not None:
        callbacks.append(console)
    if resume and tune.Tuner.can_restore(folder):
        states = resumed_states(folder)
        print(resume_plan(states, len(trials), retry_errored))
        if console is not None:
            console.ended_before(states, retry_errored=retry_errored)
        with _unstarted_trials_unlisted():
            tuner = tune.Tuner.restore(
                folder,
                trainable,
                resume_unfinished=True,
                # from their last checkpoints, as Tune's max_failures retries do
                resume_errored=retry_errored,
            )
        # the restored run configuration is the one the sweep started with: this
        # run's console and trackers replace its own (a resume may add a tracker).
        # Tune has no public setter; Ray is pinned to 2.60 (tests/test_tracking.py
        # and tests/test_console.py resume sweeps through this)
        run_config = tuner._local_tuner.get_run_config()
        run_config.callbacks = callbacks
        run_config.verbose = TUNE_VERBOSE if verbose else 0
        return tuner
    storage, name = folder.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            # the grid in order; trials waiting for criterion scores are handed to
            # Tune only when those exist, so they hold no resources meanwhile
            search_alg=GatedTrials(
                trials, [trial_needs(config, t) for t in trials], gate=folder
            ),
            num_samples=len(trials),
            # as many trials may wait for resources as the grid has (a custom
            # searcher otherwise gets one pending trial at a time)
            max_concurrent_trials=len(trials),
            scheduler=scheduler(config),
            trial_name_creator=name_trial,
            trial_dirname_creator=trial_folder,
            # one worker process serves trial after trial: torch is imported once
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(
                max_failures=max_failures(config, address)
            ),
            # two deep: Tune's experiment state in cloud storage lags the trials' own
            # checkpoints by a few seconds, and a resume restores from the one the
            # state names; with one kept, that one may already be deleted
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # the console view (sweep/console.py), or Tune's own tables (--verbose)
            verbose=TUNE_VERBOSE if verbose else 0,
            callbacks=callbacks,
        ),
    )


def run_sweep(
    config: GridConfig,
    trials: list[dict],
    folder: str,
    *,
    train: ImageSet,
    test: ImageSet,
    address: str | None,
    resume: bool,
    retry_errored: bool = False,
    grid_text: str | None = None,
    overlap: bool = True,
    verbose: bool = False,
) -> pd.DataFrame:
    """The whole sweep; `overlap=False` runs the prerequisites before any trial (the
    old serial order, kept for the benchmark that measures what overlapping saves)."""
    accounting = Accounting(config, folder)
    connect(config, address, NAMESPACE)  # a no-op when sweep.run connected first
    accounting.lap("ray_init")
    preflight(config)  # a GPU node whose torch sees no GPU: one line, nothing written
    train_ref, test_ref = share(train), share(test)
    # live until the sweep ends
    actors, standbys = start_services(config, test_ref, address)
    if grid_text is not None:  # the resolved grid, once the sweep can start
        write_bytes(join(folder, GRID_FILE), grid_text.encode())
    client = FIDClient(service_names(config), NAMESPACE,
                       client_options(config, address))  # fmt: skip
    network = client.info()["extractor"]
    accounting.services_started(ray.get([actor.info.remote() for actor in actors]))
    accounting.lap("fid_services")
    # from here a stop (SIGTERM, Ctrl-C, an error) leaves this run's record in
    # timings.json: the replicas have started, and their time is the sweep's
    prerequisites = Prerequisites(ScoreBook({}))
    phase: str | None = "prerequisites"
    try:
        features = None
        if config.kind == "vae":
            images = (train, train_ref, test, test_ref)
            prerequisites = start_prerequisites(config, trials, folder, images, client,
                                                network)  # fmt: skip
            if not overlap:
                prerequisites.wait_all()
        if config.kind == "fid_repeated":
            # every E1 size draws from x_train: extracted once, in chunks the actor
            # caches
            features = ray.put(
                client.features_in_chunks(train.images, FEATURE_CHUNK, priority=BULK)
            )
        accounting.lap("prerequisites")
        scores = prerequisites.refs()
        data = SweepData(
            train=train_ref,
            test=test_ref,
            scores={k: v for k, v in scores.items() if k != FEATURES},
            services=service_names(config),
            client=client.options,
            # E1's, or (memorization) the features prerequisite's, read at a trial's end
            train_features=scores.get(FEATURES, features),
            folder=folder,
        )
        tuner = build_tuner(config, trials, folder, data, resume=resume,
                            retry_errored=retry_errored, address=address,
                            verbose=verbose)  # fmt: skip
        GATES[folder] = prerequisites
        # Tune's new output prints its experiment box and paths even at verbose=0; its
        # older reporter at 0 prints nothing, leaving the console to sweep/console.py
        os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
        phase = "tune_fit"
        try:
            with stops_on_signals():  # SIGTERM: Tune saves its state, then Terminated
                results = list(tuner.fit())
        finally:
            GATES.pop(folder, None)
        accounting.lap("tune_fit")
        phase = "tables"
        prerequisites.wait_all()
        accounting.services_stopped()
        accounting.add_prerequisites(prerequisites)
        accounting.add_trials(results)
        meta = {
            "package_version": package_version(),
            "dataset_sha256": train.sha256,
            "test_sha256": test.sha256,
            # lossless python batches, or a re-encoded copy whose FIDs are shifted
            "data_encoding": train.encoding,
            "data_lossless": train.lossless and test.lossless,
            "fid_network": network,
            "sweep_gpu_seconds": accounting.sweep_gpu_seconds(),
        }
        table, history = build_tables(results, config, meta)
        write_tables(folder, table, history)
        accounting.lap("tables")
        accounting.write()
        phase = None
    except BaseException as stop:
        if phase is not None:
            _record_stopped_run(accounting, stop, prerequisites, phase)
        raise
    del actors, standbys
    print(summary(table))
    print(f"results: {folder}/{RESULTS_FILE}, {folder}/{HISTORY_FILE}")
    return table
