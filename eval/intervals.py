"""95% intervals for benchmark scores and for the change of a score between two checkpoints.

Standard library and numpy only, no harness import: the `eval_progression` stage imports this
module, and its DVC deps stay this file, `eval/__init__.py` and `eval/progression.py`.

Choices, and why:
- An accuracy (k correct of n: Pass@1 on closed items, log-likelihood acc / acc_norm, exact match)
  gets the **Wilson score interval** (`wilson`). Benchmarks here are often small (a `limit` of 20)
  and a weak or a strong model sits near 0 or 1; there the Wald interval p ± z·sqrt(p(1-p)/n)
  collapses to zero width at k = 0 or k = n and undercovers badly at small n, while Wilson stays
  inside [0, 1] and keeps close to nominal coverage (Brown, Cai & DasGupta 2001).
- Any other score (token F1, ROUGE-L, rubric, 1-CER, corpus BLEU) gets a **percentile bootstrap**
  (`bootstrap`): `RESAMPLES` resamples of the items with replacement, the statistic recomputed on
  each, the 2.5th and 97.5th percentiles. These scores are bounded and skewed, so no normal
  approximation is assumed; BLEU is not a mean of per-item scores, so the statistic is a function
  of the resampled items (for BLEU: of their summed n-gram counts). The generator is numpy's PCG64
  seeded with `SEED`: the same items give the same interval on every run and machine.
- A macro-average over benchmarks (a category, the overall score) gets a **stratified bootstrap**
  (`stratified_bootstrap`): items are resampled within each benchmark, each benchmark's mean
  recomputed, and the weighted average of those means taken. Resampling the pooled items instead
  would let a large benchmark's items crowd out a small one's, which the macro-average exists to
  prevent; holding each benchmark's n fixed keeps the resampling faithful to how the score is built.
- The change between two accuracies gets **Newcombe's hybrid score interval** (Newcombe 1998,
  method 10: `newcombe`), built from the two Wilson intervals by square-and-add; it inherits
  Wilson's behaviour near 0 and 1, where the Wald interval for a difference fails the same way.
- The change between two other scores gets the **normal approximation** (`diff_normal`): each
  interval's half-width over z is taken as that score's standard error, the two added in
  quadrature. Only the intervals are stored (metrics.json), not the resamples, so this is what can
  be computed from them.
- Both treat the two scores as independent samples. Two checkpoints answer the same items, so the
  scores are positively correlated and the true interval of the difference is narrower: the
  intervals here are conservative (a change called significant is one; a real small change may
  be called not significant). A paired test would need the per-item results, which the
  progression does not read.
- `significant(lo, hi)`: the interval of the difference excludes 0.

Every interval is at the 95% level (`Z` = the 0.975 normal quantile).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z = 1.959963984540054          # standard normal 0.975 quantile: two-sided 95%
LEVEL = 0.95
RESAMPLES = 2000               # percentile intervals need ~1000+ resamples for stable tails (Efron & Tibshirani 1993)
SEED = 20240917                # fixed: intervals are part of DVC outputs, which must be byte-identical on re-run
_CHUNK_ELEMENTS = 1 << 22      # resampled indices drawn at a time (32 MiB of int64), whatever n is


def wilson(k: int | float, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials."""
    if n <= 0:
        raise ValueError(f"wilson: n must be positive, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} outside [0, n={n}]")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at k = 0 and k = n one limit is exactly 0 or 1; the formula gives it only up to rounding
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def _percentiles(stats: np.ndarray) -> tuple[float, float]:
    alpha = (1 - LEVEL) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of 1-d `values`, drawn in bounded chunks."""
    n = len(values)
    rows = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def bootstrap(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] | None = None, *,
              resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (default: the mean) over the items in `values`.

    `values` is one number per item, or one row per item (e.g. sentence-level BLEU counts) when
    `statistic` takes the resampled rows and returns one number. Deterministic for a given input,
    `resamples` and `seed`."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        raise ValueError("bootstrap: no values")
    rng = np.random.default_rng(seed)
    if statistic is None:
        if arr.ndim != 1:
            raise ValueError("bootstrap: the mean needs one value per item")
        return _percentiles(_resampled_means(arr, rng, resamples))
    n = len(arr)
    stats = np.empty(resamples, dtype=np.float64)
    for b in range(resamples):
        stats[b] = statistic(arr[rng.integers(0, n, size=n)])
    return _percentiles(stats)


def stratified_bootstrap(groups: Sequence[Sequence[float]], weights: Sequence[float] | None = None, *,
                         resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of sum_g weights[g] * mean(groups[g]) (default weights: equal,
    i.e. the macro-average), resampling items within each group and keeping each group's size."""
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("stratified_bootstrap: every group needs at least one value")
    w = [1 / len(groups)] * len(groups) if weights is None else list(weights)
    if len(w) != len(groups):
        raise ValueError("stratified_bootstrap: one weight per group")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples, dtype=np.float64)
    for g, wg in zip(groups, w):
        total += wg * _resampled_means(np.asarray(g, dtype=np.float64), rng, resamples)
    return _percentiles(total)


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """(p1 - p2, lower, upper): Newcombe's hybrid score interval for two independent proportions."""
    p1, p2 = k1 / n1, k2 / n2
    lo, hi = newcombe_from_intervals(p1, *wilson(k1, n1), p2, *wilson(k2, n2))
    return p1 - p2, lo, hi


def newcombe_from_intervals(p1: float, lo1: float, hi1: float, p2: float, lo2: float, hi2: float) -> tuple[float, float]:
    """The interval of p1 - p2 from the two proportions' Wilson intervals (Newcombe 1998, method 10)."""
    d = p1 - p2
    return (d - math.sqrt((p1 - lo1) ** 2 + (hi2 - p2) ** 2),
            d + math.sqrt((hi1 - p1) ** 2 + (p2 - lo2) ** 2))


def diff_normal(a: float, lo_a: float, hi_a: float, b: float, lo_b: float, hi_b: float) -> tuple[float, float]:
    """The interval of a - b by the normal approximation: each score's standard error is its 95%
    interval's half-width over Z, the two independent."""
    se = math.hypot((hi_a - lo_a) / (2 * Z), (hi_b - lo_b) / (2 * Z))
    d = a - b
    return d - Z * se, d + Z * se


def significant(diff_lo: float, diff_hi: float) -> bool:
    """The interval of a difference excludes 0."""
    return diff_lo > 0 or diff_hi < 0
