"""Entity-balanced mixing (paper §3.3: "based on the balanced dataset built with the medical entity
tree"): how many times each corpus document is seen in CPT, from the entity_map manifest.

    from tasks.cpt_synthesis.mixing import mixing_plan
    out, report = mixing_plan(manifest_rows, budget=50_000, seed=1234)
    out.kept      # [{doc_id, weight, n_entities, expected, repeats}] in manifest order
    report        # the effective distribution (repeat histogram, Gini/entropy of views, views by
                  # entity-count bucket, largest |repeats - expected|)

The manifest (data/entity_map/balanced_manifest.jsonl) gives each document a weight: tempered inverse
entity frequency, mean 1, so documents about rare entities weigh more. Document i is expected
`budget * w_i / sum(w)` times. Systematic sampling turns expectations into integer repeats: one seeded
offset u, repeats_i = floor(C_i - u) - floor(C_{i-1} - u) over the cumulative expectations C in a seeded
order, so every document gets floor or ceil of its expectation, the total is exactly `budget`, and the
expectation is exact -- less variance than multinomial draws and no document is starved by chance.
`token_budget_views` converts a token budget into a view budget given document lengths.

Rows without a doc_id, with a weight that is not a finite number >= 0, or with a duplicate doc_id are
rejected with the reason.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from tasks.common.stats import gini
from tasks.cpt_synthesis.samples import Outcome

# bucket names are MLflow metric-name parts (mixing.views_by_entity_count.<name>.views): no "+"
BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, 10**9, "6_or_more"))


def _valid(rows: Iterable[dict], out: Outcome) -> list[dict]:
    seen: set[str] = set()
    good = []
    for r in rows:
        doc = r.get("doc_id") if isinstance(r, dict) else None
        w = r.get("weight") if isinstance(r, dict) else None
        if not isinstance(doc, str) or not doc:
            out.reject("missing_doc_id", "manifest row without a doc_id", r)
        elif isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            out.reject("bad_weight", f"weight {w!r} is not a finite number >= 0", {"doc_id": doc})
        elif doc in seen:
            out.reject("duplicate_doc_id", "doc_id listed twice; the first row is used", {"doc_id": doc})
        else:
            seen.add(doc)
            good.append({"doc_id": doc, "weight": float(w), "n_entities": int(r.get("n_entities") or 0)})
    return good


def systematic_counts(expected: np.ndarray, u: float) -> np.ndarray:
    """Integer counts with the given expectations (summing to round(sum)), one offset u in [0, 1)."""
    c = np.concatenate([[0.0], np.cumsum(expected)])
    return np.diff(np.floor(c - u + 1.0)).astype(np.int64)


def mixing_plan(rows: Iterable[dict], budget: int, seed: int) -> tuple[Outcome, dict]:
    """Repeats per document for `budget` document views (module docstring)."""
    if budget < 0:
        raise ValueError("budget must be >= 0")
    out = Outcome()
    good = _valid(rows, out)
    if not good:
        return out, {"docs": 0, "budget": budget, "views": 0}
    w = np.array([r["weight"] for r in good])
    total = w.sum()
    expected = budget * w / total if total > 0 else np.zeros_like(w)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(good))       # a seeded order: neighbours in doc_id order share a source
    counts = np.zeros(len(good), dtype=np.int64)
    counts[order] = systematic_counts(expected[order], float(rng.random()))
    for r, e, k in zip(good, expected, counts):
        out.kept.append({**r, "expected": round(float(e), 6), "repeats": int(k)})
    return out, plan_report(good, expected, counts, budget)


def plan_report(rows: list[dict], expected: np.ndarray, counts: np.ndarray, budget: int) -> dict:
    views = int(counts.sum())
    p = counts[counts > 0] / max(views, 1)
    entropy = float(-(p * np.log(p)).sum() / math.log(len(counts))) if len(counts) > 1 and views else 0.0
    by_bucket = {}
    n_ent = np.array([r["n_entities"] for r in rows])
    for lo, hi, name in BUCKETS:
        sel = (n_ent >= lo) & (n_ent <= hi)
        if sel.any():
            by_bucket[name] = {"docs": int(sel.sum()), "views": int(counts[sel].sum()),
                               "views_per_doc": round(float(counts[sel].mean()), 4)}
    return {"docs": len(rows), "budget": budget, "views": views,
            "docs_seen": int((counts > 0).sum()), "docs_unseen": int((counts == 0).sum()),
            "max_repeats": int(counts.max()), "repeat_histogram": {str(k): v for k, v in sorted(Counter(counts.tolist()).items())},
            "max_abs_dev_from_expected": round(float(np.abs(counts - expected).max()), 6),
            "gini_views": round(gini(counts), 4), "entropy_views_norm": round(entropy, 4),
            "views_by_entity_count": by_bucket}


def token_budget_views(rows: Iterable[dict], lengths: Mapping[str, int], token_budget: int) -> int:
    """The view budget whose expected token count is `token_budget` (weights as in mixing_plan);
    documents without a known length count as the mean length."""
    rows = [r for r in rows if isinstance(r.get("weight"), (int, float)) and r["weight"] > 0]
    if not rows:
        return 0
    known = [lengths[r["doc_id"]] for r in rows if r["doc_id"] in lengths]
    mean_len = float(np.mean(known)) if known else 1.0
    w = np.array([r["weight"] for r in rows], dtype=np.float64)
    ln = np.array([lengths.get(r["doc_id"], mean_len) for r in rows], dtype=np.float64)
    tokens_per_view = float((w * ln).sum() / w.sum())
    return round(token_budget / max(tokens_per_view, 1e-9))
