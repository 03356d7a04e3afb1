"""The quality classifier measured on real text, beside the bootstrap's synthetic hold-out figure.

    labels = load_review_labels(params)                       # first: a bad file fails fast
    ev = RealEvaluation(params, threshold, seed, SeenTexts(pool + rejected), labels)
    ev.observe(rec, score)                                    # every scored record, after its decision
    extra = ev.finish(out_dir, rejected_entries, result, fasttext_params)

Why: the bootstrap's `final_accuracy` is measured on a hold-out that is half degraded copies (made
by the degraders that made the training negatives) and half real texts labelled by the verifier
that labelled the training data, so it mostly measures how well the classifier learned those two.
Here the labels come from elsewhere: provenance (real_holdout.py) and, once someone has reviewed
the exported sample, people (review.py). Pure evaluation: it reads scores the stage has already
acted on and trains separate models in a temporary directory; kept/, rejected/ and
quality_model.bin are the same with `enabled: false` (tests/corpus/quality/test_real_eval.py).

Writes real_holdout.json (everything, with intervals) and review_sample.jsonl; returns the
summary.json fields (`real_*`, `final_balanced_accuracy`, `review_*`, `reviewed_*`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

from tasks.common.config import resolve
from tasks.common.io import write_json
from tasks.corpus.quality.bootstrap import BootstrapResult
from tasks.corpus.quality.classifier import FastTextParams
from tasks.corpus.quality.real_holdout import (
    RULE_REASONS,
    CuratedTally,
    SeenTexts,
    low_families,
    report,
    score_low_families,
)
from tasks.corpus.quality.review import ReviewSampler, ReviewTally, load_labels, review_report


@dataclasses.dataclass
class RealEvalParams:
    enabled: bool = True
    # provenance "high": records from these sources (curated QA, abstracts, radiology reports)
    curated_sources: list[str] = dataclasses.field(
        default_factory=lambda: ["medquad", "pubtator", "medline", "iu_xray"])
    # provenance "low": the clean stage's quality-rule rejections (not too_short, dedup, decontam:
    # those are short or good text, see real_holdout.py)
    low_reasons: list[str] = dataclasses.field(default_factory=lambda: list(RULE_REASONS))
    max_low_per_reason: int = 2000       # bounds memory and retraining cost on a large corpus
    review_per_stratum: int = 50         # exported for human review per decision stratum (0 = none)
    review_bands: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.99])  # kept-score bands
    review_max_chars: int = 1500         # text shown to the reviewer
    review_labels: str = ""              # reviewed JSONL from the project root (DVC-tracked); "" = none
                                         # (read only when enabled)

    def __post_init__(self) -> None:
        b = self.review_bands
        if any(not 0.0 < x < 1.0 for x in b) or any(x >= y for x, y in zip(b, b[1:])):
            raise ValueError(f"review_bands {b} must be increasing, each in (0, 1)")
        if self.max_low_per_reason < 1 or self.review_per_stratum < 0 or self.review_max_chars < 1:
            raise ValueError("max_low_per_reason and review_max_chars must be >= 1, review_per_stratum >= 0")


def load_review_labels(params: RealEvalParams) -> dict[str, str | None] | None:
    """The reviewed labels when configured (and the evaluation is on), else None."""
    if not params.enabled or not params.review_labels:
        return None
    return load_labels(resolve(params.review_labels), params.review_labels)


def synthetic_balanced_accuracy(last_round: dict, holdout: dict) -> float | None:
    """The bootstrap hold-out's balanced accuracy, from its final-round accuracy and recall and
    its class counts (tp = recall * n_high; tn = accuracy * size - tp): the same prevalence-free
    figure as the real hold-out's, so the two can be compared."""
    n_high = holdout["real_high"]
    n_low = holdout["size"] - n_high
    if not n_high or not n_low:
        return None
    tp = round(last_round["recall"] * n_high)
    tn = round(last_round["accuracy"] * holdout["size"]) - tp
    return round((tp / n_high + tn / n_low) / 2, 4)


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class RealEvaluation:
    def __init__(self, params: RealEvalParams, threshold: float, seed: int, seen: SeenTexts,
                 labels: dict[str, str | None] | None = None):
        self.params, self.threshold, self.seed, self.seen = params, threshold, seed, seen
        self.curated = CuratedTally(params.curated_sources)
        self.sampler = ReviewSampler(threshold, params.review_bands, params.review_per_stratum,
                                     params.review_max_chars, seed)
        self.reviews = ReviewTally(labels) if labels is not None else None
        self.seen_scored = 0

    def observe(self, rec: dict, score: float) -> None:
        """One scored record and the (rounded) score the stage decided on."""
        seen = rec["text"] in self.seen
        if self.reviews is not None:
            self.reviews.observe(rec, score, seen)
        if seen:
            self.seen_scored += 1
            return
        self.curated.observe(rec, score >= self.threshold)
        self.sampler.observe(rec, score)

    def finish(self, out: Path, rejected_entries: Iterator[tuple[str, str]], result: BootstrapResult,
               fasttext: FastTextParams) -> dict:
        families = low_families(rejected_entries, self.params.max_low_per_reason, self.seed)
        low = score_low_families(families, result.train_set, fasttext, result.train_seed, result.model)
        holdout = report(self.curated, low, self.threshold, self.seen_scored)
        last = result.rounds[-1]
        synthetic = {"accuracy": round(last["accuracy"], 4),
                     "balanced_accuracy": synthetic_balanced_accuracy(last, result.holdout),
                     # the synthetic hold-out's two halves (absent when a half is empty)
                     "accuracy_real_verifier_labels": _rounded(last.get("accuracy_real")),
                     "accuracy_degraded": _rounded(last.get("accuracy_degraded")),
                     **{k: result.holdout[k] for k in ("size", "real", "real_high", "degraded")}}
        doc = {"labels": {"high": f"provenance: unseen scored texts from {self.params.curated_sources}",
                          "low": f"clean-stage rule rejections {self.params.low_reasons}",
                          "review": "human labels of the exported sample (review_labels)"},
               "threshold": self.threshold, "holdout": holdout, "synthetic_holdout": synthetic}
        extra = {
            "real_accuracy": holdout["accuracy"]["rate"], "real_accuracy_ci95": holdout["accuracy"]["ci95"],
            "real_balanced_accuracy": holdout["balanced_accuracy"]["rate"],
            "real_balanced_accuracy_ci95": holdout["balanced_accuracy"]["ci95"],
            "real_recall_high": holdout["recall_high"]["rate"], "real_recall_high_ci95": holdout["recall_high"]["ci95"],
            "real_recall_low": holdout["recall_low"]["rate"], "real_recall_low_ci95": holdout["recall_low"]["ci95"],
            "real_n_high": holdout["recall_high"]["n"], "real_n_low": holdout["recall_low"]["n"],
            "final_balanced_accuracy": synthetic["balanced_accuracy"],
        }
        if self.params.review_per_stratum:
            doc["review_sample"] = self.sampler.write(out / "review_sample.jsonl")
            extra["review_sample_rows"] = doc["review_sample"]["rows"]
        if self.reviews is not None:
            reviewed = review_report(self.reviews, self.threshold, self.params.review_bands,
                                     self.sampler.population)
            doc["review"] = {"labels_file": self.params.review_labels, **reviewed}
            extra.update(reviewed_accuracy=reviewed["accuracy"]["rate"],
                         reviewed_accuracy_ci95=reviewed["accuracy"]["ci95"],
                         reviewed_n=reviewed["accuracy"]["n"],
                         reviewed_population_weighted_accuracy=reviewed["population_weighted_accuracy"])
        write_json(out / "real_holdout.json", doc)
        return extra
