"""Rule-based quality filters (paper §3.1), Gopher-style.

Each rule takes the (already normalized) text and returns a rejection reason or None, so the
stage can count and quarantine records per rule. Thresholds come from `FilterParams` (the
`clean:` section of params.yaml). Rules are checked cheapest first and the first failing one
names the rejection.

Design notes:
- Image-bearing records skip the length rule: their text is a short question/answer or
  empty, and the image is the content. The ratio rules still apply to whatever text they have.
- Thresholds are calibrated on the real corpus, not copied from web-text papers: Gopher's
  0.20/0.18/0.16 top-n-gram limits rejected 1.7% of MedQuAD answers and 6% of IU-Xray
  reports, all legitimate on inspection (medical text repeats long entity names such as
  "oral cavity and oropharyngeal cancer"); +0.10 still catches real repetition spam.
- Gopher's duplicated-10-gram limit (0.10) rejected 3.7% of the corpus, much of it legitimate
  (long syndrome names; CancerGov pages whose "key points" list reappears as section headings,
  0.3-0.5). At 0.50 it rejects ~0.6%: documents that really repeat themselves (an IU-Xray
  report whose findings are pasted again as its impression, NIHSeniorHealth lists extracted
  twice, with and without bullets).
- Ratios use whole-text C-level regex passes (no per-character Python loops), so a 25 MB
  corpus costs a few seconds. The n-gram repetition rules look at the first
  `MAX_WORDS_ANALYZED` words only: they measure a document-level property that a prefix of
  200k words estimates well, and counting every n-gram of a 10 MB single-line document would
  cost hundreds of MB for no better decision.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

MAX_WORDS_ANALYZED = 200_000

# Markup and junk symbols, not prose punctuation: biomedical abstracts are legitimately full
# of ".,;:()[]-/%+=" (chemical names, statistics, citations, our own [PHONE] placeholders),
# and counting those rejected 0.4% of clean PubTator abstracts on the real data. What marks
# extraction junk is HTML/markdown/wiki markup, box drawing, replacement characters and
# ellipses (Gopher's symbol rule counts '#' and ellipses).
_SYMBOL = re.compile(r"[#*|<>{}\\^~`_@$&\u2500-\u259f\ufffd]|\.\.\.|\u2026")
_DIGIT = re.compile(r"\d")
_ASCII_SPACES = " \n\t\r\x0b\x0c"
_UNICODE_SPACE = re.compile("[\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


@dataclass
class FilterParams:
    min_chars: int = 200
    max_symbol_ratio: float = 0.10
    max_digit_ratio: float = 0.25
    max_dup_line_ratio: float = 0.30
    # Gopher's "fraction of characters in the most frequent word n-gram", for n = 2, 3, 4 ...
    max_top_ngram_ratios: list[float] = field(default_factory=lambda: [0.30, 0.28, 0.26])
    # ... applied only to documents with at least this many words (Gopher's 50-word floor):
    # in a 40-word answer one entity name said twice is not spam.
    repetition_min_words: int = 50
    # Gopher's "fraction of characters in duplicated word n-grams" (n = 10 here): catches a
    # document that repeats itself (IU-Xray findings copied as the impression, MedQuAD lists
    # extracted twice, a sentence pasted 1000 times) that the top-n-gram rule cannot see.
    dup_ngram_words: int = 10
    max_dup_ngram_ratio: float = 0.50


def _count(pattern: re.Pattern, text: str) -> int:
    """Matches of `pattern` in `text`, counted in C (subn) without building a list."""
    return pattern.subn("", text)[1]


def _content_chars(text: str) -> int:
    """Characters that are not whitespace (str.isspace), the denominator of the ratio rules.

    Counted with str.count per ASCII space char plus one regex for the rare Unicode ones: as
    fast as "".join(text.split()) but without a list of every word (90 MB for a 10 MB line).
    """
    if not text:
        return 0
    return len(text) - sum(text.count(c) for c in _ASCII_SPACES) - _count(_UNICODE_SPACE, text)


def symbol_ratio(text: str) -> float:
    """Markup/junk symbols (see `_SYMBOL`) per non-whitespace character."""
    n = _content_chars(text)
    return _count(_SYMBOL, text) / n if n else 0.0


def digit_ratio(text: str) -> float:
    """Share of non-whitespace characters that are digits (tables, ids, numeric dumps)."""
    n = _content_chars(text)
    return _count(_DIGIT, text) / n if n else 0.0


def dup_line_ratio(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line (boilerplate, scraped menus)."""
    lines = [ln for ln in (s.strip() for s in text.split("\n")) if ln]
    if len(lines) < 2:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


def top_ngram_ratio(words: list[str], n: int) -> float:
    """Gopher: characters covered by the most frequent word n-gram / characters of all words.

    An n-gram that occurs once is not repetition, so the ratio is 0 unless the top count > 1.
    """
    if len(words) < n:
        return 0.0
    counts = Counter(zip(*(words[i:] for i in range(n))))
    gram, freq = counts.most_common(1)[0]
    if freq < 2:
        return 0.0
    total = sum(map(len, words))
    return freq * sum(map(len, gram)) / total if total else 0.0


def dup_ngram_ratio(words: list[str], n: int) -> float:
    """Gopher: characters of the words covered by any word n-gram that occurs more than once,
    over the characters of all words (overlapping duplicates are counted once)."""
    if len(words) < n:
        return 0.0
    grams = list(zip(*(words[i:] for i in range(n))))
    counts = Counter(grams)
    if counts.most_common(1)[0][1] < 2:
        return 0.0
    covered = bytearray(len(words))
    run = b"\x01" * n
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i:i + n] = run
    total = sum(map(len, words))
    dup = sum(len(w) for w, c in zip(words, covered) if c)
    return dup / total if total else 0.0


def _words(text: str) -> list[str]:
    return text.split(None, MAX_WORDS_ANALYZED)[:MAX_WORDS_ANALYZED]


# ---- the rules: each returns its rejection reason or None ---------------------------------
def rule_too_short(text: str, p: FilterParams) -> str | None:
    return "too_short" if len(text) < p.min_chars else None


def rule_symbol_ratio(text: str, p: FilterParams) -> str | None:
    return "symbol_ratio" if symbol_ratio(text) > p.max_symbol_ratio else None


def rule_digit_ratio(text: str, p: FilterParams) -> str | None:
    return "digit_ratio" if digit_ratio(text) > p.max_digit_ratio else None


def rule_dup_line_ratio(text: str, p: FilterParams) -> str | None:
    return "dup_line_ratio" if dup_line_ratio(text) > p.max_dup_line_ratio else None


def rule_top_ngram_ratio(text: str, p: FilterParams) -> str | None:
    words = _words(text)
    if len(words) < p.repetition_min_words:
        return None
    for n, limit in enumerate(p.max_top_ngram_ratios, start=2):
        if top_ngram_ratio(words, n) > limit:
            return "top_ngram_ratio"
    return None


def rule_dup_ngram_ratio(text: str, p: FilterParams) -> str | None:
    words = _words(text)
    if len(words) < p.repetition_min_words:
        return None
    return "dup_ngram_ratio" if dup_ngram_ratio(words, p.dup_ngram_words) > p.max_dup_ngram_ratio else None


RATIO_RULES = (rule_symbol_ratio, rule_digit_ratio, rule_dup_line_ratio, rule_top_ngram_ratio,
               rule_dup_ngram_ratio)


def check(text: str, params: FilterParams, *, has_images: bool = False) -> str | None:
    """The first rule `text` fails (a rejection reason), or None if it passes them all."""
    if not has_images and rule_too_short(text, params):
        return "too_short"
    if not text:
        return None  # an image-only record: nothing left to judge
    for rule in RATIO_RULES:
        reason = rule(text, params)
        if reason:
            return reason
    return None


def explain(text: str, reason: str, params: FilterParams) -> str:
    """A human-readable rejection detail: the measured value against its limit."""
    if reason == "too_short":
        return f"{len(text)} chars < min_chars={params.min_chars}"
    if reason == "symbol_ratio":
        return f"symbol ratio {symbol_ratio(text):.3f} > {params.max_symbol_ratio}"
    if reason == "digit_ratio":
        return f"digit ratio {digit_ratio(text):.3f} > {params.max_digit_ratio}"
    if reason == "dup_line_ratio":
        return f"duplicated-line ratio {dup_line_ratio(text):.3f} > {params.max_dup_line_ratio}"
    if reason == "top_ngram_ratio":
        words = _words(text)
        for n, limit in enumerate(params.max_top_ngram_ratios, start=2):
            r = top_ngram_ratio(words, n)
            if r > limit:
                return f"top {n}-gram covers {r:.3f} of characters > {limit}"
    if reason == "dup_ngram_ratio":
        r = dup_ngram_ratio(_words(text), params.dup_ngram_words)
        return (f"duplicated {params.dup_ngram_words}-grams cover {r:.3f} of characters "
                f"> {params.max_dup_ngram_ratio}")
    return reason
