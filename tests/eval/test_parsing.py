"""Deterministic parsing: option letters, yes/no/maybe, short answers, numbers with units, and the
bad outputs a real model produces (empty, gigantic, several letters, only reasoning, other languages)."""

from __future__ import annotations

import time

import pytest

from eval.parsing import (
    MAX_PARSE_CHARS,
    extract_open,
    is_numeric_answer,
    normalize_answer,
    parse_choice,
    parse_label,
    quantities,
    quantities_match,
    strip_thinking,
)

OPTIONS = {"A": "Bladder", "B": "Kidney", "C": "Glomerulus", "D": "Kidney stone"}


@pytest.mark.parametrize("text,letter", [
    ("Answer: C", "C"),
    ("(C)", "C"),
    ("C.", "C"),
    ("C", "C"),
    ("**C**", "C"),
    ("the answer is C", "C"),
    ("The correct answer is (C).", "C"),
    ("Final answer: **C**", "C"),
    ("\\boxed{C}", "C"),
    ("so \\boxed{\\text{C}}", "C"),
    ("<answer>C</answer>", "C"),
    ("<answer>Glomerulus</answer>", "C"),
    ("Glomerulus", "C"),
    ("glomerulus.", "C"),
    ("C. Glomerulus, because it filters the blood.", "C"),
    ("(C) Glomerulus", "C"),
    ("Kidney stone", "D"),                 # the longer option wins over the option it contains
    ("I think C", "C"),
    ("C is correct", "C"),
    ("Option A is wrong and B is wrong, so the answer is C.", "C"),   # the conclusion, not the reasoning
    ("Answer: A\nOn reflection, the final answer is C", "C"),           # the last statement wins
    ("<think>A looks right, maybe B</think>\nAnswer: D", "D"),
    ("<think>B?</think> C", "C"),
    ("reasoning opened by the template... A or B?</think>Answer: C", "C"),
    ("答案：Ｃ", "C"),                       # full-width letter and colon (NFKC)
    ("La respuesta es C", "C"),
    ("Ответ: C", "C"),
    ("Die Antwort ist C", "C"),
])
def test_option_letter_rules(text, letter):
    got = parse_choice(text, OPTIONS)
    assert got.value == letter and got.failure is None, (text, got)


@pytest.mark.parametrize("text,failure", [
    ("", "empty"),
    ("   \n ", "empty"),
    (None, "empty"),
    ("<think>A is plausible, B too, C maybe", "only_reasoning"),      # unclosed: reasoning only
    ("<think>A? B? C?</think>", "only_reasoning"),
    ("Answer: A or C", "multiple_answers"),
    ("Answer: A, C", "multiple_answers"),
    ("The answer is B and D", "multiple_answers"),
    ("A and C", "multiple_answers"),
    ("Bladder or kidney", "multiple_answers"),
    ("Answer: E", "invalid_option"),
    ("Let us consider A. Then B. Then C, D and what each implies for the patient...", "no_answer"),
    ("A patient with these findings needs further imaging before anything else is decided.", "no_answer"),
    ("这是一个复杂的临床问题，需要更多信息。", "no_answer"),          # another language, no answer in it
])
def test_option_letter_failures(text, failure):
    got = parse_choice(text, OPTIONS)
    assert got.value is None and got.failure == failure, (text, got)


def test_gigantic_output_parses_fast_from_its_tail():
    text = "blah " * 2_000_000 + "\nAnswer: B"        # 10 MB of degenerate repetition
    t0 = time.perf_counter()
    got = parse_choice(text, OPTIONS)
    assert got.value == "B"
    assert time.perf_counter() - t0 < 2.0
    assert parse_choice("x" * (5 * MAX_PARSE_CHARS), OPTIONS).failure == "no_answer"


def test_duplicate_option_texts_are_ambiguous():
    opts = {"A": "Africas", "B": "Caucians", "C": "Not Recalled", "D": "Not Recalled"}
    assert parse_choice("Not Recalled", opts).failure == "multiple_answers"
    assert parse_choice("Answer: D", opts).value == "D"


def test_strip_thinking():
    assert strip_thinking("<think>x</think> yes") == ("yes", True)
    assert strip_thinking("no reasoning") == ("no reasoning", False)
    assert strip_thinking("ans <think>unfinished") == ("ans", True)


@pytest.mark.parametrize("text,label", [
    ("Yes", "yes"), ("no.", "no"), ("Maybe", "maybe"), ("Answer: maybe", "maybe"),
    ("The answer is no, because the trial was underpowered, yes.", "no"),
    ("Yes, there is no mass.", "yes"),
    ("<answer>no</answer>", "no"), ("\\boxed{yes}", "yes"),
    ("<think>yes or no...</think>Answer: yes", "yes"),
    ("Sí", "yes"), ("Nein", "no"), ("是的，有肿块", "yes"), ("否", "no"), ("Oui.", "yes"),
    ("Based on the study: yes", "yes"),
])
def test_labels(text, label):
    got = parse_label(text)
    assert got.value == label, (text, got)


@pytest.mark.parametrize("text,failure", [
    ("", "empty"), ("<think>yes or no", "only_reasoning"), ("There is no mass, yes", "multiple_answers"),
    ("The findings are inconclusive and further studies with larger cohorts are warranted.", "no_answer"),
])
def test_label_failures(text, failure):
    assert parse_label(text).failure == failure


def test_label_set_restricts_answers():
    assert parse_label("maybe", ("yes", "no")).failure == "no_answer"


def test_open_answer_extraction():
    assert extract_open("Answer: On the left.\nBecause the spleen ...").value == "On the left"
    assert extract_open("<answer>CT</answer>").value == "CT"
    assert extract_open("<think>hmm</think>\n\n  Right upper lobe  \nmore").value == "Right upper lobe"
    assert extract_open("<think>never finished").failure == "only_reasoning"


def test_normalization():
    assert normalize_answer("  The Right-Upper  Lobe. ") == "right upper lobe"
    assert normalize_answer("ＣＴ") == "ct"


def test_numbers_with_units():
    assert [q.raw for q in quantities("2.5cm x 1.7cm x 1.6cm")] == [2.5, 1.7, 1.6]
    assert quantities_match("25 mm x 17 mm x 16mm", "2.5cm x 1.7cm x 1.6cm")
    assert quantities_match("2.5 x 1.7 x 1.6 cm", "2.5cm x 1.7cm x 1.6cm")     # bare numbers match
    assert quantities_match("two", "2") and quantities_match("1,000 mg", "1 g")
    assert quantities_match("10 to 20 min", "10-20 minutes")
    assert not quantities_match("3 g", "3 cm") and not quantities_match("12", "13")
    assert is_numeric_answer("10-20 minutes") and is_numeric_answer("12")
    assert not is_numeric_answer("T2 weighted") and not is_numeric_answer("3rd ventricle")
