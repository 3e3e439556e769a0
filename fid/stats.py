"""Feature statistics (mean, covariance) in float64: streaming, from counts, on disk.

Covariances use N - 1, as numpy.cov and every FID implementation do.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from vae_sweep.errors import InputError
from vae_sweep.files import atomic_path

FEATURE_DIM = 2048  # the Inception pool features FID compares


def small_sample_warning(n: int, what: str) -> str | None:
    """One line when `n` samples cannot give a full-rank covariance of the features:
    such an FID is biased upward and only comparable at equal sample counts."""
    if 0 < n < FEATURE_DIM:
        return (f"warning: {what} = {n} is below the {FEATURE_DIM} feature dimensions: "
                "FID is biased upward and comparable only at equal sample counts "
                "(KID is not biased)")  # fmt: skip
    return None


def warn_small_sample(n: int, what: str) -> None:
    message = small_sample_warning(n, what)
    if message:
        print(message, file=sys.stderr)


@dataclass(frozen=True)
class Statistics:
    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64
    n: int  # sample count: FID is only comparable at equal n

    def save(self, path: str | os.PathLike) -> None:
        """An `.npz` with `mu`, `sigma` (pytorch-fid's names) and `n`, atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, mu=self.mu, sigma=self.sigma, n=np.int64(self.n))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Statistics:
        try:
            with np.load(path) as data:
                mu, sigma = (
                    data["mu"].astype(np.float64),
                    data["sigma"].astype(np.float64),
                )
                n = int(data["n"]) if "n" in data else -1  # -1: unknown (foreign file)
        except (OSError, KeyError, ValueError) as error:
            raise InputError(
                f"{path}: not a statistics file with mu and sigma ({error})"
            ) from None
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise InputError(
                f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise InputError(f"{path}: mu or sigma holds NaN or infinity")
        if not np.allclose(sigma, sigma.T) or (np.diag(sigma) < 0).any():
            raise InputError(f"{path}: sigma is not a covariance (asymmetric, or "
                             f"a negative variance)")  # fmt: skip
        return cls(mu, sigma, n)


class StatsAccumulator:
    """Running mean and scatter matrix, merged batch by batch (Chan et al.).

    Merging centred batch scatters avoids the cancellation of sum(x x^T) - n mu mu^T,
    at the same cost: one (d, b) x (b, d) product per batch.
    """

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.scatter = np.zeros((dim, dim), dtype=np.float64)

    def update(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64)  # (b, d)
        if len(x) == 0:
            return
        b = len(x)
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        delta = batch_mean - self.mean
        total = self.n + b
        self.scatter += centred.T @ centred
        self.scatter += np.outer(delta, delta) * (self.n * b / total)
        self.mean += delta * (b / total)
        self.n = total

    def result(self) -> Statistics:
        if self.n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {self.n}")
        return Statistics(self.mean.copy(), self.scatter / (self.n - 1), self.n)


def statistics(features: np.ndarray) -> Statistics:
    accumulator = StatsAccumulator(features.shape[1])
    accumulator.update(features)
    return accumulator.result()


def weighted_statistics(features: np.ndarray, counts: np.ndarray) -> Statistics:
    """Statistics of the set in which row i of `features` appears `counts[i]` times.

    Equal to `statistics(np.repeat(features, counts, axis=0))` without building it:
    E1 extracts each distinct image once and weights it by its repeats.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) != len(features) or (counts < 0).any():
        raise ValueError("counts must be one non-negative count per feature row")
    n = counts.sum()
    if n < 2:
        raise ValueError(f"need at least 2 samples for a covariance, have {n:g}")
    x = np.asarray(features, dtype=np.float64)
    mu = counts @ x / n
    centred = x - mu
    sigma = (centred.T * counts) @ centred / (n - 1)
    return Statistics(mu, sigma, int(n))
