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

Abbreviation-only keys: an entry flagged `abbreviation_only` (`MatchEntry`) is a key that is also a
common English word -- the tree holds "NO" (nitric oxide), "ALL" (acute lymphoblastic leukemia), "BE",
"AS", ... whose norms fold to "no", "all", "be", "as". Case-folded matching alone would read every
"no" and "all" of the corpus as those entities. Such a hit is kept only where the text writes it in
upper case ("NO", "ALL": `is_abbreviation`), never "no", "No" or "all"; the check is a post-filter on
the hits of those keys only (one `str.isupper` on the hit's span), so the scan stays O(text). The
matcher counts, per abbreviation-only entry, the hits kept and the hits suppressed
(`abbreviation_counts`), so what the rule costs is reported, not silent. Limitation: in upper-case
text (a shouted heading "NO EVIDENCE OF DISEASE") the word reads as the abbreviation.

Why Aho-Corasick: O(text) per document independent of dictionary size (paper: tens of millions of
documents); bare `iter_long` is the speed ceiling, measured in bench/bench_entity_map.py.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple

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


class MatchEntry(NamedTuple):
    """One automaton entry. A plain `(surface, payload)` pair is an entry with `abbreviation_only`
    False; `abbreviation_only` entries match only where the text writes them in upper case."""
    surface: str
    payload: object
    abbreviation_only: bool = False


def is_abbreviation(span: str) -> bool:
    """An abbreviation reading of a hit: every cased character upper-case ("NO", "ALL", "N.O."),
    not "no", "No", "All"."""
    return span.isupper()


class EntityMatcher:
    """An automaton over `(surface, payload[, abbreviation_only])` entries; `scan(text)` ->
    [(start, end, payload), ...]."""

    def __init__(self, entries: Iterable[tuple]):
        self.automaton = ahocorasick.Automaton()
        self.collisions = 0
        self.skipped = 0
        chosen: dict[str, MatchEntry] = {}
        for entry in entries:
            entry = MatchEntry(*entry)
            words = _words(entry.surface)
            if not words:
                self.skipped += 1
                continue
            key = key_of(entry.surface)
            prev = chosen.get(key)
            if prev is not None:
                self.collisions += 1
                if prev.surface <= entry.surface:     # deterministic: smallest surface string wins
                    continue
            chosen[key] = entry
        # abbreviation-only entries, in key order: index -> entry; hits kept / suppressed per index
        self.abbreviation_entries: list[MatchEntry] = []
        for key in sorted(chosen):
            entry = chosen[key]
            n_words = key.count("  ") + 1 if key.strip() else 0
            tlen = len(key.strip()) - (n_words - 1)
            abbrev = -1
            if entry.abbreviation_only:
                abbrev = len(self.abbreviation_entries)
                self.abbreviation_entries.append(entry)
            # (key length in the spaced text, entity length in the original text, payload,
            #  index of the abbreviation-only entry or -1)
            self.automaton.add_word(key, (len(key), tlen, entry.payload, abbrev))
        self.abbreviation_kept = [0] * len(self.abbreviation_entries)
        self.abbreviation_suppressed = [0] * len(self.abbreviation_entries)
        self.size = len(chosen)
        if self.size:
            self.automaton.make_automaton()

    def scan(self, text: str) -> list[tuple[int, int, object]]:
        """Leftmost-longest, non-overlapping, word-bounded hits; offsets into `text` (end exclusive).
        Hits of abbreviation-only entries not written in upper case are dropped (and counted)."""
        if not self.size or not text:
            return []
        t2 = spaced(text)
        raw = list(self.automaton.iter_long(t2))       # C-level; offsets mapped below
        if not raw:
            return []
        out = []
        count = t2.count
        pos = spaces = 0
        for end_idx, (klen, tlen, payload, abbrev) in raw:
            p = end_idx - klen + 2                 # first entity character in t2
            spaces += count(" ", pos, p)           # doubled spaces before p (incremental: O(len))
            pos = p
            start = p - (spaces >> 1) - 1          # -1: the leading sentinel
            if abbrev >= 0:
                if not is_abbreviation(text[start:start + tlen]):
                    self.abbreviation_suppressed[abbrev] += 1
                    continue
                self.abbreviation_kept[abbrev] += 1
            out.append((start, start + tlen, payload))
        return out

    def abbreviation_counts(self) -> list[tuple[MatchEntry, int, int]]:
        """(entry, hits kept, hits suppressed) per abbreviation-only entry, over every scan so far."""
        return list(zip(self.abbreviation_entries, self.abbreviation_kept, self.abbreviation_suppressed))


def tree_entries(tree, stop_keys=()) -> list[MatchEntry]:
    """An entry for every entity node: its norm and, if it folds differently, its name -- unless
    that name folds to another entity's norm (a norm always owns its own key); payload (norm, node id).
    A key that folds to one of `stop_keys` (common English words that are also abbreviations in the
    tree: "be", "as", "no", "all", ...) becomes abbreviation-only: "NO" still maps to the tree's NO,
    "no" maps to nothing (see the module docstring)."""
    stop = {key_of(w) for w in stop_keys}
    ents = sorted((nid, n) for nid, n in tree.nodes.items() if n.kind == "entity")
    norm_keys = {key_of(n.members[0]) for _, n in ents}
    out = [MatchEntry(n.members[0], (n.members[0], nid), key_of(n.members[0]) in stop) for nid, n in ents]
    for nid, n in ents:
        k = key_of(n.name)
        if k != key_of(n.members[0]) and k not in norm_keys:
            out.append(MatchEntry(n.name, (n.members[0], nid), k in stop))
    return out


def stop_key_report(matcher: EntityMatcher, tree, stop_keys) -> dict:
    """What the stop keys cost, from a matcher built by `tree_entries(tree, stop_keys)` after its
    scans: per affected tree entity (by norm) its name, node, tree frequency, the abbreviation-only
    keys, the upper-case hits kept and the function-word hits suppressed; totals beside."""
    entities: dict[str, dict] = {}
    for entry, kept, suppressed in matcher.abbreviation_counts():
        norm, nid = entry.payload
        node = tree.nodes[nid]
        row = entities.setdefault(norm, {"name": node.name, "node": nid, "frequency": node.frequency,
                                         "keys": [], "abbreviation_hits": 0, "suppressed_hits": 0})
        row["keys"].append(entry.surface)
        row["abbreviation_hits"] += kept
        row["suppressed_hits"] += suppressed
    entities = dict(sorted(entities.items()))
    return {"configured": len(stop_keys), "entities_affected": len(entities),
            "entities_never_matched": sum(r["abbreviation_hits"] == 0 for r in entities.values()),
            "abbreviation_hits": sum(r["abbreviation_hits"] for r in entities.values()),
            "suppressed_hits": sum(r["suppressed_hits"] for r in entities.values()),
            "entities": entities}
