"""The entity table (paper §3.2.1, the cleansing step after Stage 2) and the entity rejections.

`EntityTable` aggregates mentions by `norm` (case-folded, whitespace-normalized text): mention count,
number of documents, the most frequent surface form, the majority type (ties: the lexicographically
smallest), the mention count of every type (`types`), and `alt_types`: the other types seen at least
twice and in at least `alt_type_min_share` of the mentions ("cold" as Symptom and Disease). The tree
gives such an entity a candidate parent under each of its types: a multi-type conflict for the
resolver (tasks/tree/conflicts.py). `filtered()` applies the paper's frequency filters in its order: an
entity seen fewer than `min_entity_count` times is rejected (`rare_entity`), then every entity of a
type that keeps fewer than `min_type_entities` entities is rejected (`rare_type`). The paper uses 10
and 5 on a web-scale corpus; the params scale them to this corpus.

The stage's accounting unit is the document (its sink: `mentions/part-*.jsonl` one line per kept
document, `rejected/part-*.jsonl` documents that could not be processed; read == kept + rejected counts
documents). Entities are the second unit: `EntityRejections` writes every entity filtered out -- an
extracted string that is empty or too long, a rare entity, a rare type -- to
`rejected_entities/part-*.jsonl` in the one rejection shape (`records.rejection`, the entity as the
record), and its counts sit beside the document accounting in summary.json.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from tasks.common.io import ShardedJsonlWriter
from tasks.common.records import rejection


class EntityTable:
    """Mention statistics per normalized entity."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.doc_count: Counter[str] = Counter()
        self.surfaces: dict[str, Counter] = {}
        self.types: dict[str, Counter] = {}

    def add_document(self, mentions: Iterable[dict]) -> None:
        seen: set[str] = set()
        for m in mentions:
            norm = m["norm"]
            if not norm:
                continue
            self.count[norm] += 1
            self.surfaces.setdefault(norm, Counter())[m["text"]] += 1
            self.types.setdefault(norm, Counter())[m["type"]] += 1
            if norm not in seen:
                seen.add(norm)
                self.doc_count[norm] += 1

    @staticmethod
    def _top(c: Counter) -> str:
        return min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def row(self, norm: str, alt_type_min_share: float = 1.0) -> dict:
        types = self.types[norm]
        top = self._top(types)
        total = sum(types.values())
        alt = sorted((t for t, n in types.items() if t != top and n >= 2 and n / total >= alt_type_min_share),
                     key=lambda t: (-types[t], t))
        return {"norm": norm, "text": self._top(self.surfaces[norm]), "type": top,
                "count": self.count[norm], "doc_count": self.doc_count[norm],
                "types": dict(sorted(types.items())), "alt_types": alt}

    def filtered(self, min_entity_count: int, min_type_entities: int, alt_type_min_share: float = 1.0
                 ) -> tuple[list[dict], list[dict]]:
        """(kept rows sorted by (-count, norm), rejected rows with reason and detail)."""
        rows = sorted((self.row(n, alt_type_min_share) for n in self.count),
                      key=lambda r: (-r["count"], r["norm"]))
        kept, rejected = [], []
        for r in rows:
            if r["count"] < min_entity_count:
                rejected.append({**r, "reason": "rare_entity",
                                 "detail": f"seen {r['count']} times < min_entity_count {min_entity_count}"})
            else:
                kept.append(r)
        per_type = Counter(r["type"] for r in kept)
        rare = {t for t, n in per_type.items() if n < min_type_entities}
        out = []
        for r in kept:
            if r["type"] in rare:
                rejected.append({**r, "reason": "rare_type",
                                 "detail": f"type {r['type']!r} has {per_type[r['type']]} entities "
                                           f"< min_type_entities {min_type_entities}"})
            else:
                out.append(r)
        return out, rejected


class EntityRejections:
    """rejected_entities/part-*.jsonl: the entities filtered out, each a `rejection` entry whose record
    is the entity (a table row, or an extracted string with its document's id and source)."""

    def __init__(self, out_dir: Path, shard_size: int = 50_000):
        self.writer = ShardedJsonlWriter(Path(out_dir) / "rejected_entities", shard_size)
        self.reasons: Counter[str] = Counter()

    def add(self, entity: dict) -> None:
        """`entity` carries its `reason` and `detail` (entity_rejection, EntityTable.filtered)."""
        entity = dict(entity)
        reason, detail = entity.pop("reason"), entity.pop("detail", "")
        self.writer.write(rejection(reason, detail, record=entity))
        self.reasons[reason] += 1

    def close(self) -> dict:
        """The entity counts for summary.json."""
        self.writer.close()
        return {"entities_rejected": sum(self.reasons.values()),
                "entities_rejected_by_reason": dict(sorted(self.reasons.items()))}
