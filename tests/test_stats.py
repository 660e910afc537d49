"""Tests of affectlens.stats against hand-computed and textbook values."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from affectlens.stats import (
    mean_ci,
    min_detectable_difference,
    spearman_bootstrap_ci,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # centre = (p + z^2/2n) / (1 + z^2/n), half = z sqrt(p q / n + z^2/4n^2) / (1 + z^2/n)
        (0, 10, 0.0, 0.277533),
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722467, 1.0),
        (1, 20, 0.008880, 0.236131),
    ],
)
def test_wilson_hand_computed(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-5)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(5, 10, 0.8), wilson_interval(5, 10, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mean_ci_t_interval() -> None:
    # mean 3, sd sqrt(2.5), se = sqrt(0.5), t(0.975, 4) = 2.776445
    est = mean_ci([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(0.5)
    assert (est.value, est.low, est.high) == pytest.approx((3.0, 3 - half, 3 + half), abs=1e-5)
    single = mean_ci([4.0])
    assert single.value == 4.0 and math.isnan(single.low) and math.isnan(single.high)


def test_spearman_bootstrap_point_matches_scipy_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = 0.6 * x + rng.normal(size=60)
    est = spearman_bootstrap_ci(x, y, n_boot=4000, seed=7)
    assert est.value == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert est.low < est.value < est.high
    assert spearman_bootstrap_ci(x, y, n_boot=4000, seed=7) == est
    assert spearman_bootstrap_ci(x, y, n_boot=4000, seed=8) != est


def test_spearman_bootstrap_interval_matches_loop_version() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=25).astype(float)  # ties exercise average ranks
    y = x + rng.normal(size=25)
    est = spearman_bootstrap_ci(x, y, n_boot=500, seed=11)
    index = np.random.default_rng(11).integers(0, 25, size=(500, 25))
    loop = [sps.spearmanr(x[i], y[i]).statistic for i in index]
    low, high = np.nanpercentile(loop, [2.5, 97.5])
    assert (est.low, est.high) == pytest.approx((low, high), abs=1e-9)


def test_spearman_perfect_monotone() -> None:
    x = np.arange(10.0)
    est = spearman_bootstrap_ci(x, x**3, n_boot=200)
    assert (est.value, est.low, est.high) == pytest.approx((1.0, 1.0, 1.0))


def test_min_detectable_difference_textbook() -> None:
    # Textbook: 50% vs 70% at alpha 0.05 (two-sided) and power 0.8 needs ~93 per arm.
    assert min_detectable_difference(93, baseline=0.5) == pytest.approx(0.2, abs=1e-3)
    d = min_detectable_difference(50, baseline=0.1)
    # the power of the pooled z-test at that difference, from scipy's normal law, is 0.8
    p1, p2 = 0.1, 0.1 + d
    null_sd = math.sqrt(2 * ((p1 + p2) / 2) * (1 - (p1 + p2) / 2) / 50)
    alt_sd = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 50)
    power = sps.norm.cdf((d - sps.norm.ppf(0.975) * null_sd) / alt_sd)
    assert power == pytest.approx(0.8, abs=2e-3)
    assert min_detectable_difference(400) < min_detectable_difference(100)
    assert math.isnan(min_detectable_difference(2, baseline=0.5))
