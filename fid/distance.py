"""Fréchet distance between Gaussians, from symmetric eigenvalue problems.

FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2). With A = S1^1/2
(symmetric), S1 S2 = A (A S2 A) A^-1 is similar to the symmetric PSD matrix A S2 A, so
tr((S1 S2)^1/2) = sum of sqrt(eigenvalues of A S2 A). That needs one eigh for A and one
eigvalsh, several times faster than scipy.linalg.sqrtm's complex Schur form and free of
its imaginary round-off; with A cached for a fixed reference each FID is one eigvalsh.
"""

from __future__ import annotations

import numpy as np

from fid.stats import Statistics


def sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; round-off negatives clipped."""
    eigenvalues, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def trace_sqrt_product(sqrt_a: np.ndarray, b: np.ndarray) -> float:
    """tr((A^2 B)^1/2) given A = sqrt_a, from the eigenvalues of A B A."""
    middle = sqrt_a @ b @ sqrt_a
    middle = (middle + middle.T) / 2  # exact symmetry for eigvalsh
    eigenvalues = np.linalg.eigvalsh(middle)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def _check(stats: Statistics, name: str) -> None:
    if not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
        raise ValueError(f"{name} statistics contain NaN or infinity")


def frechet_distance(a: Statistics, b: Statistics) -> float:
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    return FrechetReference(a).distance(b)


class FrechetReference:
    """A fixed side of the FID (e.g. x_test statistics) with its square root cached."""

    def __init__(self, stats: Statistics):
        _check(stats, "reference")
        self.stats = stats
        self.sqrt_sigma = sqrtm_psd(stats.sigma)
        self.trace_sigma = float(np.trace(stats.sigma))

    def distance(self, other: Statistics) -> float:
        _check(other, "compared")
        if other.mu.shape != self.stats.mu.shape:
            raise ValueError(
                f"feature dimensions differ: {self.stats.mu.shape} vs {other.mu.shape}"
            )
        diff = self.stats.mu - other.mu
        cross = trace_sqrt_product(self.sqrt_sigma, other.sigma)
        return float(diff @ diff + self.trace_sigma + np.trace(other.sigma) - 2 * cross)
