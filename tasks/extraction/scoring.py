"""Entity-extraction scores against gold spans: precision / recall / F1 per type and micro-averaged.

A prediction is a true positive only on an exact match of (document, start, end, type). Per gold
document only the types its corpus annotates are scored (NCBI-disease marks no chemicals, so a
predicted Chemical there is set aside as `ignored`, not counted as a false positive). A predicted
mention without offsets (the LLM returned a string not found in the sentence) can never match and
counts as a false positive of its type. `span_only` scores the same spans ignoring the type, which
separates "found the right words" from "typed them right" for the LLM path.

Predicted types are first mapped through `type_map` (case-insensitive, e.g. an LLM's `Drug` ->
Chemical, `Symptom` -> Disease); what is still outside the evaluated set (e.g. `Gene`) is `ignored`. A document whose extraction failed is scored as predicting nothing
(its gold mentions are all misses) and counted in `failed_docs`.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from tasks.extraction.common import DocResult
from tasks.extraction.gold import GoldDoc

TYPES = ("Chemical", "Disease")


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall, F1 (0.0 where undefined) with the counts they come from."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 6), "recall": round(r, 6), "f1": round(f, 6),
            "tp": tp, "fp": fp, "fn": fn}


def score(gold: Sequence[GoldDoc], predicted: Sequence[DocResult],
          type_map: Mapping[str, str] | None = None, types: Sequence[str] = TYPES) -> dict:
    """Per-type, micro and span-only scores of `predicted` (same order as `gold`)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold documents but {len(predicted)} predictions")
    type_map = {k.lower(): v for k, v in (type_map or {}).items()}
    counts = {t: Counter() for t in types}
    span_counts: Counter = Counter()
    ignored: Counter = Counter()
    failed_docs = 0
    unlocated = 0
    for g, res in zip(gold, predicted):
        if g.doc_id != res.doc_id:
            raise ValueError(f"prediction for {res.doc_id} where {g.doc_id} was expected")
        scored = [t for t in types if t in g.annotated_types]
        gold_set = {(s, e, t) for s, e, t in g.mentions if t in scored}
        pred_set: set = set()
        unloc: Counter = Counter()
        if res.failures:
            failed_docs += 1
        else:
            for m in res.entities:
                t = type_map.get(m["type"].lower(), m["type"])
                if t not in scored:
                    ignored[m["type"]] += 1
                    continue
                if m["start"] is None:
                    unloc[t] += 1
                    continue
                pred_set.add((m["start"], m["end"], t))
        unlocated += sum(unloc.values())
        for t in scored:
            gt = {x for x in gold_set if x[2] == t}
            pt = {x for x in pred_set if x[2] == t}
            counts[t]["tp"] += len(gt & pt)
            counts[t]["fp"] += len(pt - gt) + unloc[t]
            counts[t]["fn"] += len(gt - pt)
        gs = {(s, e) for s, e, _ in gold_set}
        ps = {(s, e) for s, e, _ in pred_set}
        span_counts["tp"] += len(gs & ps)
        span_counts["fp"] += len(ps - gs) + sum(unloc.values())
        span_counts["fn"] += len(gs - ps)
    per_type = {t: prf(c["tp"], c["fp"], c["fn"]) for t, c in counts.items()}
    micro = prf(*(sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn")))
    return {"per_type": per_type, "micro": micro,
            "span_only": prf(span_counts["tp"], span_counts["fp"], span_counts["fn"]),
            "docs": len(gold), "failed_docs": failed_docs, "unlocated_predictions": unlocated,
            "ignored_predictions_by_type": dict(sorted(ignored.items()))}


def flat_metrics(prefix: str, result: dict) -> dict[str, float]:
    """MLflow metric names, e.g. eval.local.Disease.f1, eval.llm.micro.precision."""
    out = {}
    for t, m in result["per_type"].items():
        for k in ("precision", "recall", "f1"):
            out[f"{prefix}.{t}.{k}"] = m[k]
    for part in ("micro", "span_only"):
        for k in ("precision", "recall", "f1"):
            out[f"{prefix}.{part}.{k}"] = result[part][k]
    out[f"{prefix}.docs"] = result["docs"]
    out[f"{prefix}.failed_docs"] = result["failed_docs"]
    return out


def recall_on_spans(docs: Sequence[GoldDoc], predicted: Sequence[DocResult]) -> dict:
    """Recall of `predicted` on the spans of `docs`, per type: exact span and type, and span only.

    For test sets whose spans are known to be entities but whose other entities are unmarked (the
    held-out dictionary terms' occurrences): precision is undefined there, recall is not."""
    if len(docs) != len(predicted):
        raise ValueError(f"{len(docs)} documents but {len(predicted)} predictions")
    by_type: dict[str, Counter] = {}
    for g, res in zip(docs, predicted):
        pred = {(m["start"], m["end"]): m["type"] for m in res.entities if m["start"] is not None}
        for s, e, t in g.mentions:
            c = by_type.setdefault(t, Counter())
            c["spans"] += 1
            got = pred.get((s, e))
            c["span_found"] += got is not None
            c["typed_found"] += got == t
            c["overlap_found"] += any(ps < e and s < pe for ps, pe in pred)
    out = {}
    for t, c in sorted(by_type.items()):
        n = c["spans"]
        out[t] = {"spans": n, "recall": round(c["typed_found"] / n, 4),
                  "span_recall": round(c["span_found"] / n, 4), "overlap_recall": round(c["overlap_found"] / n, 4)}
    total = Counter()
    for c in by_type.values():
        total.update(c)
    n = total["spans"]
    out["all"] = {"spans": n, "recall": round(total["typed_found"] / n, 4) if n else 0.0,
                  "span_recall": round(total["span_found"] / n, 4) if n else 0.0,
                  "overlap_recall": round(total["overlap_found"] / n, 4) if n else 0.0}
    return out
