import pytest

from tasks.reward.item import RewardItem
from tasks.reward.process import ProcessParams, judge, judge_prompt, score

OPTIONS = ("Pneumonia", "Asthma", "Pulmonary embolism", "Pneumothorax")
FULL = ("The question asks about a 45-year-old who presents with sudden dyspnea after a long flight. "
        "Option A is unlikely because there is no fever. B does not fit since there is no wheeze. "
        "The recent flight points to a clot. Therefore the answer is C.")


def choice(completion: str, options=OPTIONS) -> RewardItem:
    return RewardItem("p1", "closed", ({"role": "user", "content": "Most likely diagnosis?"},), completion,
                      answer="C", answer_kind="choice", options=options)


def other(completion: str, kind: str = "open") -> RewardItem:
    return RewardItem("p2", "open", ({"role": "user", "content": "What is it?"},), completion, answer_kind=kind)


def test_no_think_block_does_not_apply():
    # "Most likely diagnosis?" does not ask for reasoning: the component does not apply
    s = score(choice("Answer: C"))
    assert (s.value, s.detail["reason"]) == (None, "no_think")


def asked(completion: str, system: str = "", query: str = "Most likely diagnosis? Think step by step.") -> RewardItem:
    messages = (({"role": "system", "content": system},) if system else ()) + ({"role": "user", "content": query},)
    return RewardItem("p3", "closed", messages, completion, answer="C", answer_kind="choice", options=OPTIONS)


def test_skipping_the_reasoning_the_prompt_asks_for_scores_zero():
    # the query asks to think step by step: no <think> block scores 0, not None, so dropping the reasoning
    # can never beat reasoning (a None would be dropped from the fusion and the rule score renormalised alone)
    s = score(asked("Answer: C"))
    assert (s.value, s.detail["reason"]) == (0.0, "no_think")
    # the request may come from the system prompt as well
    assert score(asked("Answer: C", system="Show your reasoning before the answer.", query="Most likely?")).value == 0.0
    # the same prompt with reasoning: FULL has the four stages, concludes C as answered and weighs A, B, C:
    # (1 + 1 + 1) / 3 = 1
    assert score(asked(f"<think>{FULL}</think>\nAnswer: C")).value == pytest.approx(1.0)


def test_the_llm_judge_also_scores_skipped_reasoning_zero():
    out = judge([asked("Answer: C")], FakeClient([]))
    assert out[0].value == 0.0


def test_empty_think_scores_zero():
    s = score(choice("<think></think>Answer: C"))
    assert s.value == 0.0
    assert s.detail["reason"] == "empty_think"


def test_complete_reasoning_scores_one():
    s = score(choice(f"<think>{FULL}</think>\nAnswer: C"))
    # all 4 stages; conclusion C == answer C; options A, B, C mentioned -> 3 / 3
    assert s.detail["stages"] == ["restate", "hypotheses", "evidence", "conclusion"]
    assert (s.detail["framework"], s.detail["robustness"], s.detail["depth"]) == (1.0, 1.0, 1.0)
    assert s.value == 1.0


def test_framework_is_fraction_of_stages():
    # restate ("the question asks") + conclusion ("therefore", "the answer is"): 2 / 4
    s = score(choice("<think>The question asks for a drug. Therefore the answer is C.</think>\nAnswer: C"))
    assert s.detail["stages"] == ["restate", "conclusion"]
    assert s.detail["framework"] == 0.5


def test_reasoning_disagreeing_with_answer():
    s = score(choice(f"<think>{FULL}</think>\nAnswer: A"))
    # robustness 0; framework 1, depth 1 -> (1 + 0 + 1) / 3
    assert s.detail["robustness"] == 0.0
    assert s.value == pytest.approx(2 / 3)


def test_unclosed_reasoning_has_zero_robustness():
    s = score(choice(f"<think>{FULL}"))
    assert s.detail["robustness"] == 0.0
    assert s.detail["robustness_why"] == {"reason": "unclosed"}


def test_self_contradiction_is_penalised():
    # conclusion B == answer B -> 1, statements name A and B -> x (1 - .5) = .5
    s = score(choice("<think>The answer is A. Wait, no: the answer is B.</think>\nAnswer: B"))
    assert s.detail["robustness"] == 0.5
    assert s.detail["robustness_why"]["contradiction"] == ["A", "B"]


def test_no_conclusion_in_reasoning():
    # the reasoning names no option at all -> no_conclusion .5
    s = score(choice("<think>Sudden dyspnea after a flight.</think>\nAnswer: C"))
    assert s.detail["robustness"] == 0.5
    assert s.detail["robustness_why"]["reason"] == "no_conclusion"


def test_judgement_labels_compared():
    item = other("<think>The trial met its endpoint, so the answer is yes.</think>\nAnswer: no", "judgement")
    assert score(item).detail["robustness"] == 0.0
    item = other("<think>The trial met its endpoint, so the answer is yes.</think>\nAnswer: yes", "judgement")
    assert score(item).detail["robustness"] == 1.0


def test_open_answer_overlap_with_conclusion_sentence():
    think = "It could be tension headache. Therefore the diagnosis is migraine with aura."
    # conclusion terms {diagnosis, migraine, aura}, answer {migraine}: 1 / min(3, 1) = 1
    assert score(other(f"<think>{think}</think>Migraine.")).detail["robustness"] == 1.0
    # answer {tension, headache}: no overlap -> 0
    assert score(other(f"<think>{think}</think>Tension headache.")).detail["robustness"] == 0.0
    # answer {migraine, cluster, headache, likely->stop}: overlap {migraine}: 1 / min(3, 3) = 1/3
    s = score(other(f"<think>{think}</think>Migraine or cluster headache."))
    assert s.detail["robustness"] == pytest.approx(1 / 3)


def test_depth_counts_options_weighed():
    # B and C mentioned: 2 / 3
    s = score(choice("<think>B is unlikely. Option C fits best.</think>\nAnswer: C"))
    assert s.detail["depth_why"]["candidates"] == ["B", "C"]
    assert s.detail["depth"] == pytest.approx(2 / 3)
    # two options only: k = min(3, 2); both mentioned by text -> 1
    s = score(choice("<think>Asthma or pneumonia? Wheeze: asthma.</think>\nAnswer: B", ("Pneumonia", "Asthma")))
    assert s.detail["depth_why"] == {"candidates": ["A", "B"], "k": 2, "loops": []}
    assert s.detail["depth"] == 1.0


def test_depth_counts_hypotheses_for_open_items():
    think = "The differential includes migraine, tension headache and sinusitis. Consider cluster headache."
    s = score(other(f"<think>{think}</think>Migraine."))
    assert s.detail["depth_why"]["candidates"] == ["cluster headache", "migraine", "sinusitis", "tension headache"]
    assert s.detail["depth"] == 1.0          # min(1, 4 / 3)
    s = score(other("<think>It could be migraine.</think>Migraine."), ProcessParams(k=4))
    assert s.detail["depth"] == 0.25          # 1 / 4


def test_degenerate_loop_halves_depth():
    loop = "Let me check the options again. " * 3
    s = score(choice(f"<think>Option A, option B and option C. {loop}Therefore C.</think>\nAnswer: C"))
    # 3 options -> 1, one looped sentence -> x .5
    assert s.detail["depth"] == 0.5
    assert s.detail["depth_why"]["loops"] == ["let me check the options again"]


def test_weights_select_criteria():
    p = ProcessParams(weights={"framework": 1.0, "robustness": 0.0, "depth": 0.0})
    s = score(choice("<think>The question asks for a drug. Therefore the answer is C.</think>\nAnswer: C"), p)
    assert s.value == 0.5                     # framework only: 2 / 4
    with pytest.raises(ValueError):
        ProcessParams(weights={"framework": 1.0})


class FakeClient:
    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def complete_many(self, chats, return_exceptions=True, **kw):
        self.calls.append(list(chats))
        return [self.replies.pop(0) for _ in chats]


def test_judge_prompt_holds_reasoning_and_answer():
    chat = judge_prompt(choice(f"<think>{FULL}</think>\nAnswer: C"))
    assert chat[0]["role"] == "system" and "framework" in chat[0]["content"]
    assert "C. Pulmonary embolism" in chat[1]["content"] and FULL in chat[1]["content"]
    assert "never finished" in judge_prompt(choice("<think>partial"))[1]["content"]


def test_judge_scores_repairs_and_skips():
    items = [choice(f"<think>{FULL}</think>Answer: C"), choice("Answer: C"), choice("<think>x</think>Answer: A")]
    client = FakeClient(['{"framework": 8, "robustness": 10, "depth": 6}',
                         "it is good",                                      # unreadable -> repair turn
                         '{"framework": 2, "robustness": 0, "depth": 1}'])
    out = judge(items, client)
    # (.8 + 1 + .6) / 3 = .8; (.2 + 0 + .1) / 3 = .1
    assert out[0].value == pytest.approx(0.8) and out[0].detail["source"] == "llm"
    assert out[1].value is None and out[1].detail["reason"] == "no_think"
    assert out[2].value == pytest.approx(0.1) and out[2].detail["repaired"] is True
    assert len(client.calls) == 2 and len(client.calls[0]) == 2    # the item without <think> is not asked


def test_judge_failure_is_none():
    out = judge([choice("<think>x</think>Answer: A")], FakeClient(['{"framework": 12}', "still no"]))
    assert out[0].value is None and out[0].detail["reason"] == "judge_failed"
