"""Reference-augmented pairwise reward and best-of-N reference selection."""

from __future__ import annotations

import json
import math

import pytest

from tasks.reward import pairwise
from tasks.reward.item import RewardItem

QUERY = "Which first-line drug and starting dose for type 2 diabetes?"
RUBRIC = ({"id": "r1", "text": "Recommends metformin", "kind": "include", "terms": ["metformin"]},
          {"id": "r2", "text": "Gives the starting dose", "kind": "include", "terms": ["500 mg"]})
REFERENCE = "Metformin 500 mg daily."


def _item(completion, reference=REFERENCE, answer="metformin", rubric=RUBRIC):
    return RewardItem(prompt_id="p", task="open", messages=({"role": "user", "content": QUERY},),
                      completion=completion, answer=answer, rubric=rubric, reference=reference)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


class JudgeClient:
    """A fake judge: `decide(answer_a, answer_b)` -> winner, or a canned reply list when given."""

    def __init__(self, decide=None, replies=()):
        self.decide, self.replies, self.chats = decide, list(replies), []

    def complete_many(self, chats, return_exceptions=False, **kw):
        self.chats += chats
        if self.replies:
            return [self.replies.pop(0) for _ in chats]
        out = []
        for chat in chats:
            text = chat[-1]["content"]
            a = text.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
            b = text.split("Answer B:\n", 1)[1].split("\n\nOutput JSON", 1)[0]
            out.append(json.dumps({"winner": self.decide(a, b)}))
        return out


# ---- local path ---------------------------------------------------------------------------------------
def test_not_applicable_without_reference_and_no_answer():
    assert pairwise.score(_item("Metformin.", reference="")).value is None
    s = pairwise.score(_item("<think>metformin"))
    assert (s.value, s.detail["reason"]) == (0.0, "no_answer")


def test_equal_quality_is_one_half():
    assert pairwise.score(_item(REFERENCE)).value == 0.5


def test_local_value_hand_computed():
    # reference: rubric 2/2 = 1; gold F1: content words {metformin, 500, mg, daily} vs {metformin}:
    #   P = 1/4, R = 1, F1 = 0.4  ->  q_ref = (1 + 0.4) / 2 = 0.7
    # "Metformin.": rubric 1/2 = 0.5, F1 = 1  ->  q = 0.75;  value = sigmoid((0.75 - 0.7) / 0.25) = sigmoid(0.2)
    s = pairwise.score(_item("Metformin."))
    assert (s.detail["q_reference"], s.detail["q_candidate"]) == (pytest.approx(0.7), pytest.approx(0.75))
    assert s.value == pytest.approx(_sigmoid(0.2))
    # "Insulin.": rubric 0, F1 0 -> q = 0; value = sigmoid(-0.7 / 0.25) = sigmoid(-2.8)
    assert pairwise.score(_item("Insulin.")).value == pytest.approx(_sigmoid(-2.8))
    # a softer temperature: sigmoid(-0.7 / 1.0)
    assert pairwise.score(_item("Insulin."), temperature_scale=1.0).value == pytest.approx(_sigmoid(-0.7))


def test_local_uses_only_available_signals():
    # no rubric: q = gold F1 only. reference 0.4 (above), "Metformin." 1.0 -> sigmoid(0.6 / 0.25) = sigmoid(2.4)
    assert pairwise.score(_item("Metformin.", rubric=())).value == pytest.approx(_sigmoid(2.4))
    # neither a rubric nor a gold answer: nothing to compare by
    assert pairwise.score(_item("Metformin.", rubric=(), answer="")).value is None


# ---- LLM path -------------------------------------------------------------------------------------------
def test_llm_consistent_preference():
    client = JudgeClient(lambda a, b: "A" if "metformin" in a.lower() and "500" not in a else "B")
    s = pairwise.score(_item("Metformin, and recheck HbA1c in 3 months."), client=client)
    # the completion wins as A (1) and as B (1): mean 1.0, both orders agree
    assert (s.value, s.detail["winners"], s.detail["position_consistent"]) == (1.0, ["A", "B"], True)
    assert len(client.chats) == 2


def test_llm_position_bias_cancels():
    s = pairwise.score(_item("Insulin."), client=JudgeClient(lambda a, b: "A"))
    # always "A": the completion wins first (1), loses second (0): mean 0.5, recorded as inconsistent
    assert (s.value, s.detail["preferences"], s.detail["position_consistent"]) == (0.5, [1.0, 0.0], False)


def test_llm_tie_and_repair():
    client = JudgeClient(replies=['{"winner": "tie"}', "Both are good.", '{"winner": "Tie"}'])
    s = pairwise.score(_item("Metformin."), client=client)
    # first order tie (0.5); second order unparseable, repaired to tie (0.5): mean 0.5
    assert (s.value, s.detail["repaired"], s.detail["position_consistent"]) == (0.5, [False, True], True)


def test_llm_unrepaired_falls_back_to_local():
    client = JudgeClient(replies=['{"winner": "A"}', "B is better", '{"winner": "C"}'])
    s = pairwise.score(_item("Metformin."), client=client)
    assert s.detail["judge"] == "local" and s.value == pytest.approx(_sigmoid(0.2))     # as computed above
    assert s.detail["failure"]["kind"] == "unparseable" and "got 'C'" in s.detail["failure"]["detail"]


# ---- best of N ------------------------------------------------------------------------------------------
def test_best_of_n_hand_computed_and_ties():
    base = _item("", reference="")
    # q: "Insulin." 0; "Metformin." (0.5 + 1) / 2 = 0.75; "Metformin 500 mg daily." (1 + 0.4) / 2 = 0.7;
    # "metformin!" the same as "Metformin." -> tie at 0.75, the lower index (1) wins
    idx, scores = pairwise.best_of_n(["Insulin.", "Metformin.", REFERENCE, "metformin!"], base)
    assert idx == 1 and scores == pytest.approx([0.0, 0.75, 0.7, 0.75])
    with pytest.raises(ValueError):
        pairwise.best_of_n([], base)
    with pytest.raises(ValueError):
        pairwise.best_of_n(["x"], _item("", reference="", rubric=(), answer=""))
