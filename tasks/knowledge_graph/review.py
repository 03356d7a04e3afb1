"""Edge precision where there is no gold: a seeded sample of edges for human review, and the import
of the reviewers' labels.

Sample (edge_review_sample.jsonl): per (relation, kind) of the typed edge sources (cid, medquad,
pattern, llm; co-occurrence states no relation, so there is nothing to judge), up to `per_relation`
kept edges and up to `per_relation` edges the signature check rejected (`status` kept | rejected:
labels on rejected edges measure whether the check is right). An edge's rank is
sha256(f"{seed}:review:{key}"), a function of the seed and the edge's key alone, so a re-run on a
changed graph samples the same edges where they still exist and earlier labels keep applying. Line:
key, status, kind, relation, head, head_type, tail, tail_type, support, doc_id, sentence (one
supporting sentence, or null for a cid edge whose two entities share no sentence), label: null.

Labels (review.labels: a JSONL file under the project, DVC-tracked, e.g. reviews/kg_edges.jsonl):
one {"key": <edge key>, "label": "correct" | "incorrect"} per line; a line whose label is null is not
reviewed yet and is skipped (a copy of the sample can be filled in place). A configured file that is
missing, a line that is not such an object, an unknown label or a key given twice stops the stage,
naming the line: a half-read review must not pass for a measurement. Labels are matched by key to
this run's edges, sampled or not:
- kept edges: precision (correct / labelled) with a Wilson 95% interval per relation and per
  (kind, relation);
- rejected edges: the share that is indeed incorrect (the check's precision), per relation;
- keys that match no edge of this run (the graph changed) are counted `stale`, not scored.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tasks.knowledge_graph.precision import precision_block
from tasks.knowledge_graph.signatures import edge_key

REVIEW_KINDS = ("cid", "medquad", "pattern", "llm")
LABELS = ("correct", "incorrect")


def review_rank(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:review:{key}".encode()).digest()[:8], "big")


def _row(edge: dict, status: str, head_type: str, tail_type: str) -> dict:
    prov = edge["provenance"]
    sentence = prov["sentences"][0] if prov.get("sentences") else None
    return {"key": edge_key(edge["kind"], edge["head"], edge["relation"], edge["tail"]), "status": status,
            "kind": edge["kind"], "relation": edge["relation"], "head": edge["head"], "head_type": head_type,
            "tail": edge["tail"], "tail_type": tail_type, "support": edge["support"],
            "doc_id": sentence["doc_id"] if sentence else prov["doc_ids"][0],
            "sentence": sentence["text"] if sentence else None, "label": None}


def review_sample(kept: Sequence[dict], rejected: Sequence[dict], node_types: Sequence[str],
                  per_relation: int, seed: int) -> list[dict]:
    """The review sample's lines, grouped by (relation, kind, status), each group in rank order."""
    groups: dict[tuple[str, str, str], list[tuple[int, dict]]] = {}
    candidates = [(e, "kept") for e in kept] + [(r["record"], "rejected") for r in rejected]
    for e, status in candidates:
        if e["kind"] not in REVIEW_KINDS:
            continue
        row = _row(e, status, node_types[e["head_idx"]], node_types[e["tail_idx"]])
        groups.setdefault((e["relation"], e["kind"], status), []).append((review_rank(seed, row["key"]), row))
    out = []
    for g in sorted(groups):
        out.extend(row for _, row in heapq.nsmallest(per_relation, groups[g], key=lambda x: (x[0], x[1]["key"])))
    return out


def load_labels(path: Path, shown: str) -> tuple[dict[str, str], int]:
    """({key: label}, lines not reviewed yet) from a labels file; `shown` names it in errors."""
    if not path.is_file():
        raise FileNotFoundError(f"kg: review.labels={shown!r} does not exist; label a copy of "
                                f"edge_review_sample.jsonl (label: correct|incorrect) or set review.labels to \"\"")
    labels: dict[str, str] = {}
    unlabelled = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"kg: {shown}:{n}: not JSON ({e})") from None
            key = obj.get("key") if isinstance(obj, dict) else None
            if not isinstance(key, str) or not key:
                raise ValueError(f"kg: {shown}:{n}: expected an object with a string `key`")
            label = obj.get("label")
            if label is None:
                unlabelled += 1
                continue
            if label not in LABELS:
                raise ValueError(f"kg: {shown}:{n}: label {label!r} is not one of {list(LABELS)} (or null)")
            if key in labels:
                raise ValueError(f"kg: {shown}:{n}: key {key!r} is labelled twice")
            labels[key] = label
    return labels, unlabelled


def _score(c: Counter, hit: str) -> dict:
    return {"labelled": c["labelled"], hit: c[hit], **precision_block(c[hit], c["labelled"])}


def review_report(labels: dict[str, str], unlabelled: int, shown: str, kept: Sequence[dict],
                  rejected: Sequence[dict]) -> dict:
    """edge_precision.json's `review` block: precision of labelled kept edges per relation and per
    (kind, relation); the share of labelled rejected edges that are indeed incorrect; stale keys."""
    status = {edge_key(e["kind"], e["head"], e["relation"], e["tail"]): ("kept", e) for e in kept}
    status.update({r["record"]["id"]: ("rejected", r["record"]) for r in rejected})
    by_rel: dict[str, Counter] = {}
    by_kind_rel: dict[str, dict[str, Counter]] = {}
    rej_by_rel: dict[str, Counter] = {}
    stale = 0
    for key, label in sorted(labels.items()):
        found = status.get(key)
        if found is None:
            stale += 1
            continue
        st, e = found
        if st == "kept":
            for c in (by_rel.setdefault(e["relation"], Counter()),
                      by_kind_rel.setdefault(e["kind"], {}).setdefault(e["relation"], Counter())):
                c["labelled"] += 1
                c["correct"] += label == "correct"
        else:
            c = rej_by_rel.setdefault(e["relation"], Counter())
            c["labelled"] += 1
            c["incorrect"] += label == "incorrect"
    total = sum(by_rel.values(), Counter())
    return {"labels_file": shown, "labels": len(labels), "unlabelled": unlabelled, "stale": stale,
            "kept": {**_score(total, "correct"),
                     "by_relation": {r: _score(c, "correct") for r, c in sorted(by_rel.items())},
                     "by_kind_relation": {k: {r: _score(c, "correct") for r, c in sorted(v.items())}
                                          for k, v in sorted(by_kind_rel.items())}},
            "rejected": {**_score(sum(rej_by_rel.values(), Counter()), "incorrect"),
                         "by_relation": {r: _score(c, "incorrect") for r, c in sorted(rej_by_rel.items())}}}
