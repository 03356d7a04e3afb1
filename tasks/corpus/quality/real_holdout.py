"""The provenance hold-out: the classifier's accuracy on real text, with labels that come neither
from the degraders nor from the verifier that made its training labels.

Labels, what they mean and what they do not:

  high  a scored record from a curated source (`curated_sources`: MedQuAD answers, PubTator and
        MEDLINE abstracts, IU-Xray reports) whose text the bootstrap never saw: not in its pool
        sample (where every training positive, verifier-labelled text and degraded copy came
        from, and the synthetic hold-out's real half) and not among its rule-rejected texts. The
        label is the source's curation plus the clean stage's rules having passed it; nobody read
        these texts. Every such text is used, not a sample: the stage scores them anyway, and only
        counts are kept (bounded memory).
  low   a text the clean stage rejected under one of `low_reasons` (symbol/digit ratio, duplicate
        lines, top n-gram share, duplicated n-grams: real junk or real self-repetition). The label
        is that rule's verdict, not a human's: `top_ngram_ratio` in particular also rejects fluent
        answers that repeat a long disease name. These texts never reach the classifier in the
        stage (the rule removed them first); the question answered is whether it would have
        rejected them. `too_short`, dedup and decontamination rejections are not low quality
        (short, or good text removed for another reason) and are left out by default.

Most `low_reasons` are also the stage's seed negatives, so the stage's model has trained on those
very texts. Each such family is scored leave-one-family-out: a model retrained on the stage's final
training set minus that family's texts (same fastText params and seed), for evaluation only; the
stage's model, kept and rejected outputs are untouched. The stage model's own (memorised) rate is
reported beside it. A family the final training set does not contain is scored by the stage model.

What this hold-out does not measure: quality judgements on text a human would call low but no
rule rejects (that is what the review sample is for, see review.py), and near-copies: chunks of one
long document share `overlap_words` words, so a hold-out chunk may overlap a training chunk.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from tasks.corpus.quality import classifier
from tasks.corpus.quality.classifier import HIGH, LOW, FastTextParams
from tasks.corpus.quality.rates import balanced_accuracy, rate
from tasks.corpus.quality.reservoir import Reservoir

# The clean stage's quality-rule rejection reasons (filters.py): junk symbols/digits and
# repetition. Its other reasons are length (too_short), dedup and decontamination.
RULE_REASONS = ["symbol_ratio", "digit_ratio", "dup_line_ratio", "top_ngram_ratio", "dup_ngram_ratio"]


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


class SeenTexts:
    """The texts the bootstrap could have learned from or been evaluated on (pool + rejected pool),
    as 20-byte digests: membership without holding the texts twice."""

    def __init__(self, texts: Iterable[str]):
        self._keys = {_key(t) for t in texts}

    def __contains__(self, text: str) -> bool:
        return _key(text) in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class CuratedTally:
    """Per-source counts of the high side, fed one scored record at a time (`observe`)."""

    def __init__(self, curated_sources: Iterable[str]):
        self.curated = set(curated_sources)
        self.n: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.not_curated: Counter[str] = Counter()   # unseen scored texts with no provenance label

    def observe(self, rec: dict, kept: bool) -> None:
        """One unseen scored record and whether the stage kept it."""
        source = rec["source"]
        if source in self.curated:
            self.n[source] += 1
            self.kept[source] += kept
        else:
            self.not_curated[source] += 1


def low_families(entries: Iterator[tuple[str, str]], max_per_reason: int, seed: int) -> dict[str, list[str]]:
    """(reason, text) entries -> {reason: texts}, each a seeded uniform sample of at most
    `max_per_reason` (Algorithm R per reason), distinct texts only, in sorted reason order."""
    out: dict[str, Reservoir] = {}
    seen: dict[str, set[bytes]] = {}
    for reason, text in entries:
        k = _key(text)
        if k in seen.setdefault(reason, set()):
            continue
        seen[reason].add(k)
        if reason not in out:
            out[reason] = Reservoir(max_per_reason, random.Random(f"{seed}:real-low:{reason}"))
        out[reason].offer(text)
    return {r: out[r].items for r in sorted(out)}


def without_texts(train_set: list[tuple[str, str]], texts: Iterable[str]) -> list[tuple[str, str]]:
    """`train_set` minus every example whose text is one of `texts` (order kept)."""
    drop = {_key(t) for t in texts}
    return [(t, y) for t, y in train_set if _key(t) not in drop]


def family_scores(texts: list[str], train_set: list[tuple[str, str]], params: FastTextParams,
                  train_seed: int, stage_model, workdir: Path) -> dict:
    """Scores of one low family: leave-one-family-out when the final training set holds any of its
    texts, else the stage model's. Returns {"scores", "stage_scores", "scored_by", "in_training"}."""
    stage_scores = classifier.scores(stage_model, texts)
    remaining = without_texts(train_set, texts)
    in_training = len(train_set) - len(remaining)
    if in_training == 0:
        return {"scores": stage_scores, "stage_scores": stage_scores, "scored_by": "stage_model",
                "in_training": 0}
    model = classifier.train(remaining, params, train_seed, workdir)
    return {"scores": classifier.scores(model, texts), "stage_scores": stage_scores,
            "scored_by": "leave_family_out", "in_training": in_training}


def score_low_families(families: dict[str, list[str]], train_set: list[tuple[str, str]],
                       params: FastTextParams, train_seed: int, stage_model) -> dict[str, dict]:
    """`family_scores` for every family, each retraining in its own temporary directory."""
    with tempfile.TemporaryDirectory(prefix="quality-lofo-") as tmp:
        return {reason: family_scores(texts, train_set, params, train_seed, stage_model,
                                      Path(tmp) / reason)
                for reason, texts in families.items() if texts}


def _decide(score: float, threshold: float) -> str:
    # the stage's own decision: the score rounded to 4 places, then compared (run.quality_filter)
    return HIGH if round(score, 4) >= threshold else LOW


def report(tally: CuratedTally, low: dict[str, dict], threshold: float, seen_excluded: int) -> dict:
    """real_holdout.json's hold-out part: per-source, per-family and pooled rates with intervals.

    recall_high = curated texts kept, recall_low = real low-quality texts rejected (both with
    Wilson intervals); precision and plain accuracy depend on the hold-out's class mix (mostly
    curated text) and are given for completeness; balanced_accuracy is the figure to compare.
    """
    by_source = {s: rate(tally.kept[s], tally.n[s]) for s in sorted(tally.n)}
    tp = sum(tally.kept.values())
    n_high = sum(tally.n.values())
    by_reason, tn, n_low = {}, 0, 0
    for reason, fam in low.items():
        rejected = sum(_decide(s, threshold) == LOW for s in fam["scores"])
        stage_rejected = sum(_decide(s, threshold) == LOW for s in fam["stage_scores"])
        by_reason[reason] = {**rate(rejected, len(fam["scores"])), "scored_by": fam["scored_by"],
                             "in_final_training_set": fam["in_training"],
                             "stage_model": rate(stage_rejected, len(fam["stage_scores"]))}
        tn += rejected
        n_low += len(fam["scores"])
    recall_high, recall_low = rate(tp, n_high), rate(tn, n_low)
    fp, fn = n_low - tn, n_high - tp
    return {
        "high": {**recall_high, "by_source": by_source, "seen_by_bootstrap_excluded": seen_excluded,
                 "scored_without_provenance_label": dict(sorted(tally.not_curated.items()))},
        "low": {**recall_low, "by_reason": by_reason},
        "recall_high": recall_high, "recall_low": recall_low,
        "balanced_accuracy": balanced_accuracy(recall_high, recall_low),
        "accuracy": rate(tp + tn, n_high + n_low),
        "precision_high": rate(tp, tp + fp), "precision_low": rate(tn, tn + fn),
    }
