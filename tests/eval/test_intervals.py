"""95% intervals (eval/intervals.py): Wilson and Newcombe against published values, the bootstrap's
determinism and coverage, the stratified bootstrap of a macro-average, and significance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.intervals import (
    Z,
    bootstrap,
    diff_normal,
    newcombe,
    newcombe_from_intervals,
    significant,
    stratified_bootstrap,
    wilson,
)


@pytest.mark.parametrize("k, n, lo, hi", [
    (0, 20, 0.0, 0.1611),        # Newcombe (1998a), single proportion, method 3: the Wald interval is [0, 0]
    (10, 20, 0.2993, 0.7007),
    (20, 20, 0.8389, 1.0),
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_published_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)
    assert 0.0 <= got[0] <= k / n <= got[1] <= 1.0


def test_wilson_limits_are_exact_at_the_edges_and_inputs_checked():
    assert wilson(0, 7)[0] == 0.0 and wilson(7, 7)[1] == 1.0
    with pytest.raises(ValueError):
        wilson(0, 0)
    with pytest.raises(ValueError):
        wilson(3, 2)


@pytest.mark.parametrize("k1, n1, k2, n2, lo, hi", [
    # Newcombe (1998b), difference of independent proportions, method 10 (hybrid score)
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0),
    (10, 10, 0, 10, 0.6075, 1.0),
])
def test_newcombe_published_values(k1, n1, k2, n2, lo, hi):
    d, got_lo, got_hi = newcombe(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert (got_lo, got_hi) == pytest.approx((lo, hi), abs=5e-5)
    # the same from the two stored Wilson intervals (what the progression has)
    assert newcombe_from_intervals(k1 / n1, *wilson(k1, n1), k2 / n2, *wilson(k2, n2)) == (got_lo, got_hi)


def test_diff_normal_adds_standard_errors_in_quadrature():
    lo, hi = diff_normal(0.5, 0.4, 0.6, 0.3, 0.2, 0.4)
    half = Z * math.hypot(0.1 / Z, 0.1 / Z)          # = 0.1 * sqrt(2)
    assert (lo, hi) == pytest.approx((0.2 - half, 0.2 + half))
    assert diff_normal(0.3, 0.2, 0.4, 0.5, 0.4, 0.6) == pytest.approx((-0.2 - half, -0.2 + half))


def test_significant_means_the_interval_excludes_zero():
    assert significant(0.01, 0.2) and significant(-0.3, -0.01)
    assert not significant(-0.1, 0.2) and not significant(0.0, 0.2)     # touching 0 is not excluding it


def test_bootstrap_is_deterministic_and_seeded():
    vals = np.random.default_rng(3).random(37)
    a, b = bootstrap(vals), bootstrap(list(vals))
    assert a == b and a[0] < vals.mean() < a[1]
    assert bootstrap(vals, seed=1) != a
    assert bootstrap([0.4] * 5) == (0.4, 0.4)                 # no spread, no width
    with pytest.raises(ValueError):
        bootstrap([])


def test_bootstrap_matches_the_normal_interval_on_a_large_sample():
    vals = np.random.default_rng(5).random(4000)              # uniform: sd = 1/sqrt(12)
    lo, hi = bootstrap(vals)
    half = Z * vals.std() / math.sqrt(len(vals))
    assert lo == pytest.approx(vals.mean() - half, abs=0.15 * half)
    assert hi == pytest.approx(vals.mean() + half, abs=0.15 * half)


def test_bootstrap_coverage_is_near_nominal():
    """Intervals from 300 samples of n=40 from Beta(2, 5) (mean 2/7) cover the mean about 95% of the
    time (the percentile bootstrap runs a little under nominal at small n)."""
    rng = np.random.default_rng(11)
    covered = 0
    for i in range(300):
        lo, hi = bootstrap(rng.beta(2, 5, size=40), resamples=500, seed=i)
        covered += lo <= 2 / 7 <= hi
    assert 0.88 <= covered / 300 <= 0.99


def test_bootstrap_of_another_statistic():
    vals = np.arange(1.0, 22.0)
    lo, hi = bootstrap(vals, np.median)
    assert lo < 11.0 < hi and (lo, hi) == bootstrap(vals, np.median)
    # rows per item: the statistic sees the resampled rows (here: a ratio of sums, like corpus BLEU)
    rows = np.column_stack([np.ones(50), np.r_[np.ones(20), np.zeros(30)]])
    lo, hi = bootstrap(rows, lambda r: r[:, 1].sum() / r[:, 0].sum())
    assert lo < 0.4 < hi


def test_stratified_bootstrap_resamples_within_each_benchmark():
    """A macro-average of a large benchmark with no spread and a small one with a lot: only the small
    one's sampling error is in the interval, halved by its weight."""
    big, small = [1.0] * 1000, [0.0, 1.0] * 5                       # macro-average 0.75
    lo, hi = stratified_bootstrap([big, small])
    half = Z * 0.5 * (0.5 / math.sqrt(10))                          # weight 1/2 x sd of the small mean
    assert lo == pytest.approx(0.75 - half, abs=0.25 * half) and hi == pytest.approx(0.75 + half, abs=0.25 * half)
    assert stratified_bootstrap([big, small]) == (lo, hi)
    # weights: all on the big benchmark -> no width
    assert stratified_bootstrap([big, small], [1.0, 0.0]) == (1.0, 1.0)
    with pytest.raises(ValueError):
        stratified_bootstrap([big, []])
    with pytest.raises(ValueError):
        stratified_bootstrap([big, small], [1.0])


def test_stratified_bootstrap_coverage_of_a_macro_average():
    rng = np.random.default_rng(2)
    truth = (0.3 + 0.7) / 2
    covered = 0
    for i in range(200):
        groups = [rng.binomial(1, 0.3, size=60).astype(float), rng.binomial(1, 0.7, size=25).astype(float)]
        lo, hi = stratified_bootstrap(groups, resamples=500, seed=i)
        covered += lo <= truth <= hi
    assert 0.88 <= covered / 200 <= 0.99
