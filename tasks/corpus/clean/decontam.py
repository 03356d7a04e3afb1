"""Decontamination against every benchmark test/eval split (text n-grams and image hashes).

Text: a record is contaminated when it shares one word n-gram (default 13, as in GPT-3 and
most later decontamination work) with a benchmark item. Tokens are lower-cased runs of word
characters, so punctuation and spacing differences do not hide a copy. Each token gets a
stable 64-bit id (blake2b, cached per distinct token) and each n-gram a polynomial rolling
hash over those ids computed with wrapping uint64 numpy arithmetic; the index is one sorted
uint64 array (plus the item of each entry) searched with `np.searchsorted`, about 16 bytes
per benchmark n-gram. Hashes are stable across processes (no Python `hash()`), so the report
is reproducible.

Boilerplate: question stems such as "which of the following is the most appropriate next step
in management" occur in dozens of MedQA items; an n-gram shared by more than
`max_items_per_ngram` benchmark items is benchmark boilerplate, not evidence of leakage, and
is not indexed (a real copy of an item still shares its many item-specific n-grams).

Items shorter than n tokens (most VQA-RAD questions: "Is this a CT?") are not text-indexed:
matching them anywhere would flag every radiology text, and their leakage risk is the image,
which is checked instead: exact sha256, or perceptual hash (imagehash.phash, 64 bits) within
a Hamming distance, which catches re-encoded or resized copies.

Bring-your-own benchmarks (the eval harness's JSONL format, eval/benchmarks.py) are read with
eval's own loader, so they are indexed under their name with exactly the item ids, the items
and the image files that eval evaluates, and eval's report can match the flagged items. Their
indexed text is what a copy of the item would contain: question, option texts, context, and the
open answers, references and rubric key points (an option letter or a yes/no label is no text);
their images are indexed by file name, the name eval's report looks them up by.

`BenchmarkIndex.checked` names every benchmark the index was built from (items read, bundled or
bring-your-own), so a report can say which benchmarks were never checked instead of implying
that an unchecked one is clean.

Malformed benchmark lines (bad JSON, missing fields; for a bring-your-own file every line eval
would quarantine) are counted per benchmark and reported in the index stats instead of crashing
the build; a missing benchmark file does fail, because decontaminating against nothing must
never pass silently.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from eval.benchmarks import Item, byo_spec, load_byo_jsonl
from tasks.common.io import file_sha256, safe_join
from tasks.corpus.clean.normalize import normalize_text

_TOKEN = re.compile(r"\w+")
_MULT = np.uint64(0x100000001B3)  # odd 64-bit multiplier (FNV prime) for the rolling hash
_FILTER_BITS = 24                  # 2 MiB of bits; ~450k indexed n-grams set ~3% of them
_FILTER_MASK = np.uint64((1 << _FILTER_BITS) - 1)
_JSONL_BENCHMARKS = (  # (name, relative path, id field or None -> "<subject>:<line>")
    ("medqa", "medqa/medqa_input.jsonl", "id"),
    ("medmcqa", "medmcqa/medmcqa_input.jsonl", "id"),
    ("mmlu_medical", "mmlu_medical/mmlu_medical_input.jsonl", None),
)
BUNDLED = (*(name for name, _, _ in _JSONL_BENCHMARKS), "pubmedqa", "vqa_rad")


def tokenize(text: str, *, normalized: bool = False) -> list[str]:
    """Lower-cased, punctuation-stripped word tokens, after the same normalization as records
    (skipped when the caller says `text` is already normalized: it is the costly part)."""
    return _TOKEN.findall((text if normalized else normalize_text(text)).lower())


class TokenHasher:
    """Stable 64-bit token ids, cached: corpora have few distinct tokens but many occurrences."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}

    def ids(self, tokens: list[str]) -> np.ndarray:
        cache = self._cache
        vals = list(map(cache.get, tokens))  # C-level loop; misses come back as None
        if None in vals:
            # Hash only the new distinct tokens (a set difference, in C), then look every token up
            # again: a Python loop over all of a document's tokens whenever one is new cost more
            # than the rest of the n-gram check.
            for t in set(tokens).difference(cache):
                cache[t] = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
            vals = list(map(cache.__getitem__, tokens))
        return np.array(vals, dtype=np.uint64)

    def ngram_hashes(self, tokens: list[str], n: int) -> np.ndarray:
        """uint64 hash of every n-gram (position i covers tokens[i:i+n]); empty if too short."""
        if len(tokens) < n:
            return np.empty(0, dtype=np.uint64)
        ids = self.ids(tokens)
        m = len(tokens) - n + 1
        h = ids[:m].copy()
        for j in range(1, n):  # uint64 arithmetic wraps modulo 2^64, which is what we want
            h *= _MULT
            h += ids[j:j + m]
        return h


def phash_int(path: str | Path) -> int:
    """64-bit perceptual hash of an image file as an int (raises on unreadable images)."""
    import imagehash
    from PIL import Image

    with Image.open(path) as im:
        return int(str(imagehash.phash(im)), 16)




@dataclass
class Hit:
    benchmark: str
    item: str
    kind: str        # text | image_sha256 | image_phash
    evidence: str    # the shared n-gram, the sha256, or "phash_distance=<d>"


@dataclass
class BenchmarkIndex:
    ngram: int = 13
    phash_max_distance: int = 4
    max_items_per_ngram: int = 3
    items: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (benchmark, item)
    stats: dict = field(default_factory=dict)
    # benchmark -> {"items": items read, "source": "bundled" | "byo"}; kept out of `stats` so the
    # stats (and every output made of them) are unchanged when no benchmark is brought.
    checked: dict[str, dict] = field(default_factory=dict)
    _hashes: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64), repr=False)
    _item_of: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32), repr=False)
    _sha: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _phash: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64), repr=False)
    _phash_item: list[int] = field(default_factory=list, repr=False)
    _hasher: TokenHasher = field(default_factory=TokenHasher, repr=False)
    # A bit per value of a hash's low _FILTER_BITS bits, set for every indexed n-gram: a document's
    # n-grams are looked up in `_hashes` only where their bit is set (none for most documents),
    # which spares a binary search per n-gram. Built on first use (`_ngram_filter`).
    _filter: np.ndarray | None = field(default=None, repr=False)
    # (sha256, path) -> phash of the corpus images already hashed: records share images (VQA-RAD
    # asks several questions about one image) and the phash is a function of the file's bytes.
    _phash_cache: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, benchmarks_dir: str | Path, *, ngram: int = 13, phash_max_distance: int = 4,
              max_items_per_ngram: int = 3,
              byo: Iterable[tuple[str, str | Path, str]] = ()) -> "BenchmarkIndex":
        """Index every benchmark test split under `benchmarks_dir` and the bring-your-own
        benchmarks `byo`, (name, JSONL path, family) each (see module docstring)."""
        root = Path(benchmarks_dir)
        idx = cls(ngram=ngram, phash_max_distance=phash_max_distance,
                  max_items_per_ngram=max_items_per_ngram)
        byo = sorted((name, Path(path), family) for name, path, family in byo)
        names = [name for name, _, _ in byo]
        # One name, two item sets: neither the report nor eval could tell their items apart.
        clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(BUNDLED)))
        if clash:
            raise ValueError(f"bring-your-own benchmark names {clash} are used twice or are bundled names")
        texts: list[tuple[str, str, str]] = []   # (benchmark, item, text)
        malformed: Counter = Counter()
        for name, rel, id_field in _JSONL_BENCHMARKS:
            texts.extend(_read_jsonl_items(root / rel, name, id_field, malformed))
        texts.extend(_read_pubmedqa(root / "pubmedqa", malformed))
        vqa_texts, vqa_images = _read_vqa_rad(root / "vqa_rad", malformed)
        texts.extend(vqa_texts)
        images = [(bench, name, root / "vqa_rad" / "images", name) for bench, name in vqa_images]
        for name, path, family in byo:
            byo_texts, byo_images = _read_byo(name, path, family, malformed)
            texts.extend(byo_texts)
            images.extend(byo_images)
        idx._add_texts(texts)
        idx._add_images(images)
        idx.stats["malformed"] = dict(sorted(malformed.items()))
        idx.stats["malformed_total"] = sum(malformed.values())
        # Every benchmark read is listed, even with no valid item: "0 items" is what was checked.
        sources = {**dict.fromkeys(BUNDLED, "bundled"), **{name: "byo" for name, _, _ in byo}}
        idx.checked = {name: {"items": idx.stats["text_items"].get(name, 0), "source": src}
                       for name, src in sorted(sources.items())}
        return idx

    def _item(self, benchmark: str, item: str) -> int:
        self.items.append((benchmark, item))
        return len(self.items) - 1

    def _add_texts(self, texts: list[tuple[str, str, str]]) -> None:
        all_h, all_i = [], []
        per_bench: Counter = Counter()
        short: Counter = Counter()
        for bench, item, text in texts:
            per_bench[bench] += 1
            h = np.unique(self._hasher.ngram_hashes(tokenize(text), self.ngram))
            if not len(h):
                short[bench] += 1
                continue
            all_h.append(h)
            all_i.append(np.full(len(h), self._item(bench, item), dtype=np.int32))
        hashes = np.concatenate(all_h) if all_h else np.empty(0, np.uint64)
        item_of = np.concatenate(all_i) if all_i else np.empty(0, np.int32)
        order = np.lexsort((item_of, hashes))  # by hash, then item: deterministic ties
        hashes, item_of = hashes[order], item_of[order]
        # Drop boilerplate: n-grams shared by more than max_items_per_ngram items.
        uniq, counts = np.unique(hashes, return_counts=True)
        common = uniq[counts > self.max_items_per_ngram]
        keep = ~np.isin(hashes, common)
        self._hashes, self._item_of = hashes[keep], item_of[keep]
        self._filter = None
        self.stats.update({
            "text_items": dict(sorted(per_bench.items())),
            "text_items_too_short": dict(sorted(short.items())),
            "ngrams_indexed": int(len(np.unique(self._hashes))),
            "ngrams_boilerplate_dropped": int(len(common)),
        })

    def _add_images(self, images: list[tuple[str, str, Path, str]]) -> None:
        """`images`: (benchmark, item name, folder, path relative to it) of test questions; an
        image used by several questions is indexed once."""
        ph, ph_item = [], []
        missing = 0
        for bench, name, folder, rel in sorted(set(images), key=lambda e: (e[0], e[1], str(e[2]), e[3])):
            try:
                path = safe_join(folder, rel)  # names come from a file
                sha = file_sha256(path)
                p = phash_int(path)
            except (OSError, ValueError):
                missing += 1
                continue
            i = self._item(bench, name)
            self._sha.setdefault(sha, []).append(i)
            ph.append(p)
            ph_item.append(i)
        self._phash = np.array(ph, dtype=np.uint64)
        self._phash_item = ph_item
        self.stats.update({"images_indexed": len(ph), "images_missing": missing})

    # ---- querying -------------------------------------------------------------------------
    def check_text(self, text: str, *, normalized: bool = False) -> list[Hit]:
        """One Hit per benchmark item sharing an n-gram with `text` (evidence: first shared)."""
        if not len(self._hashes) or not text:
            return []
        toks = tokenize(text, normalized=normalized)
        h = self._hasher.ngram_hashes(toks, self.ngram)
        if not len(h):
            return []
        low = h & _FILTER_MASK
        cand = np.flatnonzero((self._ngram_filter()[low >> 3] >> (low & 7).astype(np.uint8)) & 1)
        if not len(cand):
            return []
        hc = h[cand]
        pos = np.searchsorted(self._hashes, hc)
        pos_c = np.minimum(pos, len(self._hashes) - 1)
        found = self._hashes[pos_c] == hc
        hits: dict[int, Hit] = {}
        for p, lo in zip(cand[found].tolist(), pos[found].tolist()):  # ascending n-gram position
            hi = int(np.searchsorted(self._hashes, h[p], side="right"))
            for item in self._item_of[lo:hi].tolist():
                if item not in hits:
                    bench, item_id = self.items[item]
                    hits[item] = Hit(bench, item_id, "text", " ".join(toks[p:p + self.ngram]))
        return [hits[k] for k in sorted(hits)]

    def _ngram_filter(self) -> np.ndarray:
        if self._filter is None:
            bits = np.zeros(1 << _FILTER_BITS, dtype=bool)
            bits[self._hashes & _FILTER_MASK] = True
            self._filter = np.packbits(bits, bitorder="little")
        return self._filter

    def check_image(self, sha256: str, path: str | Path | None = None) -> list[Hit]:
        """Hits for an image: exact sha256 match, else phash within the distance (if readable).

        Raises OSError/ValueError when the phash is needed but the file cannot be read; the
        caller decides how to count that.
        """
        exact = self._sha.get(sha256)
        if exact:
            return [Hit(*self.items[i], "image_sha256", sha256) for i in exact]
        if path is None or not len(self._phash):
            return []
        key = (sha256, str(path))
        value = self._phash_cache.get(key)
        if value is None:  # unreadable files raise here every time, so each one is counted
            value = self._phash_cache[key] = phash_int(path)
        p = np.uint64(value)
        dist = np.bitwise_count(self._phash ^ p)
        return [Hit(*self.items[self._phash_item[j]], "image_phash", f"phash_distance={int(dist[j])}")
                for j in np.flatnonzero(dist <= self.phash_max_distance).tolist()]


# ---- benchmark readers (field names checked against the real files) ----------------------
def _read_jsonl_items(path: Path, bench: str, id_field: str | None, malformed: Counter):
    """MedQA/MedMCQA/MMLU: `question` already holds the stem and 'Answer Choices: (A) ...'."""
    if not path.exists():
        raise FileNotFoundError(f"benchmark file missing: {path}")
    for lineno, obj, err in _iter_jsonl_numbered(path):
        if err is not None or not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
            malformed[bench] += 1
            continue
        if id_field is not None:
            if not isinstance(obj.get(id_field), (str, int)):
                malformed[bench] += 1
                continue
            item = str(obj[id_field])
        else:  # MMLU rows carry no id: subject + line number is stable for a given file
            item = f"{obj.get('subject', 'mmlu')}:{lineno}"
        yield bench, item, obj["question"]


def _iter_jsonl_numbered(path: Path):
    """(line number, object, error): like io.iter_jsonl, but MMLU ids need the line number."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.decode("utf-8")), None
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                yield lineno, None, str(e)


def _read_pubmedqa(d: Path, malformed: Counter):
    """PubMedQA test split: the ids of test_ground_truth.json looked up in ori_pqal.json.

    Indexed text: QUESTION + CONTEXTS + LONG_ANSWER. The long answer is the abstract's
    conclusion, i.e. the answer itself: a training document containing it leaks the label.
    """
    pqal = json.loads((d / "ori_pqal.json").read_text(encoding="utf-8"))
    test_ids = json.loads((d / "test_ground_truth.json").read_text(encoding="utf-8"))
    for pmid in sorted(test_ids):
        row = pqal.get(pmid)
        if not isinstance(row, dict) or not isinstance(row.get("QUESTION"), str):
            malformed["pubmedqa"] += 1
            continue
        ctx = row.get("CONTEXTS") or []
        parts = [row["QUESTION"], *(c for c in ctx if isinstance(c, str))]
        if isinstance(row.get("LONG_ANSWER"), str):
            parts.append(row["LONG_ANSWER"])
        yield "pubmedqa", pmid, "\n".join(parts)


def _byo_text(item: Item) -> str:
    """The text of a bring-your-own item that a leaked copy of it would contain."""
    parts = [item.question, " ".join(f"({letter}) {text}" for letter, text in item.options), item.context]
    if item.kind not in ("choice", "yesno"):  # a letter or a yes/no label matches any text
        parts.extend(item.answers)
    parts.extend(item.key_points)
    return "\n".join(p for p in parts if p)


def _read_byo(name: str, path: Path, family: str, malformed: Counter):
    """A bring-your-own JSONL benchmark through eval's loader: (texts, images) as the bundled
    readers return them; every line eval would quarantine is counted as malformed."""
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file missing: {path}")
    res = load_byo_jsonl(byo_spec(name, str(path), family), path.parent)
    if res.quarantined:
        malformed[name] += len(res.quarantined)
    texts = [(name, item.id, _byo_text(item)) for item in res.items]
    # Eval's report looks an image hit up by the file name (Item.decontam_keys).
    images = [(name, Path(p).name, Path(p).parent, Path(p).name) for item in res.items for p in item.images]
    return texts, images


def _read_vqa_rad(d: Path, malformed: Counter):
    rows = json.loads((d / "testset.json").read_text(encoding="utf-8"))
    texts, images = [], []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            malformed["vqa_rad"] += 1
            continue
        texts.append(("vqa_rad", f"qid:{row.get('qid')}", row["question"]))
        if isinstance(row.get("image_name"), str):
            images.append(("vqa_rad", row["image_name"]))
    return texts, images
