"""The statistics of the analysis report, as pure functions (tested against values
worked out by hand): confidence intervals over seeds, paired comparisons with a
multiple-comparison correction, and the ranking measures of the early-stopping study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # NaN with fewer than two values: one seed has no spread
    high: float
    n: int


def t_interval(values, level: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of independent values (seeds)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return Interval(mean, mean - float(half), mean + float(half), n)


@dataclass(frozen=True)
class PairedComparison:
    difference: Interval  # of a - b over the pairs
    p_value: float  # two-sided; NaN when it cannot be computed (fewer than 2 pairs)
    test: str


def no_spread(values) -> bool:
    """The values are all equal, to rounding (scores on a grid of 1 / samples whose
    differences differ in the last bit): no spread to test or scale by."""
    values = np.asarray(values, float)
    return bool(np.ptp(values) <= 1e-12 * np.abs(values).max())


def paired_difference(a, b, test: str = "t", level: float = 0.95) -> PairedComparison:
    """a - b over paired values (the same seed), with a two-sided test of zero mean
    difference: `t` (paired t test) or `permutation` (exact sign flips)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired values of unequal lengths: {a.shape}, {b.shape}")
    difference = a - b
    interval = t_interval(difference, level)
    if len(difference) < 2:
        return PairedComparison(interval, math.nan, test)
    if test == "t":
        # no spread (to rounding: differences of scores on a grid of 1 / samples
        # that differ in the last bit): t is undefined, and the exact sign-flip
        # test answers instead (2 / 2^n where every difference is the same nonzero
        # value, 1 where all are 0): a coarse score that moved by one grid step on
        # both seeds is no evidence at 2 pairs
        if no_spread(difference):
            p = sign_flip_p_value(difference)
        else:
            p = float(stats.ttest_1samp(difference, 0.0).pvalue)
    elif test == "permutation":
        p = sign_flip_p_value(difference)
    else:
        raise ValueError(f"unknown test {test!r}: t or permutation")
    return PairedComparison(interval, p, test)


POWER = 0.8  # the power at which the report states what a comparison can resolve


def resolvable_difference(difference, level: float = 0.95,
                          power: float = POWER) -> float:  # fmt: skip
    """The smallest true mean difference that a two-sided paired t test at `level`
    detects with probability `power`, at these pairs' count and the spread of their
    differences (the observed standard deviation taken as the true one): the delta
    at which the noncentral t's two tails beyond the critical value hold `power`.
    NaN with fewer than two pairs, and where the differences do not vary (to
    rounding): an observed spread of 0 says nothing of the design's power."""
    d = np.asarray([v for v in difference if v is not None and np.isfinite(v)], float)
    n = len(d)
    if n < 2:
        return math.nan
    if no_spread(d):
        return math.nan
    spread = float(d.std(ddof=1))
    df, critical = n - 1, stats.t.ppf(0.5 + level / 2, n - 1)

    def shortfall(effect: float) -> float:  # effect in standard deviations
        shift = effect * math.sqrt(n)
        upper = stats.nct.sf(critical, df, shift)
        # the wrong-way tail, below alpha / 2 and falling; scipy's nct gives NaN
        # for it where it is vanishingly small (1 degree of freedom, large shifts)
        lower = float(np.nan_to_num(stats.nct.cdf(-critical, df, shift), nan=0.0))
        return upper + lower - power

    if shortfall(0.0) >= 0:  # alpha >= power (level 0.2 or less): a test that
        return 0.0  # rejects that often finds even no difference 80% of the time
    high = 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-12)) * spread


def sign_flip_p_value(difference) -> float:
    """Exact two-sided permutation p-value of a paired design: every assignment of
    signs to the differences, |mean| at least the observed one."""
    d = np.asarray(difference, float)
    n = len(d)
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    means = np.abs((signs * d).mean(axis=1))
    observed = abs(d.mean())
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input order;
    NaN stays NaN and is not counted in the family."""
    p = np.asarray(p_values, float)
    adjusted = np.full_like(p, math.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two scorings of the same items (scipy)."""
    if len(a) < 2:
        return math.nan
    return float(stats.kendalltau(a, b).statistic)


def top_k_overlap(scores_a: dict, scores_b: dict, k: int) -> float:
    """Share of the k lowest-scored items of `scores_b` (the reference: lower is
    better, as FID) that are also among the k lowest of `scores_a`; each side ranks
    its own items, so a run that lost a top trial is marked down for it."""
    k = min(k, len(scores_b))
    if k == 0:
        return math.nan
    best_a = set(sorted(scores_a, key=lambda t: (scores_a[t], t))[:k])
    best_b = set(sorted(scores_b, key=lambda t: (scores_b[t], t))[:k])
    return len(best_a & best_b) / k


def regret(found: float, best: float) -> float:
    """How much worse the best final FID a scheduler kept is than the best of all."""
    return float(found - best)
