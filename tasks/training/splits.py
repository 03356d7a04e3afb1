"""Reading training-sample shards, and the seeded splits every stage over them agrees on.

    samples, bad_lines = read_samples("data/cpt_data/samples")   # bad_lines: rejection entries (id None)
    chosen, left_out = cap_samples(samples, max_samples=5000, seed=1234)
    heldout = heldout_ids(kind_of, fraction=0.03, max_samples=300, min_per_kind=12, seed=1234)
    data_kind(sample)    # kg_qa | caption | image_instruction | ocr | corpus_text
    warm = hash_fraction(ids, 0.10, seed, "warmup", at_least=16)

Splits are by a seeded hash of the sample id (salted per purpose), so they do not depend on shard
order or count, and the same corpus + seed always gives the same held-out set and warm-up subset:
cpt_order sets the held-out split aside and cpt measures on exactly those samples. Both CPT stages
(and later training stages) import this module; it depends on tasks.common only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.common.io import iter_jsonl, shard_paths
from tasks.common.records import rejection


def read_samples(in_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """Every sample of part-*.jsonl under `in_dir`, in file order; unreadable lines as rejections."""
    paths = shard_paths(in_dir)
    if not paths:
        raise FileNotFoundError(f"no part-*.jsonl under {in_dir}: run the cpt_data stage first")
    samples, bad = [], []
    for path in paths:
        for obj, rej in iter_jsonl(path):
            if rej is not None:
                bad.append({**rej, "id": None})
            elif not isinstance(obj, dict):
                bad.append({**rejection("not_an_object", type(obj).__name__, locator=str(path)), "id": None})
            else:
                samples.append(obj)
    return samples, bad


def id_hash(sample_id: str, seed: int, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}:{seed}:{sample_id}".encode()).digest()


def cap_samples(samples: list[dict], max_samples: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(the `max_samples` samples with the smallest seeded id hashes, in file order; the samples left out)."""
    if max_samples <= 0 or len(samples) <= max_samples:
        return samples, []
    ranked = sorted(range(len(samples)), key=lambda i: id_hash(str(samples[i].get("id")), seed, "cap"))
    keep = set(ranked[:max_samples])
    return ([s for i, s in enumerate(samples) if i in keep],
            [s for i, s in enumerate(samples) if i not in keep])


def hash_fraction(ids, fraction: float, seed: int, salt: str, *, at_least: int = 0, at_most: int = 0) -> list[str]:
    """Ids whose seeded hash lies below `fraction`, topped up to `at_least`, capped at `at_most`,
    in hash order (deterministic)."""
    ranked = sorted(ids, key=lambda i: id_hash(i, seed, salt))
    cut = int.from_bytes(b"\xff" * 8, "big") * fraction
    chosen = [i for i in ranked if int.from_bytes(id_hash(i, seed, salt)[:8], "big") < cut]
    if len(chosen) < at_least:
        chosen = ranked[:at_least]
    if at_most and len(chosen) > at_most:
        chosen = chosen[:at_most]
    return chosen


# What a CPT sample teaches, for held-out perplexity per kind and the held-out split's strata: the
# kinds differ by orders of magnitude in perplexity (templated captions vs abstracts), so one overall
# figure hides which kind a run improved or damaged.
DATA_KINDS = ("kg_qa", "caption", "image_instruction", "ocr", "corpus_text")
CAPTION_TASKS = ("caption", "caption_refined")


def data_kind(sample: dict) -> str:
    """The data kind of a CPT sample (cpt_data's `kind` and `task`)."""
    kind, task = sample.get("kind"), sample.get("task")
    if kind == "ocr":
        return "ocr"
    if kind == "image_text":
        return "caption" if task in CAPTION_TASKS else "image_instruction"
    return "corpus_text" if task == "document" else "kg_qa"


def heldout_ids(kind_of: dict[str, str], *, fraction: float, max_samples: int, min_per_kind: int,
                seed: int, kinds: list[str] | tuple[str, ...] = DATA_KINDS) -> list[str]:
    """The held-out split, stratified by data kind, sorted by id: per kind, a seeded `fraction` of
    its samples, at least `min_per_kind` (never more than half the kind), at most an equal share of
    `max_samples` (the hard cap: perplexity costs time per sample). Rare kinds (OCR is ~1% of the corpus) still get enough samples for a per-kind
    perplexity, and a large kind cannot crowd the others out."""
    present = [k for k in kinds if any(v == k for v in kind_of.values())]
    share = max(1, max_samples // len(present)) if present and max_samples else 0
    chosen: list[str] = []
    for k in present:
        ids = sorted(i for i, v in kind_of.items() if v == k)
        floor = min(min_per_kind, len(ids) // 2, share or len(ids))
        chosen += hash_fraction(ids, fraction, seed, "heldout", at_least=floor, at_most=share)
    return sorted(chosen)
