"""Rule rewards: closed answers graded against the gold, instructions by the constraint checkers."""

from __future__ import annotations

import pytest

from tasks.reward import rule
from tasks.reward.item import RewardItem

OPTIONS = ("Aspirin", "Warfarin", "Heparin", "Clopidogrel")


def _item(completion, kind, answer="", query="Which anticoagulant is safe in pregnancy?", **kw):
    return RewardItem(prompt_id="p", task="closed", messages=({"role": "user", "content": query},),
                      completion=completion, answer=answer, answer_kind=kind, **kw)


# ---- choice ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("completion,value,parsed,failure", [
    ("<think>Warfarin is teratogenic, so not B.</think>The answer is C.", 1.0, "C", None),
    ("Heparin", 1.0, "C", None),                                   # the option's text instead of its letter
    ("Answer: B", 0.0, "B", None),
    ("A or C", 0.0, None, "multiple_answers"),
    ("Answer: F", 0.0, None, "invalid_option"),
])
def test_choice(completion, value, parsed, failure):
    s = rule.score(_item(completion, "choice", answer="Heparin", options=OPTIONS))
    assert (s.value, s.detail["parsed"], s.detail["gold"], s.detail["failure"]) == (value, parsed, "C", failure)


def test_choice_gold_given_as_letter_and_missing_gold():
    assert rule.score(_item("(C)", "choice", answer="c", options=OPTIONS)).value == 1.0
    s = rule.score(_item("C", "choice", answer="Enoxaparin", options=OPTIONS))
    assert s.value is None and s.detail["reason"] == "no_gold"


def test_unclosed_reasoning_is_no_answer():
    # "C" after an unclosed <think> is unfinished reasoning, not an answer
    s = rule.score(_item("<think>I think the answer is C", "choice", answer="Heparin", options=OPTIONS))
    assert (s.value, s.detail["reason"]) == (0.0, "no_answer")


# ---- judgement ------------------------------------------------------------------------------------
@pytest.mark.parametrize("completion,value", [("No, it crosses the placenta.", 1.0), ("Yes.", 0.0),
                                              ("Answer: maybe", 0.0)])
def test_judgement(completion, value):
    assert rule.score(_item(completion, "judgement", answer="no")).value == value


# ---- fill ----------------------------------------------------------------------------------------
def test_fill_exact_quantity_regex():
    exact = rule.score(_item("**Metformin.**", "fill", answer="metformin"))
    assert (exact.value, exact.detail["matched_by"]) == (1.0, "exact")
    # 25 mm == 2.5 cm after unit conversion
    qty = rule.score(_item("Answer: 25 mm", "fill", answer="2.5 cm"))
    assert (qty.value, qty.detail["matched_by"]) == (1.0, "quantity")
    assert rule.score(_item("Answer: 30 mm", "fill", answer="2.5 cm")).value == 0.0
    meta = {"answer_regex": r"(acute )?appendicitis"}
    rx = rule.score(_item("Answer: Acute appendicitis.", "fill", answer="appendicitis", meta=meta))
    assert (rx.value, rx.detail["matched_by"], rx.detail["normalized"]) == (1.0, "regex", "acute appendicitis")
    # full match only: "chronic appendicitis" contains the pattern but is not it
    assert rule.score(_item("Answer: chronic appendicitis", "fill", answer="appendicitis", meta=meta)).value == 0.0


def test_fill_broken_regex_is_recorded_not_raised():
    s = rule.score(_item("Answer: x", "fill", answer="y", meta={"answer_regex": "("}))
    assert s.value == 0.0 and "regex_error" in s.detail


# ---- set -----------------------------------------------------------------------------------------
GOLD = ("gentamicin", "vancomycin", "amphotericin B")


def test_set_two_of_three_with_one_wrong():
    # 2 of the 3 elements are right, 2 of the 3 golds found: P = 2/3, R = 2/3, F1 = 2/3,
    # Jaccard = 2 / (3 + 3 - 2) = 0.5
    item = _item("Gentamicin, vancomycin and ibuprofen.", "set", answer_set=GOLD)
    f1 = rule.score(item)
    assert f1.value == pytest.approx(2 / 3)
    assert (f1.detail["precision"], f1.detail["recall"], f1.detail["jaccard"]) == pytest.approx((2 / 3, 2 / 3, 0.5))
    assert rule.score(item, metric="jaccard").value == pytest.approx(0.5)
    with pytest.raises(ValueError):
        rule.score(item, metric="accuracy")


def test_set_bullets_and_whole_word_containment():
    # the lead-in line is not an element; "iv gentamicin" contains the gold "gentamicin" as whole words:
    # P = 2/2, R = 2/3, F1 = 2 * 1 * (2/3) / (1 + 2/3) = 0.8
    s = rule.score(_item("Nephrotoxic ones:\n- IV gentamicin\n- vancomycin", "set", answer_set=GOLD))
    assert (s.value, s.detail["elements"]) == (pytest.approx(0.8), ["iv gentamicin", "vancomycin"])
    # an "Answer:" line is the list; the reasoning line before it is not graded
    s = rule.score(_item("Aminoglycosides hurt the kidney.\nAnswer: IV gentamicin; vancomycin", "set", answer_set=GOLD))
    assert (s.value, s.detail["elements"]) == (pytest.approx(0.8), ["iv gentamicin", "vancomycin"])


def test_set_one_vague_element_claims_one_gold():
    # "gentamicin or vancomycin" is one element containing two golds; one-to-one matching gives it one:
    # P = 1/1, R = 1/3, F1 = 2 * 1 * (1/3) / (4/3) = 0.5
    assert rule.score(_item("gentamicin or vancomycin", "set", answer_set=GOLD)).value == pytest.approx(0.5)


def test_set_matching_is_maximum_not_greedy():
    # greedy would give "acid" the first gold it matches ("uric acid") and leave "uric acid" unmatched (1 pair);
    # the maximum matching pairs acid-folic acid and uric acid-uric acid (2 pairs): F1 = 1
    m = rule.set_metrics(["acid", "uric acid"], ["uric acid", "folic acid"])
    assert (m["matched"], m["f1"]) == (2, 1.0)


def test_set_gold_with_and_is_not_split():
    s = rule.score(_item("Nausea and vomiting, and headache", "set", answer_set=("nausea and vomiting", "headache")))
    assert (s.value, s.detail["elements"]) == (1.0, ["nausea and vomiting", "headache"])


def test_set_intent_on_an_open_item_and_open_is_not_graded():
    listing = _item("Gentamicin and vancomycin", "open", query="List the nephrotoxic drugs here.", answer_set=GOLD)
    # P = 2/2, R = 2/3 -> F1 = 0.8
    assert rule.score(listing).value == pytest.approx(0.8)
    prose = _item("Gentamicin and vancomycin", "open", query="Why is gentamicin nephrotoxic?", answer_set=GOLD)
    assert rule.score(prose).value is None


def test_set_gold_from_answer_when_no_answer_set():
    # gold "gentamicin, vancomycin" -> 2 elements; answer has 1 right: P = 1, R = 1/2, F1 = 2/3
    assert rule.score(_item("vancomycin", "set", answer="gentamicin, vancomycin")).value == pytest.approx(2 / 3)


# ---- instructions --------------------------------------------------------------------------------
MAXW = {"kind": "length.max_words", "args": {"n": 5}}
LOWER = {"kind": "format.lowercase", "args": {}}


def test_instruct_fractions():
    both = rule.instruct(_item("<think>Keep it SHORT.</think>metformin is first line.", "open",
                               constraints=(MAXW, LOWER)))
    assert (both.value, both.detail["loose"]) == (1.0, 1.0)
    # 4 words <= 5 passes; "Metformin" is not lower case: 1 of 2 -> 0.5
    half = rule.instruct(_item("Metformin is first line.", "open", constraints=(MAXW, LOWER)))
    assert half.value == 0.5
    # strict: "Sure:" breaks lower case -> 0.5; loose drops the first line -> both pass -> 1.0
    loose = rule.instruct(_item("Sure:\nmetformin is first line.", "open", constraints=(MAXW, LOWER)))
    assert (loose.value, loose.detail["loose"]) == (0.5, 1.0)


def test_instruct_not_applicable_invalid_and_no_answer():
    assert rule.instruct(_item("x", "open")).value is None
    s = rule.instruct(_item("metformin", "open", constraints=(LOWER, {"kind": "no.such.kind", "args": {}})))
    assert s.value == 1.0 and len(s.detail["invalid"]) == 1        # 1 valid constraint, satisfied
    assert rule.instruct(_item("<think>metformin", "open", constraints=(LOWER,))).value == 0.0
