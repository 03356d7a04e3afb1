"""Per-item scores per answer kind, log-likelihood acc/acc_norm, and aggregation with 95% intervals."""

from __future__ import annotations

import pytest

from eval.benchmarks import Item
from eval.intervals import bootstrap, wilson
from eval.judge import LocalRubricJudge
from eval.scoring import (
    aggregate,
    corpus_bleu,
    edit_distance,
    open_match,
    rouge_l,
    score_loglik,
    score_output,
    token_f1,
)
from eval.templates import loglik_request

MCQ = Item("b", "1", "mcq", "choice", "Q?", ("C",), options=(("A", "x"), ("B", "yy"), ("C", "zzzzzzzz")))
OPEN = Item("v", "2", "vqa", "open", "Size?", ("2.5cm x 1.7cm",))
LONG = Item("r", "3", "longform", "longform", "Write the findings.", ("The heart size is normal. No pleural effusion.",),
            key_points=("heart size is normal", "no pleural effusion"))
OCR = Item("o", "4", "ocr", "ocr", "Read it.", ("Hb 13.5 g/dL",), images=("/x.png",))


def test_closed_generation_scores():
    assert score_output(MCQ, "Answer: C").score == 1.0
    wrong = score_output(MCQ, "Answer: A")
    assert wrong.score == 0.0 and wrong.parsed == "A" and wrong.failure is None
    failed = score_output(MCQ, "")
    assert failed.score == 0.0 and failed.failure == "empty" and failed.metrics == {"accuracy": 0.0}


def test_open_answers():
    sc = score_output(OPEN, "Answer: 25 mm x 17 mm")
    assert sc.score == 1.0 and sc.parsed == "25 mm x 17 mm"
    assert open_match("The Left.", ("left",)) and not open_match("right", ("left",))
    f1, recall = token_f1("right upper lobe", "upper lobe")
    assert f1 == pytest.approx(0.8) and recall == 1.0
    assert rouge_l("right upper lobe", ("upper lobe",)) == pytest.approx(0.8)
    assert corpus_bleu(["the heart is normal"], ["the heart is normal"]) == pytest.approx(100.0)
    assert score_output(OPEN, "<think>hmm").failure == "only_reasoning"


def test_loglik_acc_vs_acc_norm():
    req = loglik_request(MCQ)            # continuations " x", " yy", " zzzzzzzz" (gold)
    sc = score_loglik(MCQ, req, [-3.0, -5.0, -8.0])
    # raw sum picks the short " x"; per character the long gold wins (-8/9 > -3/2)
    assert sc.metrics == {"acc": 0.0, "acc_norm": 1.0} and sc.parsed == "A"
    tie = score_loglik(MCQ, req, [-1.0, -1.0, -1.0])
    assert tie.parsed == "A"                              # ties go to the first option, like argmax
    assert score_loglik(MCQ, req, [float("nan"), 0, 0]).failure == "bad_logprobs"


def test_longform_with_local_judge():
    judge = LocalRubricJudge(penalty=0.5)
    good = score_output(LONG, "Heart size is normal. There is no pleural effusion.", judge)
    assert good.score == 1.0 and good.metrics["key_point_recall"] == 1.0
    partial = score_output(LONG, "Heart size is normal. Large mass in the left lung apex.", judge)
    assert partial.metrics["unsupported_statements"] == 1.0
    assert partial.score == pytest.approx((1 - 0.5) / 2)
    no_judge = score_output(LONG, "Heart size is normal.")
    assert no_judge.score == no_judge.metrics["rouge_l"] > 0


def test_ocr_character_accuracy():
    assert edit_distance("kitten", "sitting") == 3
    assert score_output(OCR, "Hb 13.5 g/dL").score == 1.0
    near = score_output(OCR, "Hb 13.6 g/dL")
    assert near.score == pytest.approx(1 - 1 / 12) and near.metrics["exact_match"] == 0.0


def test_aggregate_counts_failures_and_means():
    rows = [{"score": 1.0, "chance": 0.25, "failure": None, "metrics": {"accuracy": 1.0}, "kind": "choice"},
            {"score": 0.0, "chance": 0.25, "failure": "empty", "metrics": {"accuracy": 0.0}, "kind": "choice"},
            {"score": 0.0, "chance": 0.5, "failure": "no_answer", "metrics": {"accuracy": 0.0}, "kind": "choice"}]
    agg = aggregate(rows)
    assert agg["n"] == 3 and agg["score"] == pytest.approx(1 / 3) and agg["chance"] == pytest.approx(1 / 3)
    assert agg["parse_failures"] == 2 and agg["failure_reasons"] == {"empty": 1, "no_answer": 1}
    assert aggregate([]) == {"n": 0}


def test_aggregate_gives_accuracies_the_wilson_interval():
    rows = [{"score": float(i < 3), "chance": 0.25, "failure": None, "metrics": {"accuracy": float(i < 3)},
             "kind": "choice"} for i in range(20)]
    agg = aggregate(rows)
    assert (agg["score_ci_low"], agg["score_ci_high"]) == wilson(3, 20) and agg["score_correct"] == 3
    assert (agg["accuracy_ci_low"], agg["accuracy_ci_high"]) == wilson(3, 20) and agg["accuracy_correct"] == 3
    loglik = [{"score": 0.0, "chance": 0.5, "failure": None, "metrics": {"acc": 0.0, "acc_norm": 1.0},
               "kind": "yesno"}] * 4
    agg = aggregate(loglik)
    assert (agg["acc_ci_low"], agg["acc_ci_high"]) == (0.0, wilson(0, 4)[1])       # not [0, 0] as Wald has it
    assert (agg["acc_norm_ci_low"], agg["acc_norm_ci_high"]) == (wilson(4, 4)[0], 1.0) and agg["acc_norm_correct"] == 4


def test_aggregate_bootstraps_other_scores_and_bleu():
    golds = ["mass in the right upper lobe", "nodule in the left lower lobe", "no pleural effusion seen",
             "mild cardiomegaly", "normal study of the chest"]
    preds = ["mass in the right upper lobe", "nodule in the left lobe", "small pleural effusion seen", "",
             "normal study of the chest"]
    rows = [score_output(Item("v", str(i), "short", "open", "Where?", (g,)), f"Answer: {p}" if p else "")
            for i, (g, p) in enumerate(zip(golds, preds))]
    rows = [{"score": sc.score, "chance": 0.0, "failure": sc.failure, "metrics": sc.metrics, "kind": "open",
             "parsed": sc.parsed, "gold": [g]} for sc, g in zip(rows, golds)]
    agg = aggregate(rows)
    assert agg["exact_match_correct"] == 2 and (agg["score_ci_low"], agg["score_ci_high"]) == wilson(2, 5)
    f1 = [r["metrics"]["f1"] for r in rows]
    assert (agg["f1_ci_low"], agg["f1_ci_high"]) == bootstrap(f1) and "f1_correct" not in agg
    assert agg["f1_ci_low"] < agg["f1"] < agg["f1_ci_high"]
    assert agg["bleu_ci_low"] <= agg["bleu"] <= agg["bleu_ci_high"] and agg["bleu_ci_high"] > agg["bleu_ci_low"]
    assert aggregate(rows) == agg                                         # seeded: the same on every call
    perfect = [dict(r, parsed=r["gold"][0]) for r in rows]
    assert aggregate(perfect)["bleu_ci_low"] == pytest.approx(100.0)       # every resample is a perfect corpus


def test_aggregate_bootstraps_scores_that_are_not_correct_or_not():
    """1-CER is a fraction per item: a bootstrap, no count; a 0/1 metric name with a fractional value
    (never produced here) is not given a Wilson interval either."""
    rows = [{"score": s, "chance": 0.0, "failure": None, "metrics": {"char_accuracy": s, "exact_match": 0.5},
             "kind": "ocr"} for s in (0.9, 1.0, 0.5, 0.75)]
    agg = aggregate(rows)
    assert (agg["score_ci_low"], agg["score_ci_high"]) == bootstrap([0.9, 1.0, 0.5, 0.75])
    assert "score_correct" not in agg and "exact_match_correct" not in agg
    assert (agg["exact_match_ci_low"], agg["exact_match_ci_high"]) == (0.5, 0.5)
