"""Rates with 95% intervals for the real-text evaluation (real_holdout, review).

    rate(k, n)                 -> {"k", "n", "rate", "ci95"}: Wilson score interval (eval/intervals.py)
    balanced_accuracy(a, b)    -> {"rate", "ci95"}: mean of two independent rates, MOVER interval

Why Wilson: the real low-quality families are small (a few to ~100 texts) and their rates sit near
0 or 1, where the Wald interval collapses; eval/intervals.py explains the choice and is reused.
Why balanced accuracy is the headline: the real hold-out has ~100x more curated (high) texts than
real low-quality ones, so plain accuracy is ~the keep rate of curated text and says almost nothing
about catching bad text; the mean of the two per-class rates does not depend on that mix. Its
interval is MOVER (Zou & Donner 2008: square-and-add of the two Wilson intervals, what
eval.intervals.newcombe does for a difference) halved, treating the two classes as independent
samples, which they are (disjoint texts).
"""

from __future__ import annotations

import math

from eval.intervals import wilson


def rate(k: int, n: int) -> dict:
    """k of n with its Wilson 95% interval; rate and ci95 are None when n == 0 (nothing to judge)."""
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci95": None}
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def balanced_accuracy(a: dict, b: dict) -> dict:
    """(a + b) / 2 for two `rate` dicts of independent samples; None if either has no items."""
    if a["n"] == 0 or b["n"] == 0:
        return {"rate": None, "ci95": None}
    pa, pb = a["k"] / a["n"], b["k"] / b["n"]
    (la, ua), (lb, ub) = wilson(a["k"], a["n"]), wilson(b["k"], b["n"])
    lo = pa + pb - math.sqrt((pa - la) ** 2 + (pb - lb) ** 2)
    hi = pa + pb + math.sqrt((ua - pa) ** 2 + (ub - pb) ** 2)
    return {"rate": round((pa + pb) / 2, 4), "ci95": [round(max(0.0, lo / 2), 4), round(min(1.0, hi / 2), 4)]}
