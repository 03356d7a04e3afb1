"""The self-bootstrapped positive/negative loop of paper §3.1, as a pure function.

    round 0  seed labels: heuristic positives (signals.is_seed_positive) from a pool sample;
             negatives = rule-rejected texts + degraded copies of seed texts; train fastText.
    round r  sample fresh texts from the remaining pool, score them with the classifier, verify
             with the Verifier, add the verified texts (and degraded copies of them, since real
             negatives are rare after cleaning) to the labelled data, uniformly sample a balanced
             training set from it, retrain, evaluate.
    stop     when hold-out accuracy >= target (after at least `min_rounds` verified rounds) or
             after `max_rounds`.

The hold-out is fixed before round 0: pool texts labelled by the verifier plus degraded copies of
those same texts (labelled low), disjoint from every training sample. Every random draw comes from
a generator seeded with (seed, purpose), so the loop is a deterministic function of its inputs.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from pathlib import Path
from typing import Callable

from tasks.corpus.quality import classifier
from tasks.corpus.quality.classifier import HIGH, LOW, FastTextParams
from tasks.corpus.quality.degrade import DEFAULT_KINDS, degraded_copies
from tasks.corpus.quality.signals import is_seed_positive
from tasks.corpus.quality.verifiers import Verifier


@dataclasses.dataclass
class BootstrapParams:
    seed_size: int = 2000
    pool_sample_per_round: int = 1000
    holdout_size: int = 600
    target_accuracy: float = 0.95
    max_rounds: int = 4
    min_rounds: int = 1
    threshold: float = 0.5
    seed: int = 0
    degraders: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_KINDS))
    seed_positive_min_words: int = 60
    fasttext: FastTextParams = dataclasses.field(default_factory=FastTextParams)

    def pool_needed(self) -> int:
        """How many pool texts the loop can consume (for reservoir sampling upstream)."""
        return self.holdout_size // 2 + self.seed_size + self.max_rounds * self.pool_sample_per_round


@dataclasses.dataclass
class BootstrapResult:
    model: object
    rounds: list[dict]
    reached_target: bool
    holdout: dict
    stop_reason: str
    # what the returned model was trained on, and with which seed: lets an evaluation retrain it
    # without some texts (real_holdout.py's leave-one-family-out) without re-running the loop
    train_set: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    train_seed: int = 0


def _rng(seed: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{purpose}")


def evaluate(model, texts: list[str], labels: list[str], kinds: list[str],
             threshold: float) -> dict[str, float]:
    """Accuracy, precision/recall/F1 of the high class, and accuracy per hold-out kind."""
    preds = [HIGH if s >= threshold else LOW for s in classifier.scores(model, texts)]
    tp = sum(p == y == HIGH for p, y in zip(preds, labels))
    fp = sum(p == HIGH and y == LOW for p, y in zip(preds, labels))
    fn = sum(p == LOW and y == HIGH for p, y in zip(preds, labels))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    out = {"accuracy": sum(p == y for p, y in zip(preds, labels)) / len(labels),
           "precision": prec, "recall": rec,
           "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}
    for kind in sorted(set(kinds)):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        out[f"accuracy_{kind}"] = sum(preds[i] == labels[i] for i in idx) / len(idx)
    return out


def _balanced(pos: list[str], neg: list[str], rng: random.Random) -> list[tuple[str, str]]:
    k = min(len(pos), len(neg))
    return [(t, HIGH) for t in rng.sample(pos, k)] + [(t, LOW) for t in rng.sample(neg, k)]


def bootstrap(pool: list[str], rejected: list[str], params: BootstrapParams, verifier: Verifier,
              *, on_round: Callable[[int, dict], None] | None = None,
              workdir: Path | None = None) -> BootstrapResult:
    """Run the loop on `pool` (judgeable kept texts) and `rejected` (rule-rejected texts)."""
    seed = params.seed
    order = list(range(len(pool)))
    _rng(seed, "order").shuffle(order)
    n_hold = params.holdout_size // 2
    hold_texts = [pool[i] for i in order[:n_hold]]
    seed_texts = [pool[i] for i in order[n_hold:n_hold + params.seed_size]]
    remaining = [pool[i] for i in order[n_hold + params.seed_size:]]

    # Fixed hold-out: verified real texts + degraded copies of them (low by construction).
    hold_labels = verifier.verify(hold_texts)
    real = [(t, y) for t, y in zip(hold_texts, hold_labels) if y is not None]
    kinds = tuple(params.degraders)
    degraded = degraded_copies([t for t, _ in real], params.holdout_size - n_hold,
                               _rng(seed, "holdout-degrade"), kinds)
    h_texts = [t for t, _ in real] + degraded
    h_labels = [y for _, y in real] + [LOW] * len(degraded)
    h_kinds = ["real"] * len(real) + ["degraded"] * len(degraded)
    holdout = {"size": len(h_texts), "real": len(real), "degraded": len(degraded),
               "real_high": sum(y == HIGH for _, y in real), "verify_failures": n_hold - len(real)}
    if not h_texts:
        raise ValueError("empty hold-out: the pool has no judgeable texts")

    # Round 0 seed labels.
    pos = [t for t in seed_texts if is_seed_positive(t, min_words=params.seed_positive_min_words)]
    if not pos:
        raise ValueError(f"no seed positives among {len(seed_texts)} sampled texts")
    rng = _rng(seed, "seed-negatives")
    neg = rng.sample(rejected, min(len(rejected), len(pos) // 2))
    neg += degraded_copies(seed_texts, len(pos) - len(neg), rng, kinds)

    tmp = tempfile.TemporaryDirectory(prefix="quality-ft-") if workdir is None else None
    work = Path(tmp.name) if tmp else workdir
    rounds: list[dict] = []
    last_fit: dict = {}
    try:
        def fit(r: int, train_set: list[tuple[str, str]], extra: dict):
            model = classifier.train(train_set, params.fasttext, seed + r, work / f"round{r}")
            last_fit.update(train_set=train_set, train_seed=seed + r)
            m = evaluate(model, h_texts, h_labels, h_kinds, params.threshold)
            m.update(round=r, train_high=sum(y == HIGH for _, y in train_set),
                     train_low=sum(y == LOW for _, y in train_set), **extra)
            rounds.append(m)
            if on_round:
                on_round(r, {k: v for k, v in m.items() if k != "round" and v is not None})
            return model, m["accuracy"]

        model, acc = fit(0, _balanced(pos, neg, _rng(seed, "sample-0")),
                         {"seed_positives": len(pos), "seed_rejected": min(len(rejected), len(pos) // 2)})
        stop = "max_rounds"
        for r in range(1, params.max_rounds + 1):
            if acc >= params.target_accuracy and r > params.min_rounds:
                stop = "target_accuracy"
                break
            start = (r - 1) * params.pool_sample_per_round
            sample = remaining[start:start + params.pool_sample_per_round]
            if not sample:
                stop = "pool_exhausted"
                break
            preds = [HIGH if s >= params.threshold else LOW
                     for s in classifier.scores(model, sample)]
            labels = verifier.verify(sample)
            verified = [(t, y, p) for t, y, p in zip(sample, labels, preds) if y is not None]
            agree = sum(y == p for _, y, p in verified) / len(verified) if verified else 0.0
            pos += [t for t, y, _ in verified if y == HIGH]
            neg += [t for t, y, _ in verified if y == LOW]
            neg += degraded_copies([t for t, _, _ in verified], len(verified),
                                   _rng(seed, f"degrade-{r}"), kinds)
            model, acc = fit(r, _balanced(pos, neg, _rng(seed, f"sample-{r}")), {
                "sampled": len(sample), "verified_high": sum(y == HIGH for _, y, _ in verified),
                "verified_low": sum(y == LOW for _, y, _ in verified),
                "verify_failures": len(sample) - len(verified), "agreement": agree})
        else:
            if acc >= params.target_accuracy:
                stop = "target_accuracy"
    finally:
        if tmp:
            tmp.cleanup()
    return BootstrapResult(model=model, rounds=rounds, reached_target=acc >= params.target_accuracy,
                           holdout=holdout, stop_reason=stop, **last_fit)
