"""What both entity extractors share: sentence splitting, tokenization, the mention contract.

A mention (one line item of `mentions/part-*.jsonl`) is

    {"text": surface form, "norm": case-folded whitespace-normalized form, "type": entity type,
     "start": char offset into the document text or None, "end": ... or None}

`start`/`end` are None only on the LLM path, when the entity string the model returned cannot be
found in its sentence (a paraphrase or a spelling fix); such a mention still counts in the entity
table but can never match a gold span. When offsets are set, `text == doc_text[start:end]`.

Entity strings are checked before they become mentions: empty or whitespace-only strings and strings
longer than `max_entity_chars` come back as entity rejections (`empty`, `too_long`), never silently
dropped and never written as mentions.

Why a hand-written splitter: it is deterministic, has no model or download, and is good enough for
abstracts and consumer-health answers; its one job is to cut text into units the CRF and the LLM
prompt can handle. Over-long "sentences" (lists, tables) are cut at whitespace so a prompt stays
inside the endpoint's context window.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

# Words after which a period does not end a sentence.
ABBREVIATIONS = frozenset("""
e.g i.e vs etc al fig figs dr mr mrs ms prof no nos approx ca cf resp sp spp st vol eq ref
jan feb mar apr jun jul aug sep sept oct nov dec inc ltd co corp dept univ
""".split())
_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_WS = re.compile(r"\s+")


def normalize_entity(text: str) -> str:
    """The grouping key of an entity: NFKC, whitespace collapsed, case-folded."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def clean_surface(text: str) -> str:
    """An entity string as returned by a model, with collapsed whitespace and no wrapping quotes."""
    text = _WS.sub(" ", text).strip()
    return text.strip("\"'`").strip()


def _ends_with_abbreviation(text: str, end: int) -> bool:
    """True if the period at text[end] closes a known abbreviation (`e.g.`, `et al.`, `Fig.`)."""
    j = end
    while j > 0 and not text[j - 1].isspace():
        j -= 1
    # Single letters are not treated as initials: "vitamin D. The" and "hepatitis B. In" end
    # sentences far more often in medical text than author initials do.
    return text[j:end].lstrip("([\"'").lower() in ABBREVIATIONS


def split_sentences(text: str, max_chars: int = 600) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of `text`, whitespace trimmed, in order.

    A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace and an
    upper-case letter or digit, unless the period closes a known abbreviation;
    every line break ends a sentence too. Pieces longer than `max_chars` are cut at the last
    whitespace before the limit (or hard at the limit when there is none).
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group()[0] == "." and _ends_with_abbreviation(text, m.start()):
            continue
        cut = m.start() + len(m.group().rstrip()) if not m.group()[0].isspace() else m.start()
        spans.append((start, cut))
        start = m.end()
    spans.append((start, len(text)))
    out: list[tuple[int, int]] = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        while e - s > max_chars:
            cut = text.rfind(" ", s + 1, s + max_chars)
            cut = cut if cut > s else s + max_chars
            out.append((s, cut))
            s = cut
            while s < e and text[s].isspace():
                s += 1
        if e > s:
            out.append((s, e))
    return out


def tokenize(text: str, offset: int = 0) -> list[tuple[str, int, int]]:
    """(token, start, end) for runs of word characters and single punctuation marks.

    Hyphens, slashes and brackets are tokens of their own, so "adriamycin-induced" gives
    adriamycin / - / induced: gold spans in BC5CDR and NCBI-disease start and end there.
    """
    return [(m.group(), m.start() + offset, m.end() + offset) for m in _TOKEN.finditer(text)]


@dataclass
class DocResult:
    """What an extractor returns for one document (the same for the local and the LLM path)."""
    doc_id: str
    entities: list[dict] = field(default_factory=list)       # mentions, see module docstring
    rejected: list[dict] = field(default_factory=list)       # entity strings that failed the checks
    failures: list[dict] = field(default_factory=list)       # sentences the extractor could not do
    sentences: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def check_entity(surface: str, max_chars: int) -> str | None:
    """The rejection reason for an entity string, or None if it is usable."""
    if not isinstance(surface, str) or not surface.strip():
        return "empty"
    if len(surface) > max_chars:
        return "too_long"
    return None


def entity_rejection(surface: object, etype: str, reason: str, max_chars: int) -> dict:
    """An entity rejection entry; a too-long string is kept as its head plus its length."""
    s = surface if isinstance(surface, str) else repr(surface)
    return {"reason": reason, "text": s[:max_chars] + ("…" if len(s) > max_chars else ""),
            "chars": len(s), "type": etype,
            "detail": {"empty": "empty or whitespace-only entity string",
                       "too_long": f"entity string of {len(s)} chars > max_entity_chars {max_chars}",
                       }.get(reason, reason)}


def mention(text: str, etype: str, start: int | None, end: int | None) -> dict:
    return {"text": text, "norm": normalize_entity(text), "type": etype, "start": start, "end": end}


def _word_char(c: str) -> bool:
    return c.isalnum()


def find_occurrences(sentence: str, surface: str) -> list[tuple[int, int]]:
    """Non-overlapping occurrences of `surface` in `sentence` that do not cut a word in two.

    Exact match first; if there is none, case-insensitive with any run of whitespace (or none,
    around punctuation) matching a space, which absorbs OCR/formatting noise in the sentence.
    """
    if not surface:
        return []

    def bounded(s: int, e: int) -> bool:
        left_ok = s == 0 or not (_word_char(sentence[s - 1]) and _word_char(sentence[s]))
        right_ok = e == len(sentence) or not (_word_char(sentence[e - 1]) and _word_char(sentence[e]))
        return left_ok and right_ok

    out: list[tuple[int, int]] = []
    i = sentence.find(surface)
    while i >= 0:
        if bounded(i, i + len(surface)):
            out.append((i, i + len(surface)))
            i = sentence.find(surface, i + len(surface))
        else:
            i = sentence.find(surface, i + 1)
    if out:
        return out
    parts = _TOKEN.findall(surface)
    if not parts or len(parts) > 64:
        return []
    pattern = re.compile(r"\s*".join(re.escape(p) for p in parts), re.IGNORECASE)
    return [(m.start(), m.end()) for m in pattern.finditer(sentence) if bounded(m.start(), m.end())]


def dedupe_mentions(mentions: Iterable[dict]) -> list[dict]:
    """Mentions sorted by offsets (unlocated last, in given order), exact duplicates removed."""
    seen: set = set()
    located, unlocated = [], []
    for m in mentions:
        key = (m["start"], m["end"], m["type"]) if m["start"] is not None else (m["norm"], m["type"])
        if key in seen:
            continue
        seen.add(key)
        (located if m["start"] is not None else unlocated).append(m)
    located.sort(key=lambda m: (m["start"], m["end"], m["type"]))
    return located + unlocated
