"""Deterministic parsing: option letters, yes/no/maybe, short answers, numbers with units, and the
bad outputs a real model produces (empty, gigantic, several letters, only reasoning, other languages)."""

from __future__ import annotations

import time

import pytest

from eval.parsing import (
    FAILURES,
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


# Answers as people and models write them: (reply, the letter it chooses or the failure reason).
# Every reply that names exactly one option parses; the failures are replies that name none, several,
# or a letter that is not an option.
PHRASINGS = [
    # a letter, any case
    ("c", "C"),
    ("b.", "B"),
    ("answer: c", "C"),
    ("Answer: c.", "C"),
    ("ANSWER: D", "D"),
    ("the answer is (c)", "C"),
    ("Final answer: b", "B"),
    ("answer: a", "A"),
    ("The answer is a.", "A"),
    # brackets, punctuation, markdown, the option's text appended
    ("option C", "C"),
    ("option c", "C"),
    ("Option (C)", "C"),
    ("Option C.", "C"),
    ("C)", "C"),
    ("[C]", "C"),
    ("(c)", "C"),
    ("**C**.", "C"),
    ("**C. Glomerulus**", "C"),
    ("C: Glomerulus", "C"),
    ("C) Glomerulus", "C"),
    ("C — Glomerulus", "C"),
    ("[C] Glomerulus", "C"),
    ("### Answer\nC", "C"),
    ("## Final answer\n\n**C. Glomerulus**", "C"),
    ("**Answer**: C", "C"),
    ("- **Answer:** C", "C"),
    ("Answer:\n\n(C) Glomerulus", "C"),
    ("1. C", "C"),
    # boxed
    ("\\boxed{\\text{C}}", "C"),
    ("$\\boxed{c}$", "C"),
    ("Therefore the answer is $\\boxed{\\textbf{C}}$.", "C"),
    ("\\boxed{Glomerulus}", "C"),
    # answer statements
    ("The answer is C", "C"),
    ("The answer is C because the glomerulus filters the blood.", "C"),
    ("My answer: C", "C"),
    ("Correct answer — C", "C"),
    ("Correct answer - C", "C"),
    ("The best option is C.", "C"),
    ("The correct choice is (C).", "C"),
    ("The answer is probably C, since filtration happens there.", "C"),
    ("The answer is: option C", "C"),
    ("Answer: Option (C) Glomerulus", "C"),
    ("Answer: C, a tuft of capillaries", "C"),        # the article after the letter is not option A
    ("Answer: C (D is wrong)", "C"),
    ("Answer: C, D is wrong", "C"),
    # choosing
    ("I would choose option C because the glomerulus is where the blood is filtered.", "C"),
    ("I'd go with C", "C"),
    ("I’d go with C.", "C"),
    ("I would pick A because the bladder stores urine.", "A"),
    ("I chose B.", "B"),
    ("Going with D here.", "D"),
    ("I'd opt for C over A.", "C"),
    # "C is correct"
    ("C is the right answer", "C"),
    ("C is the correct answer.", "C"),
    ("Option C is correct.", "C"),
    ("**C** is the best answer", "C"),
    # the option's text instead of its letter
    ("The answer is glomerulus.", "C"),
    ("The answer is the glomerulus, because it filters plasma.", "C"),
    ("Answer: kidney stone", "D"),
    ("Answer: kidney", "B"),
    ("It happens in the glomerulus.", "C"),
    ("GLOMERULUS", "C"),
    # after complete reasoning
    ("<think>A or B? Filtration happens in the glomerulus.</think>\n\nThe answer is C.", "C"),
    ("<think>\nThe bladder only stores urine.\n</think>\nC", "C"),
    ("<thinking>not A</thinking> I would choose C", "C"),
    ("The bladder stores urine; the kidney ...</think>\n**C**", "C"),
    # letters named to rule them out
    ("Not A. The answer is C", "C"),
    ("A is wrong; C is correct", "C"),
    ("It is not B, it's C", "C"),
    ("Option A is incorrect because the bladder only stores urine, so C.", "C"),
    ("Option A is incorrect because the bladder only stores urine, so C is the answer.", "C"),
    ("The correct answer is not A but C", "C"),
    ("The answer is not A, it's C.", "C"),
    ("Not B, C.", "C"),
    ("C, not A", "C"),
    ("A isn't right. It's C.", "C"),
    ("Rather than A, I'd go with C.", "C"),
    ("Option A is wrong. Option C fits the histology best, because filtration happens there.", "C"),
    ("Option B is ruled out by the biopsy; option C remains.", "C"),
    ("A and B are wrong, C", "C"),
    ("The question asks about filtration. A, B and D are wrong.\nC.", "C"),
    # one option named in prose, or a conclusion
    ("After weighing the findings, option C fits this presentation best.", "C"),
    ("Therefore, C.", "C"),
    ("Thus (C).", "C"),
    ("Hence, option C.", "C"),
    ("I think it's C.", "C"),
    ("Filtration happens in the glomerulus, not the kidney as a whole.\n\nC", "C"),   # the last line
    ("Ans: C\nBecause of filtration in the capillary tuft.", "C"),
    ("C is the most likely diagnosis given the biopsy findings.", "C"),
    # words that look like letters: the article, B cells, X-ray, vitamin C, B12
    ("So a patient like this one needs imaging before anything else.", "no_answer"),
    ("The answer is a bit unclear without imaging.", "no_answer"),
    ("Answer: A patient like this one needs imaging first.", "no_answer"),
    ("A 45-year-old needs imaging first.", "no_answer"),
    ("Hence B cells proliferate in the germinal centre.", "no_answer"),
    ("Answer: x-ray first", "no_answer"),
    ("Vitamin C deficiency explains the bleeding gums in this patient.", "no_answer"),
    ("The answer depends on B12 levels.", "no_answer"),
    # failures that must stay failures
    ("\n\t\n", "empty"),
    ("<think>I would choose C because the glomerulus", "only_reasoning"),
    ("<think>The answer is C</think>", "only_reasoning"),
    ("A or C", "multiple_answers"),
    ("either A or C", "multiple_answers"),
    ("Option A or option C", "multiple_answers"),
    ("The answer is C or D", "multiple_answers"),
    ("answer: a or c", "multiple_answers"),
    ("C/D", "multiple_answers"),
    ("Answer: Bladder and kidney", "multiple_answers"),
    ("Answer: the glomerulus or the bladder", "multiple_answers"),
    ("(E)", "invalid_option"),
    ("Option E", "invalid_option"),
    ("\\boxed{F}", "invalid_option"),
    ("The answer is E.", "invalid_option"),
    ("answer: e", "invalid_option"),
    ("This needs more workup before deciding anything.", "no_answer"),
    ("Select the single best answer.", "no_answer"),
    ("The answer is not A.", "no_answer"),
    ("Neither; none of these fits the biopsy findings.", "no_answer"),
]

# Ten options: "I" is an option letter and the pronoun, "A" one and the article.
OPTIONS_TO_J = dict(zip("ABCDEFGHIJ", (
    "Hepatitis", "Cholangitis", "Steatosis", "Hemochromatosis", "Wilson disease", "Budd-Chiari syndrome",
    "Hepatocellular carcinoma", "Amyloidosis", "Cirrhosis", "Sarcoidosis")))
PHRASINGS_TO_J = [
    ("I", "I"),
    ("i", "I"),
    ("(I)", "I"),
    ("Answer: I", "I"),
    ("the answer is i", "I"),
    ("I think I", "I"),
    ("I think the answer is I.", "I"),
    ("I would choose I", "I"),
    ("I'd go with J", "J"),
    ("It is I.", "I"),
    ("I. Cirrhosis", "I"),
    ("I is correct", "I"),
    ("I and J", "multiple_answers"),
    ("I think it is cirrhosis.", "I"),
    ("I would say hepatitis", "A"),
    ("A. Hepatitis", "A"),
    ("To answer I would need more information.", "no_answer"),
    ("I am not sure which one fits.", "no_answer"),
    ("I don't know.", "no_answer"),
    ("A 45-year-old man needs imaging first.", "no_answer"),
    ("A liver biopsy would settle it.", "no_answer"),
]


def _check(got, expected):
    if expected in FAILURES:
        assert got.value is None and got.failure == expected, got
    else:
        assert got.value == expected and got.failure is None, got


@pytest.mark.parametrize("text,expected", PHRASINGS)
def test_answer_phrasings(text, expected):
    _check(parse_choice(text, OPTIONS), expected)


@pytest.mark.parametrize("text,expected", PHRASINGS_TO_J)
def test_answer_phrasings_article_and_pronoun(text, expected):
    _check(parse_choice(text, OPTIONS_TO_J), expected)


def test_gigantic_output_parses_fast_from_its_tail():
    text = "blah " * 2_000_000 + "\nAnswer: B"        # 10 MB of degenerate repetition
    t0 = time.perf_counter()
    got = parse_choice(text, OPTIONS)
    assert got.value == "B"
    assert time.perf_counter() - t0 < 2.0
    assert parse_choice("x" * (5 * MAX_PARSE_CHARS), OPTIONS).failure == "no_answer"


@pytest.mark.parametrize("text", ["*" * 30_000, "_" * 30_000, " x" + " " * 30_000 + "y", "( " * 15_000,
                                  "**option " * 4_000, "A, " * 10_000])
def test_degenerate_outputs_parse_fast(text):
    t0 = time.perf_counter()
    assert parse_choice(text, OPTIONS).failure is not None and parse_label(text).failure is not None
    assert time.perf_counter() - t0 < 2.0


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


LABEL_PHRASINGS = [
    ("Yes.", "yes"),
    ("YES", "yes"),
    ("yes, because the trial was randomized", "yes"),
    ("The answer is no", "no"),
    ("Answer: Maybe.", "maybe"),
    ("My answer is maybe.", "maybe"),
    ("**No**", "no"),
    ("Final answer: **Yes**", "yes"),
    ("### Answer\nno", "no"),
    ("\\boxed{\\text{no}}", "no"),
    ("<think>maybe?</think>\nNo.", "no"),
    ("I would say yes", "yes"),
    ("Probably yes.", "yes"),
    ("No, it does not", "no"),
    ("Not yes; the answer is no", "no"),
    ("It's not yes, it's no.", "no"),
    ("Not yes, no.", "no"),
    ("<think>yes", "only_reasoning"),
    ("The data are insufficient to decide.", "no_answer"),
]


@pytest.mark.parametrize("text,expected", LABEL_PHRASINGS)
def test_label_phrasings(text, expected):
    _check(parse_label(text), expected)


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
