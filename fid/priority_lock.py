"""Turns on one feature network: a lock that serves waiting calls by priority.

The FID actor runs its calls on several threads (so that `load()` answers while the
network is busy), but the network itself runs one chunk at a time. Calls wait for
their turn here: a lower priority number goes first, and calls of equal priority go
in arrival order. Large calls take one turn per chunk, so a short intermediate FID
waits for at most one chunk of a 10,000-image final FID, never for all of it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Iterator

# Priorities of the calls a sweep makes, most urgent first.
INTERACTIVE = 0  # intermediate FIDs: a trial (and a scheduler) waits on each
FINAL = 1  # a trial's final FIDs
BULK = 2  # prerequisites: x_train features, reference statistics

PRIORITIES = {"interactive": INTERACTIVE, "final": FINAL, "bulk": BULK}


class PriorityLock:
    """A mutex granted to the waiting caller with the lowest (priority, arrival)."""

    def __init__(self):
        self._condition = threading.Condition()
        self._waiting: list[tuple[int, int]] = []  # heap of (priority, ticket)
        self._tickets = itertools.count()
        self._held = False
        self.busy_seconds = 0.0  # total time the lock was held

    @contextlib.contextmanager
    def turn(self, priority: int) -> Iterator[list[float]]:
        """Hold the lock for one turn; yields a list that receives the seconds held."""
        with self._condition:
            token = (priority, next(self._tickets))
            heapq.heappush(self._waiting, token)
            while self._held or self._waiting[0] != token:
                self._condition.wait()
            heapq.heappop(self._waiting)
            self._held = True
        held: list[float] = []
        started = time.perf_counter()
        try:
            yield held
        finally:
            seconds = time.perf_counter() - started
            held.append(seconds)
            with self._condition:
                self.busy_seconds += seconds
                self._held = False
                self._condition.notify_all()

    def waiting(self) -> int:
        with self._condition:
            return len(self._waiting)
