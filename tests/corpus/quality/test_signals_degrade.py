"""Degraders, seed labelling and the LocalVerifier on real MedQuAD text."""

from __future__ import annotations

import random

import pytest

from tasks.corpus.quality.classifier import to_line
from tasks.corpus.quality.degrade import DEFAULT_KINDS, DEGRADERS, degrade, degraded_copies
from tasks.corpus.quality.signals import build_vocab, is_seed_positive, signals
from tasks.corpus.quality.verifiers import LocalVerifier


@pytest.mark.parametrize("kind", sorted(DEGRADERS))
def test_each_degrader_changes_text_and_is_deterministic(kind, medquad):
    text = medquad[3]
    a = DEGRADERS[kind](text, random.Random(1))
    b = DEGRADERS[kind](text, random.Random(1))
    assert a == b and a != text and a.strip()


def test_degrader_specifics(medquad):
    text, rng = medquad[5], random.Random(0)
    assert sorted(DEGRADERS["word_shuffle"](text, rng).split()) == sorted(text.split())
    assert len(DEGRADERS["truncate"](text, rng).split()) <= 15
    rep = DEGRADERS["repetition"](text, rng)
    assert signals(rep)["dup_5gram_frac"] > 0.5
    assert signals(DEGRADERS["boilerplate"](text, rng))["boilerplate_per_word"] > 0.1


def test_degrade_kinds_and_unknown_kind(medquad):
    rng = random.Random(3)
    kinds = {degrade(medquad[0], rng, DEFAULT_KINDS)[0] for _ in range(60)}
    assert kinds == set(DEFAULT_KINDS)
    with pytest.raises(ValueError, match="unknown degrader"):
        degrade(medquad[0], rng, ("nope",))
    copies = [degraded_copies(medquad[:3], 5, random.Random(1)) for _ in range(2)]
    assert copies[0] == copies[1] and len(copies[0]) == 5
    assert degraded_copies([], 5, rng) == []


def test_seed_positive_rules(medquad):
    rate = sum(map(is_seed_positive, medquad[:300])) / 300
    assert 0.3 < rate < 0.95               # stricter than clean, but most real answers pass
    rng = random.Random(0)
    for kind, fn in DEGRADERS.items():
        fooled = sum(is_seed_positive(fn(t, rng)) for t in medquad[:100])
        assert fooled <= 3, kind
    assert not is_seed_positive("The weather in Paris is nice today. We went to the park. " * 10)


def test_local_verifier_separates_real_from_degraded(medquad):
    v = LocalVerifier(vocab=build_vocab(medquad))
    answer = medquad[0]
    assert v.reasons(answer) == [], v.reasons(answer)
    assert v.verify([answer]) == ["high"]
    rng = random.Random(0)
    real = v.verify(medquad[:300])
    assert real.count("high") / 300 > 0.85
    for kind, fn in DEGRADERS.items():
        labels = v.verify([fn(t, rng) for t in medquad[:100]])
        assert labels.count("low") >= 95, kind
    assert v.stats["verified"] == 801 and v.failures == []


def test_to_line_is_one_line_and_marks_junk():
    line = to_line("Line one, with 12 mg.\nLine t#o\r\nand d@ta")
    assert "\n" not in line and "\r" not in line
    assert line == "line one , with 00 mg . __nl__ line __junk__ __nl__ and __junk__"
