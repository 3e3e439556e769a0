"""The shared FID actor: one network load, named reference statistics, many callers.

    from fid.client import FIDClient
    from fid.service import start_fid_service
    start_fid_service({"test": cifar_test_images}, name="fid-0")
    FIDClient(["fid-0"]).fid(samples, reference="test")

`FIDServer` is the plain class (usable without Ray); `FIDService` is it as a Ray actor.
Reference statistics are computed on first use and then read from the FID cache, so a
restarted actor (max_restarts=-1) comes back in seconds. Ray does not retry a call
that was running when its actor died (max_task_retries=0): `fid.client.FIDClient`
does, on the least-loaded live replica, within a time bound.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import ray
import torch

from fid.bootstrap import bootstrap_intervals
from fid.cache import FIDCache, cached_features, cached_stats
from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.features import (
    FeatureExtractor,
    InceptionExtractor,
    extract_features,
    iter_batches,
)
from fid.fidelity import DC_K, PR_K, fidelity, knn_radii
from fid.network import NETWORK_SHA1
from fid.priority_lock import FINAL, INTERACTIVE, PriorityLock
from fid.sample_metrics import fid_infinity, kid
from fid.stats import Statistics, StatsAccumulator
from selection.datasets import ImageSet, load_cifar10, load_images
from vae_sweep import PROJECT
from vae_sweep.devices import gpu_device
from vae_sweep.errors import InputError

DEFAULT_NAME = "fid"
DEFAULT_NAMESPACE = PROJECT
ALL_CORES = -1  # `threads` of a replica that uses its whole node
MAX_CONCURRENT_CALLS = 64  # threads of the actor; the network still runs one chunk


@dataclass(frozen=True)
class CifarSplit:
    """A reference given as a CIFAR-10 split under a data root (see load_cifar10)."""

    root: str
    split: str = "test"


ReferenceSource = np.ndarray | ImageSet | CifarSplit | str | os.PathLike | ray.ObjectRef


def _resolve_reference(
    source: ReferenceSource,
) -> tuple[np.ndarray | None, str | None, Statistics | None]:
    """(images, their sha256, None), or (None, None, statistics) for an `.npz`."""
    if isinstance(source, ray.ObjectRef):
        # an object-store copy the creator keeps alive, so a restarted actor can
        # read it again (an inline array argument is gone after the first start)
        source = ray.get(source)
    if isinstance(source, CifarSplit):
        source = load_cifar10(source.root, source.split, progress=False)
    if isinstance(source, ImageSet):
        return np.asarray(source.images), source.sha256, None
    if isinstance(source, np.ndarray):
        return source, None, None
    path = str(source)
    if path.endswith(".npz"):
        return None, None, Statistics.load(path)
    data = load_images(path, size=None, progress=False)
    return np.asarray(data.images), data.sha256, None


class FIDServer:
    """Holds one feature network and named reference statistics; thread-safe.

    As a Ray actor it runs calls on several threads: `load()` answers at once, while
    the calls that need the network take turns on it (`fid.priority_lock`), most urgent
    first and one chunk of `chunk` images per turn. With `timed=True` a call returns
    `(value, seconds)`, the seconds it held the network, which callers add up as the
    FID service's share of their GPU time.
    """

    def __init__(
        self,
        references: Mapping[str, ReferenceSource] | None = None,
        *,
        network: str | None = None,
        network_sha1: str = NETWORK_SHA1,
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int | None = None,
        chunk: int | None = None,
        extractor_factory: Callable[[], FeatureExtractor] | None = None,
        require_gpu: bool = False,
        threads: int | None = None,
    ):
        if threads is not None:
            # Ray pins a process to as many threads as CPUs it reserved; a replica
            # that is the sweep's bottleneck on a small CPU machine may use more;
            # ALL_CORES (a standby that reserves none): every core of its node
            all_cores = os.cpu_count() or 1
            torch.set_num_threads(all_cores if threads == ALL_CORES else threads)
        if require_gpu:
            device = gpu_device("the FID service")
        extractor = (
            extractor_factory()
            if extractor_factory
            else InceptionExtractor(network, device=device, expected_sha1=network_sha1)
        )
        cache = FIDCache.in_folder(cache_dir)
        self.engine = FIDEngine(
            extractor, cache=cache, batch_size=batch_size, progress=False
        )
        # ten batches a turn: an urgent call waits for at most that many images
        self.chunk = chunk or 10 * self.engine.batch_size
        self._sources = dict(references or {})
        self._references: dict[str, FrechetReference] = {}
        self._reference_feature_sets: dict[str, np.ndarray] = {}
        # (reference, k) -> the reference features' k-nearest-neighbour radii
        self._radii: dict[tuple[str, int], np.ndarray] = {}
        self._references_lock = threading.RLock()
        self._turns = PriorityLock()
        self._pending = 0  # images accepted and not yet through the network
        self._pending_lock = threading.Lock()
        self._calls = 0

    # -- the network, one chunk per turn ------------------------------------------

    def _chunks(self, images: np.ndarray, priority: int, held: list[float]):
        """Features of `images`, chunk by chunk, each chunk in a turn of its own."""
        with self._pending_lock:
            self._pending += len(images)
            self._calls += 1
        left = len(images)
        try:
            for chunk in iter_batches(images, self.chunk):
                with self._turns.turn(priority) as turn:
                    features = extract_features(
                        chunk,
                        self.engine.extractor,
                        batch_size=self.engine.batch_size,
                        progress=False,
                    )
                held += turn
                left -= len(chunk)
                with self._pending_lock:
                    self._pending -= len(chunk)
                yield features
        finally:
            with self._pending_lock:
                self._pending -= left
                self._calls -= 1

    def _extract(self, images, priority, held) -> np.ndarray:
        parts = list(self._chunks(images, priority, held))
        return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)

    def _stream(self, images, priority, held) -> Statistics:
        accumulator = StatsAccumulator(self.engine.extractor.dim)
        for features in self._chunks(images, priority, held):
            accumulator.update(features)
        return accumulator.result()

    def _features(self, images, priority, held, *, sha256=None, cache=False):
        store = self.engine.cache if cache else None
        extract = partial(self._extract, priority=priority, held=held)
        return cached_features(store, self.engine.extractor.key, images, extract,
                               sha256=sha256)  # fmt: skip

    def _stats(self, images, priority, held, *, sha256=None, cache=False):
        store = self.engine.cache if cache else None
        extract = partial(self._extract, priority=priority, held=held)
        stream = partial(self._stream, priority=priority, held=held)
        return cached_stats(store, self.engine.extractor.key, images, extract=extract,
                            stream=stream, sha256=sha256)  # fmt: skip

    def _reference(self, name: str, held: list[float]) -> FrechetReference:
        with self._references_lock:
            if name not in self._references:
                if name not in self._sources:
                    known = ", ".join(sorted(self._sources)) or "none"
                    raise InputError(f"unknown FID reference {name!r}; known: {known}")
                images, sha256, stats = _resolve_reference(self._sources[name])
                if stats is None:
                    stats = self._stats(
                        images, INTERACTIVE, held, sha256=sha256, cache=True
                    )
                self._references[name] = FrechetReference(stats)
            return self._references[name]

    # -- what callers use -----------------------------------------------------------

    def add_reference(self, name: str, source: ReferenceSource) -> None:
        with self._references_lock:
            self._sources[name] = source
            self._references.pop(name, None)

    def fid(self, images, reference="test", *, priority=FINAL, timed=False):
        """FID of (N, H, W, 3) uint8 images against a named reference (not cached)."""
        held: list[float] = []
        images = _check_images(images)
        ref = self._reference(reference, held)
        value = ref.distance(self._stats(images, priority, held))
        return _answer(value, held, timed)

    def metrics(
        self,
        images,
        reference="test",
        *,
        names=("fid",),
        priority=FINAL,
        timed=False,
        seed=0,
        bootstrap=0,
        features=False,
    ):
        """{"fid": ..., "kid": ..., "kid_std": ..., "fid_inf": ..., "precision",
        "recall", "density", "coverage"} of one set of images from one pass through
        the network (fid.sample_metrics, fid.fidelity), as `names` asks; with
        `bootstrap` resamples, the 95% intervals `fid_ci_low`, `fid_ci_high` (and
        `kid_ci_*` with KID, `precision_ci_*` ... `coverage_ci_*` with prdc) of this
        set's scores, each re-centred on its score (fid.bootstrap); with `features`,
        the set's own features under "features" (for a caller's memorization)."""
        held: list[float] = []
        images = _check_images(images)
        ref = self._reference(reference, held)
        accumulator = StatsAccumulator(self.engine.extractor.dim)
        keep = set(names) - {"fid"} | ({"bootstrap"} if bootstrap else set())
        keep |= {"features"} if features else set()
        parts = []
        for block in self._chunks(images, priority, held):  # (chunk, d) features
            accumulator.update(block)
            if keep:
                parts.append(block)
        # the same streamed statistics as fid(): the same FID to the last bit
        out = {"fid": ref.distance(accumulator.result())}
        generated = np.concatenate(parts) if parts else None  # (n, d), once
        if "kid" in keep:
            reference_features = self._reference_features(reference, held)
            result = kid(generated, reference_features, seed=seed)
            out.update(kid=result.mean, kid_std=result.std)
        if "fid_inf" in keep:
            out["fid_inf"] = fid_infinity(generated, ref, seed=seed).value
        if "prdc" in keep:
            out.update(self._fidelity(reference, generated, held))
        if bootstrap:
            reads = {"kid", "prdc"} & keep
            real = self._reference_features(reference, held) if reads else None
            radii = ((self._radii[(reference, PR_K)], self._radii[(reference, DC_K)])
                     if "prdc" in keep else None)  # fmt: skip
            out.update(bootstrap_intervals(
                generated, ref, real, resamples=bootstrap, seed=seed,
                kid="kid" in keep, fidelity_radii=radii,
                device=getattr(self.engine.extractor, "device", "cpu"),
                points=out,  # each interval re-centred on this set's own score
            ))  # fmt: skip
        if features:
            out["features"] = generated
        return _answer(out, held, timed)

    def _fidelity(self, reference: str, generated: np.ndarray, held) -> dict:
        """Precision, recall, density and coverage against a named reference, its
        k-nearest-neighbour radii computed once (in blocks, on the network's
        device) and kept."""
        real = self._reference_features(reference, held)
        device = getattr(self.engine.extractor, "device", "cpu")
        with self._references_lock:
            for k in (PR_K, DC_K):
                if (reference, k) not in self._radii:
                    self._radii[(reference, k)] = knn_radii(real, k, device=device)
        return fidelity(real, generated, real_radii_pr=self._radii[(reference, PR_K)],
                        real_radii_dc=self._radii[(reference, DC_K)],
                        device=device).as_dict()  # fmt: skip

    def _reference_features(self, name: str, held: list[float]) -> np.ndarray:
        """A reference's own features (KID needs them), from the feature cache."""
        with self._references_lock:
            if name not in self._reference_feature_sets:
                images, sha256, _ = _resolve_reference(self._sources[name])
                if images is None:
                    raise InputError(
                        f"KID needs the images of FID reference {name!r}, not only "
                        f"its statistics"
                    )
                self._reference_feature_sets[name] = self._features(
                    images, INTERACTIVE, held, sha256=sha256, cache=True
                )
            return self._reference_feature_sets[name]

    def fid_of_stats(self, stats: Statistics, reference="test", *, timed=False):
        held: list[float] = []
        return _answer(self._reference(reference, held).distance(stats), held, timed)

    def features(self, images, cache=False, *, priority=FINAL, timed=False):
        """(N, d) float32 features; `cache=True` for sets that will be seen again."""
        held: list[float] = []
        value = self._features(_check_images(images), priority, held, cache=cache)
        return _answer(value, held, timed)

    def stats(self, images, cache=False, *, priority=FINAL, timed=False):
        held: list[float] = []
        value = self._stats(_check_images(images), priority, held, cache=cache)
        return _answer(value, held, timed)

    def reference_stats(self, name: str = "test", *, timed=False):
        held: list[float] = []
        return _answer(self._reference(name, held).stats, held, timed)

    def load(self) -> dict:
        """How busy this replica is; answers at once, even while the network runs."""
        with self._pending_lock:
            pending, calls = self._pending, self._calls
        return {
            "pending_images": pending,
            "pending_calls": calls,
            "busy_seconds": self._turns.busy_seconds,
            "pid": os.getpid(),
            "node": _node_id(),
        }

    def info(self) -> dict:
        return {
            "extractor": self.engine.extractor.key,
            "pid": os.getpid(),
            "node": _node_id(),
            "device": str(getattr(self.engine.extractor, "device", "cpu")),
            "references": sorted(self._sources),
            "loaded": sorted(self._references),
        }


def _answer(value, held: list[float], timed: bool):
    return (value, float(sum(held))) if timed else value


def _node_id() -> str | None:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(
            f"FID needs (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}"
        )
    if len(images) < 2:
        raise InputError(f"FID needs at least 2 images, got {len(images)}")
    return images


FIDService = ray.remote(FIDServer)


def start_fid_service(
    references: Mapping[str, ReferenceSource] | None = None,
    *,
    name: str = DEFAULT_NAME,
    namespace: str = DEFAULT_NAMESPACE,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    placement: dict | None = None,
    **server_options,
):
    """Create (or find, if one of this name lives) the named, restartable FID actor.

    With `num_gpus > 0` the actor runs on the GPU Ray gave it and refuses to start
    without one (`vae_sweep.devices.gpu_device`); with 0 it runs on the CPU even on a
    GPU node, since a GPU it did not reserve belongs to someone else.
    """
    if num_gpus > 0:
        server_options["require_gpu"] = True
    else:
        server_options.setdefault("device", "cpu")
    return FIDService.options(
        name=name,
        namespace=namespace,
        get_if_exists=True,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        max_restarts=-1,
        max_task_retries=0,  # FIDClient retries, on the least-loaded live replica
        # threads: load() answers while a call holds the network
        max_concurrency=MAX_CONCURRENT_CALLS,
        **(placement or {}),  # e.g. a label_selector that keeps off the head
    ).remote(references, **server_options)


def get_fid_service(name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE):
    return ray.get_actor(name, namespace=namespace)
