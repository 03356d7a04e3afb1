"""Human review of the classifier's decisions: a seeded sample exported for labelling, and the
labels imported back as a DVC-tracked file to measure accuracy against people, not rules.

Export (`review_sample.jsonl`, every run): texts the bootstrap never saw, stratified by the
classifier's decision: `rejected` (score < threshold, dropped as low_quality) and kept texts by
score band (`review_bands`, e.g. kept_0.5-0.9, kept_0.9-0.99, kept_0.99-1), `review_per_stratum`
per stratum drawn by seeded reservoir sampling. Each row is {id, source, text (the first
`review_max_chars` characters), truncated, label: null}, rows shuffled across strata. The score and
stratum are left out on purpose so a reviewer labels blind; they are recomputed at import.

Import (`review_labels`: a JSONL path from the project root, e.g. reviews/quality_labels.jsonl; ""
= none): rows {id, label: "high" | "low" | null} (null = not reviewed yet, so a copy of the export
with some labels filled in is a valid file; other keys are ignored). Each labelled id is looked up
in this run's scored records; its stratum and decision come from this run's score, so the figures
always describe the current classifier. Reported: accuracy (decision == label) overall and per
stratum with Wilson intervals, and a population-weighted accuracy (each stratum's accuracy weighted
by how many unseen scored texts fall in it: the sample over-represents rejects, the corpus does
not). Ids not among this run's scored records, and ids whose text the bootstrap saw (a changed
pool), are listed and left out. A configured file that is missing or malformed is an error.

What the labels mean: one reviewer's judgement of "fit for medical pre-training" on the shown head
of the text; nothing else in the stage produces them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from tasks.common.io import dumps
from tasks.corpus.quality.classifier import HIGH, LOW
from tasks.corpus.quality.rates import rate
from tasks.corpus.quality.reservoir import Reservoir

REJECTED = "rejected"


class ReviewLabelsError(ValueError):
    """A configured review-labels file that cannot be used as it is."""


def stratum_names(threshold: float, bands: list[float]) -> list[str]:
    edges = [threshold, *bands, 1]
    return [REJECTED] + [f"kept_{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:])]


def stratum_of(score: float, threshold: float, bands: list[float]) -> str:
    """The stratum of a score as the stage rounds it (4 places)."""
    if score < threshold:
        return REJECTED
    edges = [threshold, *bands, 1]
    i = sum(score >= b for b in bands)
    return f"kept_{edges[i]:g}-{edges[i + 1]:g}"


class ReviewSampler:
    """Seeded reservoir samples (Algorithm R) of unseen scored texts, one per stratum."""

    def __init__(self, threshold: float, bands: list[float], per_stratum: int, max_chars: int, seed: int):
        self.threshold, self.bands, self.per_stratum, self.max_chars = threshold, bands, per_stratum, max_chars
        self.seed = seed
        self.strata = {s: Reservoir(per_stratum, random.Random(f"{seed}:review:{s}"))
                       for s in stratum_names(threshold, bands)}

    @property
    def population(self) -> Counter[str]:
        """Unseen scored texts per stratum (the strata that received any)."""
        return Counter({s: r.seen for s, r in self.strata.items() if r.seen})

    def observe(self, rec: dict, score: float) -> None:
        self.strata[stratum_of(score, self.threshold, self.bands)].offer(self._row(rec))

    def _row(self, rec: dict) -> dict:
        text = rec["text"]
        return {"id": rec["id"], "source": rec["source"], "text": text[:self.max_chars],
                "truncated": len(text) > self.max_chars, "label": None}

    def rows(self) -> list[dict]:
        """All sampled rows, shuffled with a seeded generator so strata are interleaved."""
        rows = [r for res in self.strata.values() for r in sorted(res.items, key=lambda r: r["id"])]
        random.Random(f"{self.seed}:review-order").shuffle(rows)
        return rows

    def write(self, path: Path) -> dict:
        rows = self.rows()
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(dumps(row) + "\n")
        return {"rows": len(rows), "strata": {s: {"population": r.seen, "sampled": len(r.items)}
                                              for s, r in self.strata.items()}}


def load_labels(path: Path, configured: str) -> dict[str, str | None]:
    """{id: "high" | "low" | None} from a review-labels JSONL file; any problem is an error that
    names the file, the line and the parameter."""
    where = f"quality.real_eval.review_labels={configured!r}"
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}: {path} does not exist. Label review_sample.jsonl (set each row's label to "
            f"\"high\" or \"low\"), save it at that path and track it with DVC, or set it to \"\".")
    labels: dict[str, str | None] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ReviewLabelsError(f"{path}:{n}: not JSON ({e.msg}) [{where}]") from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
                raise ReviewLabelsError(f"{path}:{n}: expected an object with a non-empty string 'id' [{where}]")
            if "label" not in row or row["label"] not in (HIGH, LOW, None):
                raise ReviewLabelsError(f"{path}:{n}: label must be \"high\", \"low\" or null, "
                                        f"got {row.get('label', '<missing>')!r} [{where}]")
            if row["id"] in labels:
                raise ReviewLabelsError(f"{path}:{n}: id {row['id']!r} appears twice [{where}]")
            labels[row["id"]] = row["label"]
    return labels


class ReviewTally:
    """This run's score of every labelled id, fed one scored record at a time."""

    def __init__(self, labels: dict[str, str | None]):
        self.labels = {i: y for i, y in labels.items() if y is not None}
        self.unreviewed = len(labels) - len(self.labels)
        self.found: dict[str, tuple[float, bool]] = {}   # id -> (score, seen by the bootstrap)

    def observe(self, rec: dict, score: float, seen: bool) -> None:
        if rec["id"] in self.labels:
            self.found[rec["id"]] = (score, seen)


def review_report(tally: ReviewTally, threshold: float, bands: list[float],
                  population: Counter[str]) -> dict:
    """Accuracy of the classifier's decisions against the reviewed labels (see the module doc)."""
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for i, (score, seen) in tally.found.items():
        if seen:
            continue
        s = stratum_of(score, threshold, bands)
        total[s] += 1
        correct[s] += (HIGH if score >= threshold else LOW) == tally.labels[i]
    names = stratum_names(threshold, bands)
    by_stratum = {s: {**rate(correct[s], total[s]), "population": population[s]} for s in names}
    judged = [s for s in names if population[s]]
    weighted = None
    if judged and all(total[s] for s in judged):
        weighted = round(sum(population[s] * correct[s] / total[s] for s in judged)
                         / sum(population[s] for s in judged), 4)
    return {
        "labelled": len(tally.labels), "unreviewed": tally.unreviewed,
        "label_counts": dict(sorted(Counter(tally.labels.values()).items())),
        "not_found": sorted(set(tally.labels) - set(tally.found)),
        "seen_by_bootstrap": sorted(i for i, (_, seen) in tally.found.items() if seen),
        "accuracy": rate(sum(correct.values()), sum(total.values())),
        "by_stratum": by_stratum,
        # None unless every stratum holding unseen texts has reviewed items
        "population_weighted_accuracy": weighted,
    }
