"""Cheap text-quality signals that need no model: Gopher-style rules, medical-term density,
a fluency proxy and a noise (out-of-vocabulary) proxy.

These signals are deliberately *different in kind* from what the fastText classifier sees (a bag
of word n-grams): they look at document statistics, grammar-like word order and spelling. That is
what makes them usable as an independent second opinion (LocalVerifier) and as stricter-than-clean
seed rules for the first positives.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from itertools import compress
from typing import Iterable

WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)*")
ALPHA_WORD = re.compile(r"[A-Za-z]")
SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
# A token mixing letters with markup/garbage symbols is OCR/encoding noise. Digits inside words
# are not counted: biomedical names (S1P, ASIC1a, BRCA1, IL-6) are full of them.
JUNK_SYMBOLS = re.compile(r"[#@$%^&*~{}<>_=+|\\]")
GOPHER_STOPWORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
# Determiners are followed by a noun phrase in grammatical English; a determiner directly followed by
# another function word ("the of", "a and") is rare in real text and common in shuffled text.
DETERMINERS = {"the", "a", "an", "this", "these", "those", "its", "their", "his", "her", "our"}
FUNCTION_WORDS = {"of", "in", "to", "for", "with", "on", "by", "from", "at", "and", "or", "is",
                  "are", "was", "were", "be", "the", "a", "an", "that", "which", "as", "it", "not"}
# Medical vocabulary by stems and affixes (no external list: works on any corpus, no data licence).
MED_STEMS = (
    "cardi", "neur", "hepat", "nephr", "renal", "gastr", "derm", "hema", "hemo", "haem", "immun",
    "onco", "pulmon", "respirat", "thromb", "arter", "vascul", "endocrin", "glyc", "insulin",
    "lymph", "leuk", "tumor", "tumour", "cancer", "carcinom", "diagnos", "therap", "symptom",
    "syndrom", "disease", "disorder", "infect", "viru", "viral", "bacteri", "patient", "clinic",
    "medic", "drug", "dose", "surg", "treat", "chronic", "acute", "gene", "genetic", "mutat",
    "chromosom", "protein", "enzym", "hormon", "blood", "tissue", "organ", "cell", "muscle",
    "bone", "brain", "heart", "lung", "liver", "kidney", "skin", "pain", "fever", "inflamm",
    "antibod", "antibiot", "vaccin", "pharm", "physician", "doctor", "nurs", "hospital", "health",
    "prognos", "biops", "radiat", "chemo", "diet", "nutri", "pregnan", "fetal", "pediatr",
    "spinal", "nerve", "seizure", "stroke", "diabet", "obes", "allerg", "asthma", "arthrit",
    "anemi", "anaemi", "steroid", "metabol", "cholesterol", "lesion", "mri", "scan", "x-ray",
    "injur", "wound", "sclerosis", "dementia", "alzheimer", "parkinson", "epilep", "psychiatr",
    "anxiety", "depress", "hypert", "hypo", "hyper", "cyst", "polyp", "ulcer", "virus", "plasma",
)
MED_SUFFIXES = ("itis", "emia", "aemia", "oma", "omas", "osis", "oses", "pathy", "ectomy",
                "otomy", "ostomy", "plasty", "scopy", "algia", "plasia", "trophy", "uria", "penia",
                "cytes", "cyte", "ologist", "ology", "genic", "ism")
BOILERPLATE = re.compile(
    r"\b(home|about us|contact( us)?|privacy policy|terms of (use|service)|cookies?|log ?in|"
    r"sign (up|in)|subscribe|newsletter|share on|tweet|print this page|back to top|skip to|"
    r"related links|advertisement|all rights reserved|click here|site ?map|accessibility|"
    r"next »|« previous|menu|search)\b|©|\|", re.IGNORECASE)


# One alternation search finds a stem anywhere in the word exactly when `any(s in w for s in
# MED_STEMS)` would, in one C-level pass instead of ~130 Python-level substring tests.
_MED_STEM = re.compile("|".join(map(re.escape, MED_STEMS)))
# Words that start with a letter: the letter alternative of WORD on its own (the digit alternative
# never contains a letter, so findall meets the same letter words in the same order).
_LETTER_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
# A whitespace-separated token holding both a letter and a junk symbol, counted in C (signals'
# junk_word_frac; re's \S is the complement of str.isspace, what str.split() splits on).
_JUNK_TOKEN = re.compile(r"(?<!\S)(?=\S*[#@$%^&*~{}<>_=+|\\])(?=\S*[A-Za-z])\S+")
_AFTER_DETERMINER_BAD = FUNCTION_WORDS | {"."}


def words(text: str) -> list[str]:
    return WORD.findall(text)


@functools.lru_cache(maxsize=1 << 17)
def is_medical(word: str) -> bool:
    """A medical-looking word (stem inside, or medical suffix); cached: a corpus repeats its words."""
    w = word.lower()
    return len(w) > 3 and (_MED_STEM.search(w) is not None or w.endswith(MED_SUFFIXES))


def ngram_dup_fraction(ws: list[str], n: int = 5) -> float:
    """Fraction of word n-grams that occur more than once (Gopher's duplicate n-gram rule)."""
    grams = list(zip(*(ws[i:] for i in range(n)))) if len(ws) >= n else []
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


def build_vocab(texts: Iterable[str], min_doc_freq: int = 2) -> set[str]:
    """Lower-cased words seen in at least `min_doc_freq` documents of the (real) corpus.

    Character noise makes words that occur nowhere else, so they fall out of this vocabulary;
    degraded copies are never passed here.
    """
    df: Counter[str] = Counter()
    for t in texts:
        df.update(set(map(str.lower, _LETTER_WORD.findall(t))))
    return {w for w, c in df.items() if c >= min_doc_freq}


def signals(text: str, vocab: set[str] | None = None) -> dict[str, float]:
    """All document-level signals of `text` (floats, deterministic)."""
    ws = words(text)
    n = len(ws)
    low = [w.lower() for w in ws]
    alpha = [w for w in ws if ALPHA_WORD.match(w)]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    sentences = [s for s in SENTENCE_SPLIT.split(text.strip()) if s]
    # determiner followed by a function word (or by the end of the text): C-level maps, no loop
    is_det = list(map(DETERMINERS.__contains__, low))
    det_total = sum(is_det)
    det_bad = sum(map(_AFTER_DETERMINER_BAD.__contains__, compress(low[1:] + ["."], is_det)))
    alpha_low = [w.lower() for w in alpha]
    tokens = text.split()
    junk = _JUNK_TOKEN.subn("", text)[1]
    out = {
        "n_words": float(n),
        "alpha_word_frac": len(alpha) / n if n else 0.0,
        "mean_word_len": sum(map(len, ws)) / n if n else 0.0,
        "stopwords_present": float(len(GOPHER_STOPWORDS.intersection(low))),
        "symbol_word_ratio": (text.count("#") + text.count("...") + text.count("…")) / max(n, 1),
        "bullet_line_frac": (sum(ln[0] in "-*•·" for ln in lines) / len(lines)) if lines else 0.0,
        "ellipsis_line_frac": (sum(ln.endswith(("...", "…")) for ln in lines) / len(lines))
        if lines else 0.0,
        "sentence_ends": float(len(SENTENCE_END.findall(text))),
        "dup_5gram_frac": ngram_dup_fraction(low, 5),
        "medical_density": sum(map(is_medical, alpha)) / len(alpha) if alpha else 0.0,
        "bad_determiner_rate": det_bad / det_total if det_total else 0.0,
        "n_determiners": float(det_total),
        "capitalized_sentence_frac": (sum(s[0].isupper() or not s[0].isalpha() for s in sentences)
                                      / len(sentences)) if sentences else 0.0,
        "boilerplate_per_word": len(BOILERPLATE.findall(text)) / max(n, 1),
        "junk_word_frac": junk / len(tokens) if tokens else 0.0,
    }
    if vocab is not None:
        out["oov_rate"] = (sum(w not in vocab for w in alpha_low) / len(alpha_low)) if alpha_low else 1.0
    return out


def gopher_failures(s: dict[str, float], min_words: int, max_dup_5gram_frac: float = 0.15) -> list[str]:
    """Names of the Gopher quality rules (Rae et al., 2021) the signals fail.

    Gopher's duplicate 5-gram limit is 0.15; callers may relax it because curated medical pages
    legitimately repeat their "Key Points" summary in the body (MedQuAD: ~20% of answers > 0.15).
    """
    fails = []
    if s["n_words"] < min_words:
        fails.append("too_few_words")
    if not 3 <= s["mean_word_len"] <= 10:
        fails.append("mean_word_len")
    if s["symbol_word_ratio"] > 0.1:
        fails.append("symbol_word_ratio")
    if s["bullet_line_frac"] > 0.9:
        fails.append("bullet_lines")
    if s["ellipsis_line_frac"] > 0.3:
        fails.append("ellipsis_lines")
    if s["alpha_word_frac"] < 0.8:
        fails.append("alpha_word_frac")
    if s["stopwords_present"] < 2:
        fails.append("stopwords")
    if s["dup_5gram_frac"] > max_dup_5gram_frac:
        fails.append("dup_5grams")
    return fails


def is_seed_positive(text: str, *, min_words: int = 60, min_medical_density: float = 0.06) -> bool:
    """Stricter-than-clean rules for the first positives: long enough, sentence-like, medical."""
    s = signals(text)
    return (not gopher_failures(s, min_words)
            and s["alpha_word_frac"] >= 0.85
            and s["sentence_ends"] >= 3
            and s["medical_density"] >= min_medical_density
            and s["bad_determiner_rate"] <= 0.05
            and s["boilerplate_per_word"] <= 0.02
            and s["junk_word_frac"] <= 0.01)
