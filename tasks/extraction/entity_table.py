"""The entity table (paper §3.2.1, the cleansing step after Stage 2) and the stage's sink.

`EntityTable` aggregates mentions by `norm` (case-folded, whitespace-normalized text): mention count,
number of documents, the most frequent surface form and the majority type (ties: the
lexicographically smallest). `filtered()` applies the paper's frequency filters in its order: an
entity seen fewer than `min_entity_count` times is rejected (`rare_entity`), then every entity of a
type that keeps fewer than `min_type_entities` entities is rejected (`rare_type`). The paper uses 10
and 5 on a web-scale corpus; the params scale them to this corpus.

`EntitySink` is a `StageSink` whose accounting unit is the document: `mentions/part-*.jsonl` holds one
line per kept document, `rejected/part-*.jsonl` holds documents that could not be processed *and*
rejected entities (each line says which with `unit`); summary.json's read == kept + rejected counts
documents, entity-level counts sit beside them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from tasks.common.io import ShardedJsonlWriter, StageSink, write_json


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

    def row(self, norm: str) -> dict:
        return {"norm": norm, "text": self._top(self.surfaces[norm]), "type": self._top(self.types[norm]),
                "count": self.count[norm], "doc_count": self.doc_count[norm]}

    def filtered(self, min_entity_count: int, min_type_entities: int) -> tuple[list[dict], list[dict]]:
        """(kept rows sorted by (-count, norm), rejected rows with reason and detail)."""
        rows = sorted((self.row(n) for n in self.count), key=lambda r: (-r["count"], r["norm"]))
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


class EntitySink(StageSink):
    """StageSink for the entities stage: documents are the unit; entity rejections ride along."""

    def __init__(self, out_dir: Path, *, shard_size: int = 50_000, sample_size: int = 20):
        super().__init__(out_dir, shard_size=shard_size, sample_size=sample_size)
        # kept documents are written as mentions/ (the writer opens no file before its first write)
        self.kept.close()
        (self.out_dir / "kept").rmdir()
        self.kept = ShardedJsonlWriter(self.out_dir / "mentions", shard_size)
        self.entity_reasons: Counter[str] = Counter()

    def reject(self, entry: dict) -> None:
        """A document that could not be processed (counts against read)."""
        super().reject({"unit": "document", **entry})

    def reject_entity(self, entry: dict) -> None:
        """An entity filtered out; written to rejected/ but not a document rejection."""
        entry = {"unit": "entity", **entry}
        self.rejected.write(entry)
        self.entity_reasons[entry["reason"]] += 1
        bucket = self.rejected_sample.setdefault(f"entity.{entry['reason']}", [])
        if len(bucket) < self.sample_size:
            bucket.append(entry)

    def close(self, **extra: Any) -> dict:
        self.kept.close()
        self.rejected.close()
        n_entities = sum(self.entity_reasons.values())
        summary = {
            "read": self.read,
            "kept": self.kept_inputs,
            "rejected": self.rejected.count - n_entities,
            "records_written": self.kept.count,
            "rejected_by_reason": dict(sorted(self.reasons.items())),
            "entities_rejected": n_entities,
            "entities_rejected_by_reason": dict(sorted(self.entity_reasons.items())),
            **extra,
        }
        if summary["read"] != summary["kept"] + summary["rejected"]:
            raise RuntimeError(f"accounting broken: read={summary['read']} kept={summary['kept']} "
                               f"rejected={summary['rejected']}")
        write_json(self.out_dir / "summary.json", summary)
        return summary
