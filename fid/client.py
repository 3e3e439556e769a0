"""Calls to the FID actors, routed to the least-loaded live replica, never unbounded.

    client = FIDClient(["table5-fid-0", "table5-fid-1"], namespace="vae-sweep")
    client.fid(samples, priority=INTERACTIVE)

Every call:
  * asks each replica for its load (`FIDServer.load`, answered at once by a thread of
    the actor) and goes to the one with the fewest pending images; a replica that does
    not answer within `ping_timeout` seconds (dead, restarting, on a lost node) is
    passed over;
  * while it waits, checks every `ping_every` seconds that its replica still answers;
    if it does not, or the replica dies during the call, the call is sent again to
    the least-loaded other replica, at most `retries` more times;
  * goes to a standby replica (`ClientOptions.standby`, a CPU replica on the head
    node of a cluster) only while no replica answers, and back as soon as one does;
  * waits (pinging) while no replica answers at all, as when the only one restarts;
  * gives up after `timeout` seconds in all, with one line naming the replicas tried.
The actors are restartable (max_restarts=-1), so a replica that was passed over is
tried again once it is back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError

from fid.priority_lock import BULK, FINAL, INTERACTIVE
from fid.service import DEFAULT_NAMESPACE
from fid.stats import Statistics

# an actor that died, is restarting, or lives on a lost node
_LOST = (RayActorError, ObjectLostError, GetTimeoutError)


class FIDServiceError(RuntimeError):
    """No replica of the FID service answered a call within its bounds."""


class _ReplicaLost(Exception):
    pass


@dataclass(frozen=True)
class ClientOptions:
    retries: int = 3  # further attempts after a replica is lost
    timeout: float = 3600.0  # seconds for one call, all attempts and waits included
    ping_timeout: float = 10.0  # seconds a live replica takes to answer load()
    ping_every: float = 5.0  # seconds between liveness checks during a call
    # replicas asked only while none of the client's own answers (slower ones)
    standby: tuple[str, ...] = ()


class FIDClient:
    def __init__(
        self,
        names: Sequence[str],
        namespace: str = DEFAULT_NAMESPACE,
        options: ClientOptions | None = None,
    ):
        if not names:
            raise ValueError("FIDClient needs at least one replica name")
        self.names = tuple(names)
        self.namespace = namespace
        self.options = options or ClientOptions()
        self.busy_seconds = 0.0  # network time the service spent on this client
        self.calls = 0
        self.retried = 0
        self.last_replica: str | None = None  # the replica that answered last

    # -- what callers use -----------------------------------------------------------

    def fid(self, images: np.ndarray, reference: str = "test", *, priority=FINAL):
        return float(self.call("fid", images, reference, priority=priority))

    def metrics(
        self, images, reference: str = "test", *, names=("fid",), priority=FINAL,
        seed: int = 0, bootstrap: int = 0, features: bool = False,
    ) -> dict:  # fmt: skip
        """FID and, as `names` asks, KID (kid, kid_std), FID-infinity (fid_inf) and
        precision, recall, density, coverage (prdc); with `bootstrap` resamples,
        their 95% intervals (fid_ci_low, ...); with `features`, the images' own."""
        return self.call("metrics", images, reference, names=tuple(names),
                         seed=seed, bootstrap=bootstrap, features=features,
                         priority=priority)  # fmt: skip

    def fid_of_stats(self, stats: Statistics, reference: str = "test") -> float:
        return float(self.call("fid_of_stats", stats, reference, priority=None))

    def features(self, images: np.ndarray, *, cache=False, priority=BULK):
        return self.call("features", images, cache, priority=priority)

    def features_in_chunks(
        self, images: np.ndarray, chunk: int, *, cache=True, priority=BULK
    ) -> np.ndarray:
        """Features of a large set, one call per `chunk` images: a lost replica costs
        one chunk, and each chunk is cached on its own (E1 and the Mahalanobis
        criterion share the x_train chunks)."""
        parts = [
            self.features(images[start : start + chunk], cache=cache, priority=priority)
            for start in range(0, len(images), chunk)
        ]
        return np.concatenate(parts)

    def reference_stats(self, reference: str = "test") -> Statistics:
        return self.call("reference_stats", reference, priority=None)

    def info(self) -> dict:
        return self.call("info", priority=None, timed=False)

    # -- routing, liveness and retries ------------------------------------------------

    def _actor(self, name: str):
        try:
            return ray.get_actor(name, namespace=self.namespace)
        except ValueError as error:  # no such actor (yet, or any more)
            raise _ReplicaLost(f"not found ({error})") from None

    def loads(self, names: Sequence[str] | None = None) -> dict[str, dict]:
        """The load of every replica (of `names`, default the client's own) that
        answers within `ping_timeout` seconds."""
        pings = {}
        for name in self.names if names is None else names:
            try:
                pings[name] = self._actor(name).load.remote()
            except _ReplicaLost:
                continue
        if not pings:
            return {}
        ray.wait(
            list(pings.values()),
            num_returns=len(pings),
            timeout=self.options.ping_timeout,
        )
        answers = {}
        for name, ref in pings.items():
            try:
                answers[name] = ray.get(ref, timeout=0)
            except _LOST:
                continue
        return answers

    def _pick(self, avoid: set[str]) -> str | None:
        loads = self.loads()
        order = self.names
        if not loads and self.options.standby:  # no replica of its own answers
            loads, order = self.loads(self.options.standby), self.options.standby
        if not loads:
            return None
        # fewest pending images; a replica that just failed only as a last resort
        return min(
            loads,
            key=lambda n: (n in avoid, loads[n]["pending_images"], order.index(n)),
        )

    def _alive(self, actor) -> bool:
        try:
            ray.get(actor.load.remote(), timeout=self.options.ping_timeout)
            return True
        except _LOST:
            return False

    def _await(self, actor, ref, deadline: float):
        next_ping = time.monotonic() + self.options.ping_every
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _ReplicaLost(f"no answer within {self.options.timeout:g} s")
            ready, _ = ray.wait([ref], timeout=min(left, 1.0))
            if ready:
                try:
                    return ray.get(ref)
                except _LOST as error:
                    raise _ReplicaLost(
                        f"died during the call ({type(error).__name__})"
                    ) from None
            if time.monotonic() >= next_ping:
                if not self._alive(actor):
                    raise _ReplicaLost(
                        f"stopped answering (no reply to a ping within "
                        f"{self.options.ping_timeout:g} s)"
                    )
                next_ping = time.monotonic() + self.options.ping_every

    def call(self, method: str, *args, priority=INTERACTIVE, timed=True, **options):
        """`method(*args, **options)` on the least-loaded live replica, retried
        within bounds."""
        kwargs = {**options, **({"timed": True} if timed else {})}
        options = self.options
        deadline = time.monotonic() + options.timeout
        failures: list[str] = []
        failed: set[str] = set()
        if priority is not None:
            kwargs["priority"] = priority
        self.calls += 1
        while True:
            name = self._pick(failed)
            if name is None:  # every replica down or restarting: wait, within bounds
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FIDServiceError(
                        f"FID service call {method}: no replica of "
                        f"{', '.join(self.names)} answered within "
                        f"{options.timeout:g} s" + _earlier(failures)
                    )
                time.sleep(min(options.ping_timeout, left))
                continue
            try:
                actor = self._actor(name)
                answer = self._await(
                    actor, getattr(actor, method).remote(*args, **kwargs), deadline
                )
            except _ReplicaLost as lost:
                failed.add(name)
                failures.append(f"{name}: {lost}")
                if len(failures) > options.retries or time.monotonic() >= deadline:
                    raise FIDServiceError(
                        f"FID service call {method} failed after {len(failures)} "
                        f"attempts: " + "; ".join(failures)
                    ) from None
                self.retried += 1
                continue
            self.last_replica = name
            if not timed:
                return answer
            value, seconds = answer
            self.busy_seconds += seconds
            return value


def _earlier(failures: list[str]) -> str:
    return f" (earlier: {'; '.join(failures)})" if failures else ""
