"""The sampling error of one model's FID and KID: percentile bootstrap intervals over
its generated samples (resampled with replacement, the reference held fixed).

Given the scores of the samples themselves (`points`), each interval is re-centred on
its score: the percentiles of the resampled scores minus their bias (their mean less
the score, Efron & Tibshirani's bootstrap estimate of bias). A resample with
replacement holds only about 63% distinct samples, and FID rises as samples fall
while coverage and recall fall with them: at 1,000 samples the resampled FIDs of a
model sit about 10 above its FID, so the plain percentile interval missed the score
it was an interval of. Re-centred, the interval keeps the resamples' spread and
holds its score.

A seed interval says how much training varies; this says how much the same model's
score moves with the draw of its samples, which at 1,000 samples is often as large.

Each FID resample is computed without building its (d, d) covariance when there are
fewer samples than feature dimensions: with Y = W^1/2 (X - 1 mu_w^T) / sqrt(n - 1)
(W the resample's counts), the covariance is Y^T Y, and the eigenvalues of
S_ref^1/2 Y^T Y S_ref^1/2 that FID's trace term needs are those of the (n, n) matrix
Y S_ref Y^T, which follows from G = X S_ref X^T, computed once. KID resamples reuse
the kernel matrices of the generated samples and of fixed reference subsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fid.distance import FrechetReference
from fid.fidelity import DC_K, PR_K, as_tensor, knn_radii, pairwise_distances
from fid.sample_metrics import KID_SUBSET_SIZE, polynomial_kernel
from fid.stats import statistics

BOOTSTRAP_LEVEL = 0.95
KID_BOOTSTRAP_SUBSETS = 10  # reference subsets per KID resample (KID itself: 100)
KID_BOOTSTRAP_MAX = 5_000  # generated samples: their (n, n) kernel is held in memory
FIDELITY_BOOTSTRAP_BYTES = 2**30  # the (generated, real) distances held at once
FIDELITY_BOOTSTRAP_MAX = 5_000  # generated samples: their (n, n) distances are held
FIDELITY = ("precision", "recall", "density", "coverage")
# where a metric's values lie: a re-centred interval is clipped to them
BOUNDS = {"fid": (0.0, np.inf), "kid": (-np.inf, np.inf), "precision": (0.0, 1.0),
          "recall": (0.0, 1.0), "density": (0.0, np.inf), "coverage": (0.0, 1.0)}


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    resamples: int


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) how often each sample appears in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)


def percentile_interval(values: np.ndarray, level: float = BOOTSTRAP_LEVEL) -> Interval:
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), len(values))


def recentred_interval(
    values: np.ndarray, point: float, bounds: tuple[float, float] = (-np.inf, np.inf),
    level: float = BOOTSTRAP_LEVEL,
) -> Interval:
    """The percentile interval of `values` less their bias (mean - `point`), clipped
    to `bounds`."""
    bias = float(np.mean(values)) - point
    plain = percentile_interval(values, level)
    low, high = (float(np.clip(v - bias, *bounds)) for v in (plain.low, plain.high))
    return Interval(low, high, plain.resamples)


def _interval(values: np.ndarray, name: str, points: dict | None,
              level: float) -> Interval:
    if points is not None and name in points:
        return recentred_interval(values, float(points[name]), BOUNDS[name], level)
    return percentile_interval(values, level)


def bootstrap_fids(
    features: np.ndarray, reference: FrechetReference, counts: np.ndarray
) -> np.ndarray:
    """The FID of each resample (a row of `counts`) of (n, d) `features`."""
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    if n > d:  # more samples than dimensions: the (d, d) covariance is the smaller
        return np.array([
            reference.distance(statistics(np.repeat(x, w, axis=0))) for w in counts
        ])  # fmt: skip
    ref = reference.stats
    gram = x @ ref.sigma @ x.T  # (n, n): G = X S_ref X^T
    squares = np.einsum("ij,ij->i", x, x)
    constant = float(np.trace(ref.sigma))
    fids = np.empty(len(counts))
    for b, w in enumerate(counts.astype(np.float64)):
        mu = w @ x / n
        g_mu = gram @ w / n  # X S_ref mu
        # (X - 1 mu^T) S_ref (X - 1 mu^T)^T; its last term only moves the eigenvalue
        # of sqrt(w), which the weighting makes 0, and is kept for the plain formula
        centred = gram - g_mu[:, None] - g_mu[None, :] + (w @ g_mu) / n
        root = np.sqrt(w)
        eigenvalues = np.linalg.eigvalsh(root[:, None] * centred * root[None, :])
        trace_sqrt = np.sqrt(np.clip(eigenvalues / (n - 1), 0.0, None)).sum()
        trace_gen = (w @ squares - n * mu @ mu) / (n - 1)
        diff = mu - ref.mu
        fids[b] = diff @ diff + constant + trace_gen - 2.0 * trace_sqrt
    return fids


def bootstrap_kids(
    features: np.ndarray,
    reference: np.ndarray,
    counts: np.ndarray,
    *,
    seed: int = 0,
    subsets: int = KID_BOOTSTRAP_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> np.ndarray:
    """KID of each resample of `features` against `reference` features: the mean over
    `subsets` fixed reference subsets of the unbiased MMD^2 between a subset of the
    resample (the whole resample below `subset_size`) and the reference subset."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    n = len(x)
    if n > KID_BOOTSTRAP_MAX:
        raise ValueError(f"KID's bootstrap holds an (n, n) kernel: at most "
                         f"{KID_BOOTSTRAP_MAX:,} samples, got {n:,}")  # fmt: skip
    size = min(subset_size, n, len(y))
    rng = np.random.default_rng(seed)
    pools = [rng.choice(len(y), size, replace=False) for _ in range(subsets)]
    kxx = polynomial_kernel(x, x)
    kxy = [polynomial_kernel(x, y[pool]) for pool in pools]
    yy = []
    for pool in pools:
        kyy = polynomial_kernel(y[pool], y[pool])
        yy.append((kyy.sum() - np.trace(kyy)) / (size * (size - 1)))
    kids = np.empty(len(counts))
    for b, w in enumerate(counts):
        drawn = np.repeat(np.arange(n), w)  # the resample, as indices
        values = []
        for r in range(subsets):
            picked = drawn[rng.permutation(n)[:size]]
            block = kxx[np.ix_(picked, picked)]
            xx = (block.sum() - np.trace(block)) / (size * (size - 1))
            values.append(xx + yy[r] - 2.0 * kxy[r][picked].mean())
        kids[b] = float(np.mean(values))
    return kids


def bootstrap_fidelity(
    real: np.ndarray,
    fake: np.ndarray,
    counts: np.ndarray,
    *,
    real_radii_pr: np.ndarray | None = None,
    real_radii_dc: np.ndarray | None = None,
    k_pr: int = PR_K,
    k_dc: int = DC_K,
    device="cpu",
) -> dict[str, np.ndarray]:
    """Precision, recall, density and coverage (fid.fidelity) of each resample of the
    generated features `fake`, the real side and its radii held fixed.

    A resample's copies weigh its per-sample scores: precision and density are
    weighted means over generated samples, and a real sample is covered when a drawn
    sample lies in its ball. Recall needs each generated sample's own ball, the
    distance to its k-th nearest other sample; in a resample that is taken among the
    distinct samples drawn (a copy at distance 0 is not another sample, and would
    shrink the balls to nothing), so recall is that of the distinct samples."""
    n = len(fake)
    need = max(k_pr, k_dc) + 1
    if n < need + 1:
        raise ValueError(f"a bootstrap of precision/recall/density/coverage needs at "
                         f"least {need + 1} generated samples, got {n}")  # fmt: skip
    if 8 * n * len(real) > FIDELITY_BOOTSTRAP_BYTES:
        raise ValueError(f"the bootstrap of precision/recall/density/coverage holds "
                         f"{n:,} x {len(real):,} distances: more than "
                         f"{FIDELITY_BOOTSTRAP_BYTES // 2**20} MiB")  # fmt: skip
    pr = real_radii_pr if real_radii_pr is not None else knn_radii(real, k_pr,
                                                                    device=device)
    dc = real_radii_dc if real_radii_dc is not None else knn_radii(real, k_dc,
                                                                    device=device)
    x_fake = as_tensor(fake, device)
    to_real = pairwise_distances(x_fake, as_tensor(real, device)).cpu().numpy()
    among = pairwise_distances(x_fake, x_fake).cpu().numpy()  # (n, n)
    np.fill_diagonal(among, np.inf)  # a sample is not its own neighbour
    inside = (to_real < np.asarray(pr)[None, :]).any(axis=1)  # (n,) per sample
    in_ball = to_real < np.asarray(dc)[None, :]  # (n, N) sample in real ball
    depth = in_ball.sum(axis=1)  # (n,) real balls holding each sample
    out = {name: np.empty(len(counts)) for name in FIDELITY}
    for b, w in enumerate(counts):
        drawn = w > 0
        out["precision"][b] = w @ inside / n
        out["density"][b] = w @ depth / (k_dc * n)
        out["coverage"][b] = in_ball[drawn].any(axis=0).mean()
        if drawn.sum() <= k_pr:  # too few distinct samples for a ball
            out["recall"][b] = np.nan
            continue
        others = among[np.ix_(drawn, drawn)]  # distinct drawn samples
        radii = np.partition(others, k_pr - 1, axis=1)[:, k_pr - 1]
        out["recall"][b] = (to_real[drawn] < radii[:, None]).any(axis=0).mean()
    return out


def bootstrap_intervals(
    features: np.ndarray,
    reference: FrechetReference,
    reference_features: np.ndarray | None,
    *,
    resamples: int,
    seed: int = 0,
    level: float = BOOTSTRAP_LEVEL,
    kid: bool = True,
    fidelity_radii: tuple[np.ndarray, np.ndarray] | None = None,
    device="cpu",
    points: dict | None = None,
) -> dict:
    """`fid_ci_low`, `fid_ci_high` and, given the reference's features and at most
    KID_BOOTSTRAP_MAX samples, `kid_ci_low`, `kid_ci_high`; given also the
    reference's precision/recall and density/coverage radii, and at most
    FIDELITY_BOOTSTRAP_MAX samples, `precision_ci_low` ... `coverage_ci_high`:
    percentile intervals over `resamples` resamples of the
    generated samples (the same resamples for every metric), each re-centred on its
    score where `points` ({"fid": ..., "kid": ..., "precision": ...}) has it."""
    counts = resample_counts(len(features), resamples, seed)
    fid = _interval(bootstrap_fids(features, reference, counts), "fid", points, level)
    out = {"fid_ci_low": fid.low, "fid_ci_high": fid.high}
    if kid and reference_features is not None and len(features) <= KID_BOOTSTRAP_MAX:
        kids = bootstrap_kids(features, reference_features, counts, seed=seed)
        interval = _interval(kids, "kid", points, level)
        out.update(kid_ci_low=interval.low, kid_ci_high=interval.high)
    fits = (len(features) <= FIDELITY_BOOTSTRAP_MAX and 8 * len(features)
            * len(reference_features if reference_features is not None else ())
            <= FIDELITY_BOOTSTRAP_BYTES)  # fmt: skip
    if reference_features is not None and fidelity_radii is not None and fits:
        values = bootstrap_fidelity(reference_features, features, counts,
                                    real_radii_pr=fidelity_radii[0],
                                    real_radii_dc=fidelity_radii[1], device=device)
        for name, resampled in values.items():
            interval = _interval(resampled, name, points, level)
            out.update({f"{name}_ci_low": interval.low,
                        f"{name}_ci_high": interval.high})  # fmt: skip
    return out
