"""Sentence splitting, tokenization, offset mapping and entity-string checks shared by both extractors."""

from __future__ import annotations

from tasks.extraction.common import (
    check_entity,
    clean_surface,
    dedupe_mentions,
    entity_rejection,
    find_occurrences,
    mention,
    normalize_entity,
    split_sentences,
    tokenize,
)


def sentences(text, **kw):
    return [text[s:e] for s, e in split_sentences(text, **kw)]


def test_split_sentences_abbreviations_newlines_and_offsets():
    text = ("Naloxone reverses the effect of clonidine. In rats, e.g. Wistar, Dr. Smith saw it (Fig. 2). "
            "Vitamin D. The end!\nKey points\n\n  - item one\t")
    got = sentences(text)
    assert got == ["Naloxone reverses the effect of clonidine.",
                   "In rats, e.g. Wistar, Dr. Smith saw it (Fig. 2).",
                   "Vitamin D.", "The end!", "Key points", "- item one"]
    for s, e in split_sentences(text):
        assert text[s:e] == text[s:e].strip() and text[s:e]


def test_split_sentences_lowercase_after_period_and_empty():
    assert sentences("The dose was 2.5 mg. and then stopped.") == ["The dose was 2.5 mg. and then stopped."]
    assert split_sentences("") == [] and split_sentences("  \n\t ") == []


def test_overlong_sentences_are_cut_at_whitespace():
    text = " ".join(["word"] * 500)              # 2499 chars, no sentence end
    spans = split_sentences(text, max_chars=600)
    assert all(e - s <= 600 for s, e in spans) and len(spans) == 5
    assert " ".join(text[s:e] for s, e in spans) == text
    blob = "x" * 1500                           # no whitespace at all: hard cuts
    assert [e - s for s, e in split_sentences(blob, max_chars=600)] == [600, 600, 300]


def test_tokenize_offsets_split_hyphens_and_brackets():
    text = "adriamycin-induced [3H]-naloxone"
    toks = tokenize(text, offset=10)
    assert [t for t, _, _ in toks] == ["adriamycin", "-", "induced", "[", "3H", "]", "-", "naloxone"]
    for t, s, e in toks:
        assert text[s - 10:e - 10] == t


def test_normalize_and_clean():
    assert normalize_entity("  Crohn's\tDISEASE \n") == "crohn's disease"
    assert normalize_entity("ＮａＣｌ") == "nacl"            # NFKC folds full-width forms
    assert clean_surface(' "renal  failure" ') == "renal failure"


def test_check_entity_empty_whitespace_and_10kb():
    assert check_entity("", 100) == "empty"
    assert check_entity(" \t\n ", 100) == "empty"
    assert check_entity(None, 100) == "empty"
    assert check_entity("x" * 10_000, 100) == "too_long"
    assert check_entity("aspirin", 100) is None
    rej = entity_rejection("y" * 10_000, "Drug", "too_long", 100)
    assert rej["reason"] == "too_long" and rej["chars"] == 10_000 and len(rej["text"]) == 101


def test_find_occurrences_word_boundaries_case_and_whitespace():
    s = "Anemia and anemias; ANEMIA in sickle  cell anemia."
    assert find_occurrences(s, "anemia") == [(43, 49)]                  # exact, whole words only
    assert find_occurrences(s, "Anemia") == [(0, 6)]
    assert find_occurrences(s, "sickle cell anemia") == [(30, 49)]     # two spaces in the text
    assert find_occurrences(s, "ANEMIA") == [(20, 26)]
    assert find_occurrences(s, "leukemia") == [] and find_occurrences(s, "") == []
    assert find_occurrences("beta - blocker use", "beta-blocker") == [(0, 14)]


def test_dedupe_mentions_orders_and_removes_duplicates():
    ms = [mention("b", "Disease", 5, 6), mention("x", "Drug", None, None), mention("a", "Disease", 0, 1),
          mention("b", "Disease", 5, 6), mention("X", "Drug", None, None)]
    out = dedupe_mentions(ms)
    assert [(m["text"], m["start"]) for m in out] == [("a", 0), ("b", 5), ("x", None)]
