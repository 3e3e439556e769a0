"""What a grid will cost: work, wall time and GPU-hours on a cluster of a given size.

    python -m sweep.run grids/table5.yaml --dry-run --gpus 8

A model from the grid's `estimate` throughputs, not a measurement. Each trial holds
one slot (`resources`) for its stage-1 and stage-2 training plus the time its FID
calls take on a replica; trials fill the slots in grid order, the ones that need
criterion scores only once those exist (the reference VAE holds a slot of its own
from the start; x_train's features run on the FID replicas). Wall time is the later
of the last trial's end and the FID replicas' total work; GPU-hours are reserved
time (trials and the reference VAE x their GPU share, the replicas x theirs for the
whole wall time). On a CPU grid the trials and the replicas share the same cores,
so the wall is also at least the work's CPU-seconds over the CPUs (training on a
trial's threads, the network on a replica's): the slots alone would overlap what the
cores do one after the other (study_cpu_v3: 4.8 h by the slots, 6.4 h by the cores).
It is an upper bound for a grid with a scheduler, which stops trials early.
"""

from __future__ import annotations

import heapq
import json
import math
import os
from dataclasses import dataclass

from selection.criteria import SCORE_KIND
from sweep.config import CIFAR_TEST_SIZE, GridConfig
from sweep.prerequisites import measures_memorization, score_need
from sweep.trials import settings, train_size
from vae_sweep.errors import InputError

RATES = ("train_images_per_s", "stage2_vectors_per_s", "fid_images_per_s")


@dataclass(frozen=True)
class Slots:
    count: int  # trials that can run at once
    gpus: float  # the cluster's GPUs (0 for a CPU grid)
    note: str  # how the cluster size was chosen
    cpus: float = 0.0  # a CPU grid's CPUs, which its trials and replicas share


def slots(config: GridConfig, trials: int, *, gpus=None, cpus=None) -> Slots:
    """How many trials run at once on `gpus` GPUs (a GPU grid) or `cpus` CPUs."""
    trial, service = config.resources, config.fid_service
    if trial.gpu > 0:
        unit, per_trial, per_replica, size = "gpu", trial.gpu, service.gpu, gpus
        if size is None:
            size = math.ceil(trials * per_trial + service.replicas * per_replica)
            note = f"{size:g} GPUs, enough for every trial at once (--gpus to change)"
        else:
            note = f"{size:g} GPUs (--gpus)"
    else:
        if gpus is not None:
            raise InputError(
                "--gpus: this grid's trials ask for no GPU (resources.gpu = 0); "
                "give its size with --cpus"
            )
        unit, per_trial, per_replica, size = "cpu", trial.cpu, service.cpu, cpus
        if size is None:
            size, note = float(os.cpu_count() or 1), "this machine's CPUs (--cpus)"
        else:
            note = f"{size:g} CPUs (--cpus)"
    replicas = service.replicas * per_replica
    count = math.floor((size - replicas) / per_trial + 1e-9)
    if count < 1:
        raise InputError(
            f"--{unit}s {size:g} leaves no room for a trial: the {service.replicas} "
            f"FID replica(s) take {replicas:g} (fid_service.{unit}) and a trial "
            f"{per_trial:g} (resources.{unit})"
        )
    if unit == "gpu":
        return Slots(count, size, note)
    return Slots(count, 0.0, note, cpus=size)


def _trial_work(config: GridConfig, params: dict) -> tuple[float, float, float]:
    """(stage-1 images, stage-2 vectors, FID images) of one trial."""
    if config.kind == "fid_repeated":
        return 0.0, 0.0, 0.0  # statistics from x_train's features: no network work
    if config.kind == "fid_scrambled":
        return 0.0, 0.0, float(config.e2.count * config.e2.repetitions)
    s = settings(config, params, device="cpu")
    budget = s.stage1.epochs or s.stage1.steps  # the unit eval.every counts in
    evals = config.eval.every and budget // config.eval.every
    fid = evals * config.eval.samples + len(config.priors) * config.fid.samples
    two_stage = "two_stage" in config.priors
    stage2 = _images(s.two_stage.train, s.n_train) if two_stage else 0
    return float(_images(s.stage1, s.n_train)), float(stage2), float(fid)


def _seconds(config: GridConfig, work: tuple[float, float, float]) -> float:
    rates = config.estimate
    train, stage2, fid = work
    return (train / rates.train_images_per_s + stage2 / rates.stage2_vectors_per_s
            + fid / rates.fid_images_per_s)  # fmt: skip


def trial_seconds(config: GridConfig, params: dict) -> float:
    """One trial's estimated seconds at the grid's `estimate` rates (the console's
    estimate of what remains, before trials have finished to measure)."""
    return _seconds(config, _trial_work(config, params))


def _images(training, n: int) -> int:
    """Samples a stage trains on: epochs over n, or steps of a batch each."""
    if training.steps is None:
        return n * training.epochs
    return training.steps * min(training.batch_size, n)


def estimate(config: GridConfig, trials: list[dict], layout: Slots) -> dict:
    """Work, wall time and GPU-hours of the grid on `layout` (see the module doc)."""
    rates = config.estimate
    fid_rate = rates.fid_images_per_s
    work = [_trial_work(config, params) for params in trials]
    seconds = [_seconds(config, w) for w in work]
    total = train_size(config)
    service = config.fid_service
    # every replica computes the x_test statistics before any trial starts
    test_images = config.data.test_limit or CIFAR_TEST_SIZE
    start = test_images / fid_rate
    ready = {"": start}  # when each kind of scores exists
    reference_images = 0
    kinds = {SCORE_KIND.get(t.get("criterion")) for t in trials} - {None}
    free = [start] * layout.count  # when each slot is next free
    # a reference VAE per recon score key (per seed by default), each on a slot of
    # its own from the start
    references = {}  # recon score key -> the first trial that reads it
    for params in trials:
        need = score_need(config, params)
        if need and need[1] == "recon":
            references.setdefault(need[0], params)
    for slot, (key, params) in enumerate(sorted(references.items())):
        base = settings(config, {**params, "n_train": total, "criterion": "all"},
                        device="cpu")  # fmt: skip
        images = _images(base.reference, total)
        reference_images += images
        at = slot % layout.count
        free[at] = ready[key] = free[at] + images / rates.train_images_per_s
    # scores in inception space (and memorization) push x_train through the network
    # once; the scores themselves are counted as instant (k_center's O(N^2 d) order
    # is not: minutes at 10,000 images on a CPU)
    spaces = {need[2].get("space") for need in (score_need(config, t) for t in trials)
              if need}  # fmt: skip
    features = ("inception" in spaces or config.kind == "fid_repeated"
                or measures_memorization(config))  # fmt: skip
    prerequisite_fid = service.replicas * test_images + (total if features else 0)
    extraction = total / (fid_rate * service.replicas) if features else 0.0
    for kind in kinds - {"recon"}:
        ready[kind] = start + extraction
    heapq.heapify(free)

    def needs(index: int) -> str:
        kind = SCORE_KIND.get(trials[index].get("criterion"), "")
        if kind == "recon":
            return score_need(config, trials[index])[0]
        return kind

    end = start
    for index in sorted(range(len(trials)), key=lambda i: (ready[needs(i)], i)):
        begin = max(heapq.heappop(free), ready[needs(index)])
        heapq.heappush(free, begin + seconds[index])
        end = max(end, begin + seconds[index])
    fid_images = sum(fid for _, _, fid in work) + prerequisite_fid
    service_seconds = fid_images / (fid_rate * service.replicas)
    wall = max(end, service_seconds)
    reference_seconds = reference_images / rates.train_images_per_s
    core_seconds = 0.0
    if layout.cpus:
        # on CPUs the trials, the reference VAEs and the replicas share the same
        # cores: the slots overlap a trial's training with the replicas' network
        # work, which the cores can only do one after the other
        core_seconds = _core_seconds(config, work, reference_seconds, fid_images,
                                     layout.cpus)  # fmt: skip
        wall = max(wall, core_seconds / layout.cpus)
    gpu = {
        "trials": sum(seconds) * config.resources.gpu,
        "fid_service": wall * service.replicas * service.gpu,
        "prerequisites": reference_seconds * config.resources.gpu,
    }
    return {
        "trials": len(trials),
        "slots": layout.count,
        "waves": math.ceil(len(trials) / layout.count),
        "stage1_images": int(sum(w[0] for w in work) + reference_images),
        "stage2_vectors": int(sum(w[1] for w in work)),
        "fid_images": int(fid_images),
        "trial_hours": sum(seconds) / 3600,
        "reference_hours": reference_seconds / 3600,
        "fid_service_hours": service_seconds / 3600,
        "wall_hours": wall / 3600,
        "core_hours": core_seconds / 3600,  # 0 for a GPU grid
        "gpu_hours": {k: v / 3600 for k, v in gpu.items()},
        "gpu_hours_total": sum(gpu.values()) / 3600,
    }


def _core_seconds(config: GridConfig, work: list[tuple[float, float, float]],
                  reference_seconds: float, fid_images: float,
                  cpus: float) -> float:  # fmt: skip
    """CPU-seconds of a CPU grid's work: training on the threads Ray gives a trial
    (as many as its whole CPUs, at least one), the network on a replica's threads."""
    rates, service = config.estimate, config.fid_service
    trial_threads = max(1, math.floor(config.resources.cpu))
    replica_threads = min(service.threads or max(1, math.floor(service.cpu)), cpus)
    # a trial's seconds without its network work
    training = sum(_seconds(config, (train, stage2, 0.0))
                   for train, stage2, _ in work) + reference_seconds  # fmt: skip
    return (training * trial_threads
            + fid_images / rates.fid_images_per_s * replica_threads)  # fmt: skip


def rate_lines(config: GridConfig) -> list[str]:
    measured = set(config.estimate.measured)
    return [
        f"{name} = {getattr(config.estimate, name):g} "
        f"({'measured' if name in measured else 'assumed'})"
        for name in RATES
    ]


# the estimate rates a device check measures (benchmarks/device_check.py's figures)
DEVICE_CHECK_FIGURES = {"train_images_per_s": "stage1.fp32.images_per_s",
                        "stage2_vectors_per_s": "stage2.vectors_per_s",
                        "fid_images_per_s": "fid.images_per_s"}  # fmt: skip


def measured_rates(path: str) -> dict[str, float]:
    """`--estimate-from FILE`: the rates a device check's JSON measured (verdict ok);
    stage 1's at the full-width model (Table 3), fp32, batch 100."""
    try:
        with open(path) as file:
            figures = json.load(file)["figures"]
        found = {rate: float(figures[figure]["value"])
                 for rate, figure in DEVICE_CHECK_FIGURES.items()
                 if figures.get(figure, {}).get("verdict") == "ok"
                 and figures[figure].get("value")}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"--estimate-from {path}: not a device check's JSON "
                         f"({type(error).__name__}: {error})") from None  # fmt: skip
    if not found:
        raise InputError(f"--estimate-from {path}: it measured none of "
                         f"{', '.join(DEVICE_CHECK_FIGURES.values())}")  # fmt: skip
    return found
