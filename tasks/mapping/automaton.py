"""Word-boundary-aware Aho-Corasick entity matching (paper §3.2: mapping the corpus to the tree).

How: keys and text go through the same normalisation -- casefold, then every non-word character
(anything but a Unicode letter/digit) becomes a space (`fold`, length-preserving) -- and then every
space is doubled and the text gets one sentinel space on each side (`spaced`). A key is its folded
words joined by two spaces with ONE sentinel space on each side (" heart  failure "), so the
automaton itself only matches at word boundaries on both sides ("all" never inside "smaller"), and
two adjacent entities ("breast cancer patients") are both found: each consumes one of the two
spaces between them. `iter_long` gives the leftmost-longest non-overlapping hits; hit offsets are
mapped back to the original text by counting the doubled spaces before each hit (one C-level
`str.count` per hit, incremental), so the whole scan stays O(text).

Semantics: the separators inside a multi-word entity must be exactly one non-word character in the
text ("heart failure", "heart-failure"); "heart, failure" or a double space does not match (the
clean stage normalises whitespace). Norms that fold to the same key ("il-2" / "il 2") share one key;
the lexicographically smallest surface wins (counted as key_collisions).

Why Aho-Corasick: O(text) per document independent of dictionary size (paper: tens of millions of
documents); bare `iter_long` is the speed ceiling, measured in bench/bench_entity_map.py.
"""

from __future__ import annotations

import re
from typing import Iterable

import ahocorasick

_NONWORD = re.compile(r"[\W_]", re.UNICODE)


def _fold_char(c: str) -> str:
    for f in (c.casefold(), c.lower()):
        if len(f) == 1:
            return f
    return c


# ASCII fast path (99% of the corpus): one bytes.translate does casefold + non-word -> space
_ASCII_TABLE = bytes(ord(chr(c).lower()) if chr(c).isalnum() else 32 for c in range(128)) + bytes(range(128, 256))


def fold(text: str) -> str:
    """Casefold + non-word -> space, guaranteed to keep len(text) (offsets stay valid)."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE).decode("ascii")
    cf = text.casefold()
    if len(cf) != len(text):   # e.g. "ß" -> "ss": fold char by char, keep one char per char
        cf = "".join(_fold_char(c) for c in text)
    return _NONWORD.sub(" ", cf)


def _words(surface: str) -> list[str]:
    return fold(surface).split()


def key_of(surface: str) -> str:
    """The automaton key: folded words joined by two spaces, one sentinel space on each side."""
    return " " + "  ".join(_words(surface)) + " "


def spaced(text: str) -> str:
    """The scanned form of a text: folded, one sentinel space each side, every space doubled."""
    if text.isascii():   # bytes fast path: translate + sentinels + doubling without str copies
        return (b" " + text.encode("ascii").translate(_ASCII_TABLE) + b" ").replace(b" ", b"  ").decode("ascii")
    return (" " + fold(text) + " ").replace(" ", "  ")


class EntityMatcher:
    """An automaton over `{surface: payload}`; `scan(text)` -> [(start, end, payload), ...]."""

    def __init__(self, entries: Iterable[tuple[str, object]]):
        self.automaton = ahocorasick.Automaton()
        self.collisions = 0
        self.skipped = 0
        chosen: dict[str, tuple[str, object]] = {}
        for surface, payload in entries:
            words = _words(surface)
            if not words:
                self.skipped += 1
                continue
            key = key_of(surface)
            prev = chosen.get(key)
            if prev is not None:
                self.collisions += 1
                if prev[0] <= surface:     # deterministic: smallest surface string wins
                    continue
            chosen[key] = (surface, payload)
        for key in sorted(chosen):
            n_words = key.count("  ") + 1 if key.strip() else 0
            # (key length in the spaced text, entity length in the original text, payload)
            tlen = len(key.strip()) - (n_words - 1)
            self.automaton.add_word(key, (len(key), tlen, chosen[key][1]))
        self.size = len(chosen)
        if self.size:
            self.automaton.make_automaton()

    def scan(self, text: str) -> list[tuple[int, int, object]]:
        """Leftmost-longest, non-overlapping, word-bounded hits; offsets into `text` (end exclusive)."""
        if not self.size or not text:
            return []
        t2 = spaced(text)
        raw = list(self.automaton.iter_long(t2))       # C-level; offsets mapped below
        if not raw:
            return raw
        out = []
        count = t2.count
        pos = spaces = 0
        for end_idx, (klen, tlen, payload) in raw:
            p = end_idx - klen + 2                 # first entity character in t2
            spaces += count(" ", pos, p)           # doubled spaces before p (incremental: O(len))
            pos = p
            start = p - (spaces >> 1) - 1          # -1: the leading sentinel
            out.append((start, start + tlen, payload))
        return out


def tree_entries(tree, stop_keys=()) -> list[tuple[str, tuple[str, str]]]:
    """(surface, (norm, node id)) for every entity node: its norm and, if it folds differently, its
    name -- unless that name folds to another entity's norm (a norm always owns its own key).
    Entities whose norm folds to one of `stop_keys` (common English words that are also
    abbreviations in the tree: "be", "as", "no", "all", ...) are left out of the automaton."""
    stop = {key_of(w) for w in stop_keys}
    ents = sorted((nid, n) for nid, n in tree.nodes.items()
                  if n.kind == "entity" and key_of(n.members[0]) not in stop)
    norm_keys = {key_of(n.members[0]) for _, n in ents}
    out = [(n.members[0], (n.members[0], nid)) for nid, n in ents]
    for nid, n in ents:
        k = key_of(n.name)
        if k != key_of(n.members[0]) and k not in norm_keys and k not in stop:
            out.append((n.name, (n.members[0], nid)))
    return out
