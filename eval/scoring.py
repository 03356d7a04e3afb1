"""Per-item scores and per-benchmark aggregates, by answer kind.

Closed kinds (choice, yesno), two modes:
- generation (`score_output`): greedy output -> deterministic parse -> correct or not (Pass@1);
  a parse failure scores 0 and keeps its reason;
- log-likelihood (`score_loglik`): the option continuation with the highest summed log-probability
  (`acc`) and with the highest log-probability per character (`acc_norm`), as
  lm-evaluation-harness defines them (ties go to the first option, like its argmax).

Open kinds (generation only):
- open (short answer): exact match after SQuAD normalization, or equal numbers with units when
  the reference is numeric (the primary score); token F1; gold-token recall; ROUGE-L (rouge-score);
  corpus BLEU (sacrebleu) in the aggregate;
- longform: ROUGE-L and BLEU against the reference; the rubric judge's score (judge.py) is the
  primary score when a judge is configured, else ROUGE-L;
- ocr: 1 - character error rate on whitespace-collapsed text (primary), exact match.

`aggregate` gives every mean and BLEU a 95% interval (eval/intervals.py): the Wilson interval, with
the count k of n, for a score that is correct-or-not per item (accuracy, acc, acc_norm, exact match,
and the primary score of closed and short-answer items); a seeded percentile bootstrap otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from functools import lru_cache
from typing import Any

from eval import intervals
from eval.benchmarks import Item
from eval.parsing import (
    extract_open,
    is_numeric_answer,
    normalize_answer,
    parse_choice,
    parse_label,
    prepare,
    quantities_match,
)
from eval.templates import LoglikRequest

MAX_EDIT_CHARS = 4000   # OCR strings are cut here before the O(n*m) edit distance


@dataclasses.dataclass
class ItemScore:
    score: float                       # the primary score in [0, 1]
    parsed: str | None                 # the answer read from the output (letter, label, phrase)
    failure: str | None = None         # parse (or judge) failure reason; the score is then 0
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(pred: str, refs: tuple[str, ...]) -> float:
    if not pred.strip():
        return 0.0
    return max(_rouge().score(ref, pred)["rougeL"].fmeasure for ref in refs)


def corpus_bleu(preds: list[str], refs: list[str]) -> float:
    """sacrebleu corpus BLEU (0-100) of the first references; 0 for an empty corpus."""
    if not preds:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_bleu(preds, [refs]).score)


def token_f1(pred: str, gold: str) -> tuple[float, float]:
    """(SQuAD token F1, recall of gold tokens) on normalized answers."""
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g), float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0, 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall), recall


def open_match(pred: str, golds: tuple[str, ...]) -> bool:
    norm = normalize_answer(pred)
    for g in golds:
        if norm and norm == normalize_answer(g):
            return True
        if is_numeric_answer(g) and quantities_match(pred, g):
            return True
    return False


def edit_distance(a: str, b: str) -> int:
    a, b = a[:MAX_EDIT_CHARS], b[:MAX_EDIT_CHARS]
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def score_output(item: Item, output: str | None, judge: Any = None) -> ItemScore:
    """Score one generated output."""
    kind = item.kind
    if kind in ("choice", "yesno"):
        parsed = (parse_choice(output, item.option_map) if kind == "choice"
                  else parse_label(output, item.choices))
        correct = float(parsed.value == item.answer)
        return ItemScore(correct, parsed.value, parsed.failure, {"accuracy": correct})
    if kind == "open":
        parsed = extract_open(output)
        if not parsed.ok:
            return ItemScore(0.0, None, parsed.failure,
                             {"exact_match": 0.0, "f1": 0.0, "recall": 0.0, "rouge_l": 0.0})
        em = float(open_match(parsed.value, item.answers))
        f1, recall = max(token_f1(parsed.value, g) for g in item.answers)
        return ItemScore(em, parsed.value, None, {"exact_match": em, "f1": f1, "recall": recall,
                                                  "rouge_l": rouge_l(parsed.value, item.answers)})
    body, failure = prepare(output)
    if kind == "ocr":
        if failure:
            return ItemScore(0.0, None, failure, {"char_accuracy": 0.0, "exact_match": 0.0})
        pred, gold = " ".join(body.split()), " ".join(item.answer.split())
        cer = edit_distance(pred, gold) / max(len(gold), 1)
        acc = max(0.0, 1.0 - cer)
        return ItemScore(acc, body, None, {"char_accuracy": acc, "exact_match": float(pred == gold)})
    if kind == "longform":
        if failure:
            return ItemScore(0.0, None, failure, {"rouge_l": 0.0})
        metrics = {"rouge_l": rouge_l(body, item.answers)}
        if judge is None:
            return ItemScore(metrics["rouge_l"], body, None, metrics)
        verdict = judge.judge(item, body)
        metrics.update(verdict.metrics())
        if verdict.failure:
            return ItemScore(0.0, body, verdict.failure, metrics)
        return ItemScore(verdict.score, body, None, metrics)
    raise ValueError(f"unknown kind {kind!r}")


def score_loglik(item: Item, req: LoglikRequest, logprobs: list[float]) -> ItemScore:
    """acc / acc_norm from the summed log-probability of each continuation."""
    if len(logprobs) != len(req.continuations) or not all(math.isfinite(x) for x in logprobs):
        return ItemScore(0.0, None, "bad_logprobs", {"acc": 0.0, "acc_norm": 0.0})
    best = max(range(len(logprobs)), key=lambda i: (logprobs[i], -i))
    norm = [lp / max(len(c), 1) for lp, c in zip(logprobs, req.continuations)]
    best_norm = max(range(len(norm)), key=lambda i: (norm[i], -i))
    acc, acc_norm = float(best == req.gold), float(best_norm == req.gold)
    return ItemScore(acc, req.labels[best], None, {"acc": acc, "acc_norm": acc_norm})


# ---- aggregation ----------------------------------------------------------------------------
# Per-item metrics that are correct-or-not (0/1); their means are proportions and get the Wilson
# interval. The primary score is one too when every row is of a kind whose score is correct-or-not
# (closed answers, and open short answers scored by exact match).
BINARY_METRICS = frozenset({"accuracy", "acc", "acc_norm", "exact_match"})
BINARY_KINDS = frozenset({"choice", "yesno", "open"})


def interval_keys(name: str, vals: list[float], binary: bool) -> dict[str, float]:
    """`<name>_ci_low/_ci_high` (95%) of the mean of `vals`, and `<name>_correct` (k of n) when the
    values are correct-or-not: Wilson for a proportion, the percentile bootstrap otherwise.
    A metric expected to be 0/1 that is not (never, for this module's scores) falls back to the
    bootstrap rather than reporting a Wilson interval for something that is not a proportion."""
    if binary and all(v in (0.0, 1.0) for v in vals):
        k = int(sum(vals))
        lo, hi = intervals.wilson(k, len(vals))
        return {f"{name}_ci_low": lo, f"{name}_ci_high": hi, f"{name}_correct": k}
    lo, hi = intervals.bootstrap(vals)
    return {f"{name}_ci_low": lo, f"{name}_ci_high": hi}


def bleu_interval(preds: list[str], refs: list[str]) -> tuple[float, float]:
    """Bootstrap interval of corpus BLEU: items resampled, BLEU recomputed from their summed
    sentence-level n-gram counts (sacrebleu's own statistics, so each resample is the BLEU that
    `corpus_bleu` would give on that resample)."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()              # corpus_bleu's defaults: 13a tokenization, exp smoothing
    stats = metric._extract_corpus_statistics(preds, [refs])
    return intervals.bootstrap(stats, lambda rows: metric._compute_score_from_stats(rows.sum(axis=0)).score)


def aggregate(rows: list[dict]) -> dict[str, Any]:
    """Mean score, chance, parse failures and mean per-item metrics of a set of result rows, each
    score with its 95% interval (`<key>_ci_low`, `<key>_ci_high`; `<key>_correct` for proportions)."""
    n = len(rows)
    if n == 0:
        return {"n": 0}
    failures = Counter(r["failure"] for r in rows if r.get("failure"))
    scores = [r["score"] for r in rows]
    out: dict[str, Any] = {
        "n": n,
        "score": statistics.fmean(scores),
        "chance": statistics.fmean(r["chance"] for r in rows),
        "parse_failures": sum(failures.values()),
        "parse_failure_rate": sum(failures.values()) / n,
        "failure_reasons": dict(sorted(failures.items())),
    }
    out.update(interval_keys("score", scores, all(r.get("kind") in BINARY_KINDS for r in rows)))
    keys = sorted({k for r in rows for k in r.get("metrics", {})})
    for k in keys:
        vals = [r["metrics"][k] for r in rows if k in r.get("metrics", {})]
        out[k] = statistics.fmean(vals)
        out.update(interval_keys(k, vals, k in BINARY_METRICS))
    open_rows = [r for r in rows if r.get("kind") in ("open", "longform")]
    if open_rows:
        preds, refs = [r.get("parsed") or "" for r in open_rows], [r["gold"][0] for r in open_rows]
        out["bleu"] = corpus_bleu(preds, refs)
        out["bleu_ci_low"], out["bleu_ci_high"] = bleu_interval(preds, refs)
    return out
