r"""Sliding-window chunking of long documents by words (paper §3.1).

A document longer than `max_words` becomes windows of `max_words` words that start every
`max_words - overlap_words` words, so no sentence is only ever seen cut at a boundary. Each
chunk is sliced from the original text between its first word's start and last word's end,
so paragraph breaks inside a chunk survive (re-joining words would flatten them).

Chunk ids are `<parent id>-c<index:04d>`: stable, derived from the parent, and sortable.
Chunks carry meta.parent_id / chunk_index / chunk_count. Documents within the limit pass
through unchanged (same id, no chunk meta). Image-bearing records are never chunked: an
image-text pair must stay whole.

Word boundaries are found by C-level regex skips (`(?:\S+\s+){k}`) from each window start,
never by a Python loop over words, so a 10 MB single-line document chunks in a fraction of a
second and in memory proportional to its chunks.
"""

from __future__ import annotations

import functools
import re

_NONSPACE = re.compile(r"\S")


@functools.lru_cache(maxsize=16)
def _skip(k: int) -> re.Pattern:
    """Matches k words and the whitespace after each (k >= 1)."""
    return re.compile(r"(?:\S+\s+){%d}" % k)


@functools.lru_cache(maxsize=16)
def _window(k: int) -> re.Pattern:
    """Matches exactly k words (and the whitespace between them)."""
    return re.compile(r"(?:\S+\s+){%d}\S+" % (k - 1))


def chunk_text(text: str, max_words: int, overlap_words: int) -> list[str]:
    """Windows of `max_words` words overlapping by `overlap_words`; [text] if it fits."""
    if max_words <= 0:
        raise ValueError(f"max_words must be positive, got {max_words}")
    if not 0 <= overlap_words < max_words:
        raise ValueError(f"overlap_words must be in [0, max_words), got {overlap_words}")
    # Cheap pre-check: at most max_words whitespace-separated words -> no chunking.
    if len(text.split(None, max_words)) <= max_words:
        return [text]
    window, skip = _window(max_words), _skip(max_words - overlap_words)
    pos = _NONSPACE.search(text).start()
    chunks = []
    while True:
        m = window.match(text, pos)
        if m is None:  # fewer than max_words words left: the tail is the last window
            chunks.append(text[pos:].rstrip())
            break
        chunks.append(m.group())
        if _NONSPACE.search(text, m.end()) is None:  # the window reached the last word
            break
        pos = skip.match(text, pos).end()  # succeeds: more than max_words words remain
    return chunks


def chunk_record(rec: dict, max_words: int, overlap_words: int) -> list[dict]:
    """The record itself if short (or image-bearing), else one record per chunk."""
    if rec.get("images"):
        return [rec]
    pieces = chunk_text(rec["text"], max_words, overlap_words)
    if len(pieces) == 1:
        return [rec]
    out = []
    for i, piece in enumerate(pieces):
        meta = dict(rec["meta"])
        meta.update(parent_id=rec["id"], chunk_index=i, chunk_count=len(pieces))
        out.append({**rec, "id": f"{rec['id']}-c{i:04d}", "text": piece, "meta": meta})
    return out
