"""Shared statistics: intervals, bootstrap, power and trend tests.

All intervals are two-sided; ``confidence`` is e.g. 0.95.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Returns ``(0.0, 1.0)`` when ``n == 0``.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval."""

    value: float
    low: float
    high: float


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Sample mean with a Student-t interval (NaN bounds for fewer than two values)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(mean, math.nan, math.nan)
    half = stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return Estimate(mean, mean - half, mean + half)


def spearman_bootstrap_ci(
    x: Sequence[float],
    y: Sequence[float],
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Spearman's rho with a percentile bootstrap interval over resampled pairs.

    The resamples are ranked and correlated in one vectorised pass; resamples in which either
    variable is constant have no defined rho and are left out of the percentiles.
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 3:
        raise ValueError("x and y must be 1-D, of equal length, with at least 3 pairs")
    rho = float(stats.spearmanr(a, b).statistic)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, a.size, size=(n_boot, a.size))
    ranks_a = stats.rankdata(a[index], axis=1)
    ranks_b = stats.rankdata(b[index], axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    valid = denominator > 0
    boot = (ranks_a * ranks_b).sum(axis=1)[valid] / denominator[valid]
    if boot.size == 0:
        return Estimate(rho, math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Estimate(rho, float(low), float(high))


def min_detectable_difference(
    n_per_arm: float, baseline: float = 0.5, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest increase over ``baseline`` that a two-sided two-proportion test detects.

    Solves ``z_a * sqrt(2 p_bar q_bar / n) + z_b * sqrt((p1 q1 + p2 q2) / n) = p2 - p1``
    (the normal-approximation sample-size formula without continuity correction) for
    ``p2 = baseline + d``. Returns NaN if even ``p2 = 1`` is not detectable.
    """
    if not 0 <= baseline < 1 or n_per_arm <= 0:
        raise ValueError("need 0 <= baseline < 1 and n_per_arm > 0")
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    z_beta = stats.norm.ppf(power)

    def gap(d: float) -> float:
        p1, p2 = baseline, baseline + d
        p_bar = (p1 + p2) / 2
        needed = z_alpha * math.sqrt(2 * p_bar * (1 - p_bar) / n_per_arm) + z_beta * math.sqrt(
            (p1 * (1 - p1) + p2 * (1 - p2)) / n_per_arm
        )
        return d - needed

    upper = 1 - baseline
    if gap(upper) < 0:
        return math.nan
    return float(optimize.brentq(gap, 1e-12, upper, xtol=1e-12))
