"""Deliberately degraded copies of real texts: synthetic negatives for the quality classifier.

Why: after the clean stage there are few real low-quality texts left, and rule-rejected ones only
show what the rules already catch. Degrading real medical text gives negatives with the *same
vocabulary* as the positives, so the classifier must learn form (order, spelling, boilerplate,
repetition, fragments) rather than topic. These texts are training/evaluation data only and are
never written as output records. Every degrader is a pure function of (text, rng).
"""

from __future__ import annotations

import random
import string
from typing import Callable

NAV_ITEMS = ("Home", "About us", "Contact", "Privacy Policy", "Terms of Use", "Cookie settings",
             "Log in", "Sign up", "Subscribe to our newsletter", "Share on Facebook", "Tweet",
             "Print this page", "Back to top", "Skip to main content", "Related links",
             "Advertisement", "© 2024 All rights reserved", "Click here for more", "Next »",
             "« Previous", "Site map", "Accessibility", "FAQ", "Search", "Menu")
NOISE_CHARS = string.ascii_letters + string.digits + "#@$%^&*~|{}<>_=+"


def word_shuffle(text: str, rng: random.Random) -> str:
    ws = text.split()
    rng.shuffle(ws)
    return " ".join(ws)


def char_noise(text: str, rng: random.Random) -> str:
    """Substitute, delete or insert characters at a 10-20% rate (OCR / encoding garbage)."""
    rate = rng.uniform(0.10, 0.20)
    out = []
    for c in text:
        if c.isspace() or rng.random() >= rate:
            out.append(c)
            continue
        op = rng.randrange(3)
        if op == 0:
            out.append(rng.choice(NOISE_CHARS))
        elif op == 2:
            out.append(c + rng.choice(NOISE_CHARS))
        # op == 1: deletion
    return "".join(out)


def boilerplate(text: str, rng: random.Random) -> str:
    """Navigation/footer spam around a small piece of the original (a scraped page shell)."""
    ws = text.split()
    keep = " ".join(ws[:rng.randint(5, 20)])
    menu = [rng.choice(NAV_ITEMS) for _ in range(rng.randint(10, 25))]
    cut = rng.randint(0, len(menu))
    sep = rng.choice((" | ", "\n", " · "))
    return sep.join(menu[:cut] + [keep] + menu[cut:])


def truncate(text: str, rng: random.Random) -> str:
    """A fragment cut mid-sentence (and often mid-word): a broken scrape or OCR page edge."""
    ws = text.split()
    frag = " ".join(ws[:rng.randint(4, 15)])
    return frag[:max(1, len(frag) - rng.randint(0, 3))].rstrip(".!?")


def repetition(text: str, rng: random.Random) -> str:
    """A phrase repeated many times (templated spam, generation loops)."""
    ws = text.split()
    n = rng.randint(4, 12)
    start = rng.randrange(max(1, len(ws) - n))
    phrase = " ".join(ws[start:start + n])
    return " ".join([phrase] * rng.randint(5, 15))


DEGRADERS: dict[str, Callable[[str, random.Random], str]] = {
    "word_shuffle": word_shuffle,
    "char_noise": char_noise,
    "boilerplate": boilerplate,
    "truncate": truncate,
    "repetition": repetition,
}


def degrade(text: str, rng: random.Random, kinds: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(kind, degraded text) with the kind drawn uniformly from `kinds` (default: all)."""
    kinds = tuple(sorted(kinds or DEGRADERS))
    unknown = set(kinds) - set(DEGRADERS)
    if unknown:
        raise ValueError(f"unknown degrader(s) {sorted(unknown)}; known: {sorted(DEGRADERS)}")
    kind = rng.choice(kinds)
    return kind, DEGRADERS[kind](text, rng)


def degraded_copies(texts: list[str], n: int, rng: random.Random,
                    kinds: tuple[str, ...] | None = None) -> list[str]:
    """`n` degraded copies of texts drawn (with replacement) from `texts`."""
    if not texts:
        return []
    return [degrade(rng.choice(texts), rng, kinds)[1] for _ in range(n)]


# Default kinds for the classifier. `repetition` is left out on purpose: fastText averages the
# embeddings of a text's n-grams, so a phrase repeated k times looks the same as the phrase once,
# and labelling it "low" only teaches the model to penalise real medical vocabulary (measured on
# MedQuAD, 1000 seeds, 2 rounds: final hold-out accuracy 0.90 with it, 0.95 without; the
# classifier catches only ~54% of repeated texts either way). Repetition is the clean stage's job
# (dup_line_ratio / top_ngram_ratio) and the LocalVerifier's (duplicate 5-grams).
DEFAULT_KINDS = ("boilerplate", "char_noise", "truncate", "word_shuffle")
