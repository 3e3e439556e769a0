"""The shared FID actor: one network load, named reference statistics, many callers.

    from fid.service import start_fid_service
    service = start_fid_service({"test": cifar_test_images})
    ray.get(service.fid.remote(samples, reference="test"))

`FIDServer` is the plain class (usable without Ray); `FIDService` is it as a Ray actor.
Reference statistics are computed on first use and then read from the FID cache, so a
restarted actor (max_restarts=-1) comes back in seconds, and callers' calls are retried
by Ray (max_task_retries=-1) rather than lost.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from fid.cache import FIDCache
from fid.distance import FrechetReference
from fid.engine import FIDEngine
from fid.features import FeatureExtractor, InceptionExtractor
from fid.network import NETWORK_SHA1
from fid.stats import Statistics
from selection.datasets import ImageSet, load_cifar10, load_images
from selection.errors import InputError

DEFAULT_NAME = "fid"
DEFAULT_NAMESPACE = "vae-sweep"


@dataclass(frozen=True)
class CifarSplit:
    """A reference given as a CIFAR-10 split under a data root (see load_cifar10)."""

    root: str
    split: str = "test"


ReferenceSource = np.ndarray | ImageSet | CifarSplit | str | os.PathLike | ray.ObjectRef


def _resolve_reference(engine: FIDEngine, source: ReferenceSource) -> FrechetReference:
    if isinstance(source, ray.ObjectRef):
        # an object-store copy the creator keeps alive, so a restarted actor can
        # read it again (an inline array argument is gone after the first start)
        source = ray.get(source)
    if isinstance(source, CifarSplit):
        source = load_cifar10(source.root, source.split, progress=False)
    if isinstance(source, ImageSet):
        return engine.reference(np.asarray(source.images), sha256=source.sha256)
    if isinstance(source, np.ndarray):
        return engine.reference(source)
    path = str(source)
    if path.endswith(".npz"):
        return FrechetReference(Statistics.load(path))
    data = load_images(path, size=None, progress=False)
    return engine.reference(np.asarray(data.images), sha256=data.sha256)


class FIDServer:
    """Holds one feature network and named reference statistics; thread-safe."""

    def __init__(
        self,
        references: Mapping[str, ReferenceSource] | None = None,
        *,
        network: str | None = None,
        network_sha1: str = NETWORK_SHA1,
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        batch_size: int | None = None,
        extractor_factory: Callable[[], FeatureExtractor] | None = None,
    ):
        extractor = (
            extractor_factory()
            if extractor_factory
            else InceptionExtractor(network, device=device, expected_sha1=network_sha1)
        )
        cache = FIDCache(Path(cache_dir) / "fid" if cache_dir else None)
        self.engine = FIDEngine(
            extractor, cache=cache, batch_size=batch_size, progress=False
        )
        self._sources = dict(references or {})
        self._references: dict[str, FrechetReference] = {}
        # One network, one device: calls take turns (Ray runs an actor's calls one at
        # a time by default; the lock keeps that true under max_concurrency > 1).
        self._lock = threading.RLock()

    def _reference(self, name: str) -> FrechetReference:
        if name not in self._references:
            if name not in self._sources:
                known = ", ".join(sorted(self._sources)) or "none"
                raise InputError(f"unknown FID reference {name!r}; known: {known}")
            self._references[name] = _resolve_reference(
                self.engine, self._sources[name]
            )
        return self._references[name]

    def add_reference(self, name: str, source: ReferenceSource) -> None:
        with self._lock:
            self._sources[name] = source
            self._references.pop(name, None)

    def fid(self, images: np.ndarray, reference: str = "test") -> float:
        """FID of (N, H, W, 3) uint8 images against a named reference (not cached)."""
        with self._lock:
            return self._reference(reference).distance(
                self.engine.stats(_check_images(images), cache=False)
            )

    def fid_of_stats(self, stats: Statistics, reference: str = "test") -> float:
        with self._lock:
            return self._reference(reference).distance(stats)

    def features(self, images: np.ndarray, cache: bool = False) -> np.ndarray:
        """(N, d) float32 features; `cache=True` for sets that will be seen again."""
        with self._lock:
            return self.engine.features(_check_images(images), cache=cache)

    def stats(self, images: np.ndarray, cache: bool = False) -> Statistics:
        with self._lock:
            return self.engine.stats(_check_images(images), cache=cache)

    def reference_stats(self, name: str = "test") -> Statistics:
        with self._lock:
            return self._reference(name).stats

    def info(self) -> dict:
        return {
            "extractor": self.engine.extractor.key,
            "pid": os.getpid(),
            "references": sorted(self._sources),
            "loaded": sorted(self._references),
        }


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
    **server_options,
):
    """Create (or find, if one of this name lives) the named, restartable FID actor."""
    return FIDService.options(
        name=name,
        namespace=namespace,
        get_if_exists=True,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        max_restarts=-1,
        max_task_retries=-1,
    ).remote(references, **server_options)


def get_fid_service(name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE):
    return ray.get_actor(name, namespace=namespace)
