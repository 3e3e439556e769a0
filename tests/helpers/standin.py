"""Test-only feature networks built on the package's stand-in (fid.standin): one
that kills its own process mid-sweep. `StandInExtractor` and `make_standin` are
re-exported so tests name one module."""

from __future__ import annotations

import os

import numpy as np

from fid.standin import StandInExtractor, make_standin

__all__ = ["StandInExtractor", "make_standin", "DyingStandIn",
           "make_dying_standin"]


DIE_MARKER_ENV = "VAE_SWEEP_TEST_DIE_MARKER"


class DyingStandIn(StandInExtractor):
    """Kills its own process on its third call, once per marker file: a crashed FID
    actor in the middle of a sweep."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        marker = os.environ.get(DIE_MARKER_ENV)
        if self.calls == 2 and marker and not os.path.exists(marker):
            with open(marker, "w") as file:
                file.write(str(os.getpid()))
            os._exit(1)
        return super().__call__(images)


def make_dying_standin() -> DyingStandIn:
    return DyingStandIn()


FAIL_MARKER_ENV = "VAE_SWEEP_TEST_FAIL_UNTIL"


class FailingFinals(StandInExtractor):
    """Fails every call of exactly 20 images (the final FIDs of the tests' sweeps)
    until the file named by $VAE_SWEEP_TEST_FAIL_UNTIL exists: a fault that a later
    retry no longer meets."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        marker = os.environ.get(FAIL_MARKER_ENV)
        if len(images) == 20 and marker and not os.path.exists(marker):
            raise RuntimeError("simulated fault in the final FID")
        return super().__call__(images)


def make_failing_finals() -> FailingFinals:
    return FailingFinals()


GATE_ENV = "VAE_SWEEP_TEST_GATE"  # a glob: calls wait until some path matches it
GATE_AFTER_ENV = "VAE_SWEEP_TEST_GATE_AFTER"  # images served before the gate
GATE_CAPPED = "gate-capped"  # written beside the first "*": the gate gave up waiting


class GatedStandIn(StandInExtractor):
    """Serves its first $VAE_SWEEP_TEST_GATE_AFTER images (the x_test reference) at
    once, then holds every call until a path matches the glob $VAE_SWEEP_TEST_GATE
    (at most 120 s; then it writes GATE_CAPPED in the folder above the glob's first
    "*", for a test to look for): x_train's features that arrive only once, say, a
    trial has written its first checkpoint. Gate on a file a trial's worker writes:
    Tune's result.json reaches the sweep's storage only at the driver's next sync
    (10 s or more), and from the trial's start, before any report."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import glob
        import time

        pattern = os.environ.get(GATE_ENV)
        gated = bool(pattern) and self.images_seen >= int(
            os.environ.get(GATE_AFTER_ENV, "0"))  # fmt: skip
        deadline = time.monotonic() + 120
        while gated and not glob.glob(pattern):
            if time.monotonic() >= deadline:  # gave up: say so where tests look
                fixed = os.path.dirname(pattern.split("*")[0])
                with open(os.path.join(fixed, GATE_CAPPED), "w") as file:
                    file.write(pattern)
                break
            time.sleep(0.2)
        return super().__call__(images)


def make_gated_standin() -> GatedStandIn:
    return GatedStandIn()
