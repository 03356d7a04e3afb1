"""Per-type precision where no gold exists: a seeded review sample of the corpus mentions, and the
reviewed labels imported back.

The gold PubTator splits annotate chemicals and diseases only, so the other six types (and the
corpus beyond abstracts) are measured by review: the `entities` stage writes
`type_review_sample.jsonl`, up to `per_type` mentions of every type, chosen by a seeded hash of
(document, offsets) so the sample is the same on every run and does not depend on reading order, each
with its context and `label: null`. A reviewer fills `label` (`correct`: the span is an entity of
that type; `wrong_type`: an entity, another type; `not_entity`) and commits the file under
`reviews/` as a DVC-tracked input; `review_labels` points the stage at it, and per-type precision
with Wilson 95% intervals is reported (`precision_by_type` in extraction_eval.json). A label for a
key no longer in the sample is counted as stale, never silently used.

Each sampled mention also says whether the typed dictionary holds its string (`in_dictionary`: the
dictionary's type, or null): a mention outside the dictionary is the extractor generalising, which is
exactly where review matters most.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections import Counter
from pathlib import Path

from eval.intervals import wilson
from tasks.common.io import iter_jsonl

LABELS = ("correct", "wrong_type", "not_entity")


@dataclasses.dataclass
class ReviewParams:
    per_type: int = 15               # mentions per type in type_review_sample.jsonl
    context_chars: int = 120         # text shown on each side of the mention
    review_labels: str = ""          # reviewed copy of the sample (project-relative, DVC-tracked); "" = none


class ReviewSample:
    """Keeps, per type, the `per_type` mentions with the smallest seeded hashes (bounded memory)."""

    def __init__(self, params: ReviewParams, seed: int, dictionary: dict[str, str]):
        self.params = params
        self.seed = seed
        self.dictionary = dictionary
        self.heaps: dict[str, list] = {}

    def add(self, doc_id: str, text: str, m: dict) -> None:
        if m["start"] is None or self.params.per_type <= 0:
            return
        key = f"{doc_id}:{m['start']}:{m['end']}"
        h = int.from_bytes(hashlib.sha256(f"{self.seed}|{key}".encode()).digest()[:8], "big")
        heap = self.heaps.setdefault(m["type"], [])
        if len(heap) < self.params.per_type:
            heapq.heappush(heap, (-h, key, doc_id, text, m))
        elif -heap[0][0] > h:
            heapq.heapreplace(heap, (-h, key, doc_id, text, m))

    def rows(self) -> list[dict]:
        c = self.params.context_chars
        out = []
        for etype in sorted(self.heaps):
            for neg_h, key, doc_id, text, m in sorted(self.heaps[etype], key=lambda x: -x[0]):
                s, e = m["start"], m["end"]
                out.append({"key": key, "type": etype, "text": m["text"], "doc_id": doc_id,
                            "context": f"{text[max(0, s - c):s]}[[{text[s:e]}]]{text[e:e + c]}",
                            "in_dictionary": self.dictionary.get(m["norm"]), "label": None})
        return out


def precision_by_type(sample: list[dict], labels_path: Path) -> dict:
    """Per-type precision of the reviewed sample (label `correct` / all labelled), Wilson 95% CI."""
    labels_path = Path(labels_path)
    if not labels_path.is_file():
        raise FileNotFoundError(f"review_labels file {labels_path} does not exist (export "
                                f"type_review_sample.jsonl, label it, commit it under reviews/)")
    keys = {r["key"]: r["type"] for r in sample}
    counts: dict[str, Counter] = {}
    stale = bad = 0
    for obj, rej in iter_jsonl(labels_path):
        if rej is not None or not isinstance(obj, dict):
            bad += 1
            continue
        label = obj.get("label")
        if label is None:
            continue
        if label not in LABELS:
            raise ValueError(f"{labels_path}: label {label!r} for {obj.get('key')!r}; expected one of {LABELS}")
        etype = keys.get(obj.get("key"))
        if etype is None:
            stale += 1
            continue
        counts.setdefault(etype, Counter())[label] += 1
    out: dict = {"labels_file": labels_path.name, "stale_labels": stale, "bad_lines": bad, "by_type": {}}
    for etype, c in sorted(counts.items()):
        n = sum(c.values())
        lo, hi = wilson(c["correct"], n)
        out["by_type"][etype] = {"precision": round(c["correct"] / n, 4), "ci95": [round(lo, 4), round(hi, 4)],
                                 "reviewed": n, **{k: c[k] for k in LABELS}}
    return out
