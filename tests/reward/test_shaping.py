import pytest

from tasks.reward.item import RewardItem
from tasks.reward.shaping import ShapingParams, factor


def item(completion: str, kind: str = "choice") -> RewardItem:
    return RewardItem("p1", "closed", ({"role": "user", "content": "Which?"},), completion, answer="B",
                      answer_kind=kind, options=("x", "y", "z") if kind == "choice" else ())


def names(score) -> list[str]:
    return [p["name"] for p in score.detail["penalties"]]


def test_clean_completion_has_no_penalty():
    s = factor(item("<think>Wheeze suggests asthma.</think>\nAnswer: B"))
    assert s.value == 1.0
    assert names(s) == []


def test_answer_length_linear_then_floor():
    p = ShapingParams(answer_target=10, answer_rate=0.5, answer_floor=0.5)
    # 15 words: excess 5 -> 1 - .5 * 5 / 10 = .75
    s = factor(item(" ".join(["word"] * 15), kind="open"), params=p)
    assert s.value == pytest.approx(0.75)
    assert s.detail["answer_words"] == 15
    # 40 words: 1 - .5 * 30 / 10 = -.5 -> floor .5
    assert factor(item(" ".join(f"w{i}" for i in range(40)), kind="open"), params=p).value == pytest.approx(0.5)


def test_reasoning_length():
    p = ShapingParams(think_target=4, think_rate=0.5, think_floor=0.1)
    # 6 reasoning words: 1 - .5 * 2 / 4 = .75
    s = factor(item("<think>one two three four five six</think>\nAnswer: B"), params=p)
    assert s.value == pytest.approx(0.75)
    assert names(s) == ["think_length"]


def test_unclosed_reasoning_is_also_an_empty_answer():
    # x .5 (unclosed) x .3 (empty) = .15
    s = factor(item("<think>the patient has a wheeze and"))
    assert s.value == pytest.approx(0.15)
    assert names(s) == ["unclosed_think", "empty_answer"]


def test_empty_answer_after_closed_reasoning():
    s = factor(item("<think>wheeze, so B</think>"))
    assert s.value == pytest.approx(0.3)
    assert names(s) == ["empty_answer"]


@pytest.mark.parametrize("completion, kind, expected", [
    ("<think>r</think>The answer is B.", "choice", 0.8),       # closed item, no Answer: line
    ("<think>r</think>**Answer:** B", "choice", 1.0),
    ("<think>r</think>Final answer: yes", "judgement", 1.0),
    ("<think>r</think>It is yes.", "judgement", 0.8),
    ("<think>r</think>Asthma, most likely.", "open", 1.0),       # open items need no Answer: line
])
def test_answer_line(completion, kind, expected):
    assert factor(item(completion, kind)).value == pytest.approx(expected)


def test_degenerate_text_after_answer_line():
    # the answer line occurs twice -> x .8
    s = factor(item("<think>r</think>\nAnswer: B\nAnswer: B\nAnswer: B"))
    assert s.value == pytest.approx(0.8)
    assert names(s) == ["degenerate"]
    # a different sentence after the answer is fine
    assert factor(item("<think>r</think>\nAnswer: B\nThe wheeze points to asthma.")).value == 1.0


def test_loop_in_answer_without_answer_line():
    loop = "Drink more water. " * 3
    assert factor(item(f"<think>r</think>{loop}", "open")).value == pytest.approx(0.8)
    # twice is below the loop threshold (3)
    assert factor(item("<think>r</think>" + "Drink more water. " * 2, "open")).value == 1.0


def test_violations_compound_with_format():
    # no Answer: line .8 * (1 - .2)^2 = .8 * .64 = .512
    s = factor(item("<think>r</think>The answer is B."), violations=2)
    assert s.value == pytest.approx(0.512)
    assert names(s) == ["no_answer_line", "violations"]
    # per_violation .5, 3 violations: .5^3 = .125
    assert factor(item("Answer: B"), params=ShapingParams(per_violation=0.5), violations=3).value == 0.125


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        factor(item("Answer: B"), violations=-1)
    with pytest.raises(ValueError):
        ShapingParams(answer_floor=0.0)
    with pytest.raises(ValueError):
        ShapingParams(per_violation=1.0)
