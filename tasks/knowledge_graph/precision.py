"""Precision and recall of a set of edges against a reference, with the project's Wilson interval.

Why Wilson (eval/intervals.py): edge precision is k correct of n judged, and n is often small (20
reviewed edges of one relation, a few hundred held-out CID pairs), where the normal interval
collapses at 0 or 1. Undefined values (nothing predicted, no gold) are None (JSON null), never 0.
"""

from __future__ import annotations

from eval.intervals import wilson


def precision_block(correct: int, judged: int) -> dict:
    """{precision, precision_ci_low, precision_ci_high} of `correct` of `judged` (None when judged is 0)."""
    if judged == 0:
        return {"precision": None, "precision_ci_low": None, "precision_ci_high": None}
    lo, hi = wilson(correct, judged)
    return {"precision": round(correct / judged, 6), "precision_ci_low": round(lo, 6),
            "precision_ci_high": round(hi, 6)}


def precision_recall(predicted: set, gold: set) -> dict:
    """tp / fp / fn of `predicted` against `gold`, precision (Wilson 95%) and recall."""
    tp = len(predicted & gold)
    return {"predicted": len(predicted), "gold": len(gold), "tp": tp, "fp": len(predicted) - tp,
            "fn": len(gold) - tp, **precision_block(tp, len(predicted)),
            "recall": round(tp / len(gold), 6) if gold else None}
