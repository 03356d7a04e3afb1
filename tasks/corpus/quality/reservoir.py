"""Seeded reservoir sampling (Algorithm R), the one implementation the quality stage samples with:
the bootstrap's pool and rejected texts (run.py), the real low-quality families (real_holdout.py)
and the review strata (review.py).

A `Reservoir(k, rng)` keeps a uniform sample of at most k of the items offered to it in one pass,
in bounded memory whatever the stream's length; the sample is a deterministic function of the
items' order and the generator's seed.
"""

from __future__ import annotations

import random
from typing import Iterable, TypeVar

T = TypeVar("T")


class Reservoir:
    def __init__(self, k: int, rng: random.Random):
        self.k, self.rng = k, rng
        self.seen = 0                    # items offered so far
        self.items: list = []

    def offer(self, item) -> None:
        n = self.seen
        self.seen += 1
        if n < self.k:
            self.items.append(item)
        else:
            j = self.rng.randrange(n + 1)
            if j < self.k:
                self.items[j] = item


def reservoir(items: Iterable[T], k: int, rng: random.Random) -> list[T]:
    """A uniform sample of k items in one pass, deterministic given rng."""
    r = Reservoir(k, rng)
    for item in items:
        r.offer(item)
    return r.items
