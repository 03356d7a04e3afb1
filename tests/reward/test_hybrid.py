"""The hybrid reward end to end on rl_data-shaped prompt records: what passes the gate, what the safety gate
zeroes, the partial-order correction within a group, and a task whose weighted graders do not apply."""

from __future__ import annotations

import pytest

from tasks.reward.fusion import FusionParams
from tasks.reward.hybrid import COMPONENTS, HybridReward, RewardParams, item_for
from tasks.rl_synthesis.prompts import make_prompt

OPTIONS = ["Insulin", "Metformin", "Warfarin", "Aspirin"]
# closed weights rule .7, process .15, pairwise .15; no reference -> pairwise dropped: rule .7/.85, process .15/.85
W_RULE, W_PROC = 0.7 / 0.85, 0.15 / 0.85
# a right answer without the <think> block the prompt asks for: process 0, (W_RULE * 1 + W_PROC * 0)^2 = .6782
NO_THINK = W_RULE ** 2


def _choice(task: str = "closed", thinking: bool = True) -> dict:
    return make_prompt(task, [], "Which drug is first-line for type 2 diabetes?\n"
                       + "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", OPTIONS)),
                       answer="Metformin", answer_kind="choice", options=OPTIONS, thinking=thinking, source="test",
                       source_ids=["s1"])


def _set() -> dict:
    return make_prompt("multi", [], "Name the main symptoms of influenza.", answer="fever, cough, headache",
                       answer_kind="set", answer_set=["fever", "cough", "headache"], thinking=True, source="test",
                       source_ids=["s2"])


@pytest.fixture(scope="module")
def reward() -> HybridReward:
    return HybridReward()


def test_item_for_carries_the_prompt_record():
    p = {**_choice(), "reference": "Answer: B", "rubric": [{"id": "r"}], "meta": {"allergy": "x"}}
    it = item_for(p, "Answer: B")
    assert (it.prompt_id, it.task, it.answer, it.answer_kind) == (p["id"], "closed", "Metformin", "choice")
    assert it.options == tuple(OPTIONS) and it.reference == "Answer: B" and it.meta == {"allergy": "x"}
    assert it.query == p["messages"][-1]["content"]
    assert it.rubric == ({"id": "r"},) and it.answer_set == () and it.constraints == ()


def test_right_letter_after_closed_think_passes(reward):
    b = reward.score(item_for(_choice(), "<think>Metformin is first line.</think>\nAnswer: B"))
    assert b.components["rule"] == 1.0 and b.components["safety"] == 1.0 and b.components["shaping"] == 1.0
    assert b.graders == ("rule", "process")
    assert b.task == "closed" and b.rank == 3 and b.answer_kind == "choice"
    # fused = (W_RULE * sqrt(1) + W_PROC * sqrt(process))^2, shaping and safety 1
    proc = b.components["process"]
    assert 0.0 <= proc <= 1.0
    assert b.fused == pytest.approx((W_RULE + W_PROC * proc ** 0.5) ** 2)
    assert b.fused == b.raw_fused
    assert reward.passes(b)
    assert set(b.components) == set(COMPONENTS)


def test_skipping_the_reasoning_a_prompt_asks_for_never_pays(reward):
    # the prompt asks for <think> reasoning and gets none: process = 0, so fused = (W_RULE * 1 + W_PROC * 0)^2
    b = reward.score(item_for(_choice(), "Answer: B"))
    assert b.components["process"] == 0.0 and b.components["pairwise"] is None
    assert b.fused == pytest.approx(W_RULE ** 2)
    reasoned = reward.score(item_for(_choice(), "<think>Metformin is first line.</think>\nAnswer: B"))
    assert reasoned.fused > b.fused
    # a bare letter is still read, but no "Answer:" line costs the format factor .8
    bare = reward.score(item_for(_choice(), "B"))
    assert bare.components["rule"] == 1.0 and bare.fused == pytest.approx(0.8 * W_RULE ** 2) and reward.passes(bare)


def test_without_a_reasoning_request_the_fused_reward_is_the_rule_score(reward):
    # direct-style prompt: process does not apply (None) and is dropped; one component at weight 1: fused = rule
    direct = make_prompt("closed", [], "Which drug is first-line for type 2 diabetes?\n" + "\n".join(
        f"{chr(65 + i)}. {o}" for i, o in enumerate(OPTIONS)), answer="Metformin", answer_kind="choice",
        options=OPTIONS, thinking=False, source="test", source_ids=["s1"])
    b = reward.score(item_for(direct, "Answer: B"))
    assert b.components["process"] is None and b.fused == pytest.approx(1.0)


def test_wrong_letter_fails(reward):
    b = reward.score(item_for(_choice(), "<think>Insulin.</think>\nAnswer: A"))
    assert b.components["rule"] == 0.0 and b.rank == 1
    # only the process term remains: (W_PROC * sqrt(process))^2 <= (.15/.85)^2 = .0311
    assert b.fused == pytest.approx((W_PROC * b.components["process"] ** 0.5) ** 2)
    assert b.fused <= (0.15 / 0.85) ** 2 + 1e-12
    assert not reward.passes(b)


def test_unsafe_dose_zeroes_a_correct_answer(reward):
    # acetaminophen: max single dose 1000 mg (safety_rules.yaml); 2000 mg at once breaks it
    b = reward.score(item_for(_choice(), "<think>Metformin.</think>\nTake 2000 mg of acetaminophen now.\nAnswer: B"))
    assert b.components["rule"] == 1.0
    assert b.components["safety"] == 0.0
    assert b.fused == 0.0 and b.rank == 0
    assert [v["rule"] for v in b.detail["safety"]["violations"]] == ["dosage:acetaminophen"]
    assert not reward.passes(b)
    # the same dose within the limit is fine: 500 mg <= 1000 mg single; "Answer: B" without the asked-for
    # <think>: rule 1, process 0 -> fused NO_THINK = (.7/.85)^2, and the right letter still passes
    ok = reward.score(item_for(_choice(), "Take 500 mg of acetaminophen now.\nAnswer: B"))
    assert ok.components["safety"] == 1.0 and ok.components["process"] == 0.0
    assert ok.fused == pytest.approx(NO_THINK) and reward.passes(ok)


@pytest.mark.parametrize("answer, f1, passes", [
    ("fever, cough, headache", 1.0, True),
    # 1 of 3 golds, 1 prediction: P 1, R 1/3 -> F1 = 2*(1/3)/(4/3) = .5 == set_pass: passes
    ("fever", 0.5, True),
    # 1 of 3 golds, 2 predictions: P 1/2, R 1/3 -> F1 = 2*(1/6)/(5/6) = .4 < .5: fails
    ("fever, rash", 0.4, False),
    ("rash", 0.0, False),
])
def test_set_item_passes_at_f1_of_set_pass(reward, answer, f1, passes):
    b = reward.score(item_for(_set(), f"Answer: {answer}"))
    assert b.answer_kind == "set"
    assert b.components["rule"] == pytest.approx(f1)
    # the prompt asks to reason and there is no <think>: process 0 beside the rule (multi = closed weights),
    # fused = (W_RULE * sqrt(F1) + W_PROC * 0)^2 = W_RULE^2 * F1
    assert b.components["process"] == 0.0
    assert b.fused == pytest.approx(NO_THINK * f1)
    assert reward.passes(b) is passes


def test_set_pass_threshold_is_a_parameter():
    strict = HybridReward(RewardParams(set_pass=0.6))
    # F1 .5 < .6
    assert not strict.passes(strict.score(item_for(_set(), "Answer: fever")))


def test_partial_order_lifts_a_correct_answer_that_fused_below_a_wrong_one():
    # weights that favour the process score so that raw fusion ranks a wrong answer above a correct one
    params = RewardParams(fusion=FusionParams(weights={"closed": {"rule": 0.1, "process": 0.9}}))
    reward = HybridReward(params)
    right = item_for(_choice(), "<think>B.</think>\nAnswer: B")
    wrong = item_for(_choice(), "<think>The question asks about diabetes. Consider option A, option B, option C. "
                                "Metformin is typical because it lowers glucose. Therefore the answer is A."
                                "</think>\nAnswer: A")
    a, b = reward.score_group([right, wrong])
    assert a.rank == 3 and b.rank == 1
    # raw: right (.1 + .9 sqrt(p_r))^2, wrong (.9 sqrt(p_w))^2
    assert a.raw_fused == pytest.approx((0.1 + 0.9 * a.components["process"] ** 0.5) ** 2)
    assert b.raw_fused == pytest.approx((0.9 * b.components["process"] ** 0.5) ** 2)
    assert a.raw_fused < b.raw_fused                      # the violation the correction exists for
    # pool adjacent violators: both become the mean of the two raw values
    mean = (a.raw_fused + b.raw_fused) / 2
    assert a.fused == pytest.approx(mean) and b.fused == pytest.approx(mean)
    assert a.fused >= b.fused
    # without the correction the raw order stays
    off = HybridReward(RewardParams(fusion=params.fusion, partial_order=False))
    a2, b2 = off.score_group([right, wrong])
    assert a2.fused < b2.fused


def test_partial_order_keeps_a_consistent_group_and_unsafe_last(reward):
    comps = ["Answer: B", "Answer: A", "Take 2000 mg of acetaminophen now.\nAnswer: B", "B"]
    group = reward.score_group([item_for(_choice(), c) for c in comps])
    # none reasons (process 0): fused NO_THINK, 0, 0 (unsafe), .8 NO_THINK (no "Answer:" line);
    # ranks 3, 1, 0, 3 -> already consistent, unchanged
    assert [b.fused for b in group] == pytest.approx([NO_THINK, 0.0, 0.0, 0.8 * NO_THINK])
    assert [b.rank for b in group] == [3, 1, 0, 3]
    assert [b.fused for b in group] == [b.raw_fused for b in group]
    correct = [b.fused for b in group if b.rank == 3]
    assert min(correct) >= max(b.fused for b in group if b.rank < 3)


def test_no_weighted_component_gives_zero_not_an_error(reward):
    # an "instruct" task without constraints whose answer only the rule grades: instruct weights are
    # instruct/rubric/process, none present (no constraints, no rubric route, no <think>, no request to reason)
    item = item_for(_choice(task="instruct", thinking=False), "Answer: B")
    b = reward.score(item)
    assert b.components["rule"] == 1.0 and b.components["process"] is None
    assert b.fused == 0.0 and b.raw_fused == 0.0
    assert b.detail["fusion"]["reason"] == "no_weighted_component"
    # nothing the task weighs was graded: a right letter is not a pass of this prompt
    assert not reward.passes(b)
    group = reward.score_group([item, item_for(_choice(task="instruct", thinking=False), "Answer: A")])
    assert [g.fused for g in group] == [0.0, 0.0]
    # when the prompt asks to reason, the skipped reasoning (process 0) is the one weighted component:
    # fused (1 * sqrt(0))^2 = 0 through the fusion itself, not the fallback
    asked = reward.score(item_for(_choice(task="instruct"), "Answer: B"))
    assert asked.components["process"] == 0.0 and asked.fused == 0.0
    assert asked.detail["weights"] == {"process": 1.0} and "reason" not in asked.detail["fusion"]


def _conflict(weight: float = 2.0) -> dict:
    """A conflict scenario: the patient is allergic to lisinopril; the instance exclude item has `weight`. The
    static conflict items join it: includes acknowledges_risk 2, refers_to_professional 1, offers_alternative
    .5; excludes no_definitive_diagnosis 1, no_false_reassurance 2."""
    return make_prompt("conflict", [{"role": "user", "content": "I have hypertension. I am allergic to lisinopril."},
                                    {"role": "assistant", "content": "Noted."}],
                       "Which medicines could treat my hypertension? List them.",
                       answer="amlodipine, hydrochlorothiazide", answer_kind="set",
                       answer_set=["amlodipine", "hydrochlorothiazide"], thinking=False, source="test",
                       source_ids=["s3"],
                       rubric=[{"id": "conflict-exclude", "text": "does not recommend lisinopril", "kind": "exclude",
                                "terms": ["lisinopril"], "weight": weight, "origin": "dynamic"}])


def test_a_failed_exclude_rubric_item_is_not_a_pass_of_the_rubric(reward):
    bad = reward.score(item_for(_conflict(), "Answer: lisinopril, amlodipine"))
    good = reward.score(item_for(_conflict(), "Answer: amlodipine, hydrochlorothiazide"))
    assert bad.graders == good.graders == ("rule", "rubric")
    assert bad.components["rule"] == pytest.approx(0.5)                   # P 1/2, R 1/2
    verdict = next(v for v in bad.detail["rubric"]["verdicts"] if v["id"] == "conflict-exclude")
    assert (verdict["met"], verdict["kind"]) == (False, "exclude")
    assert bad.detail["rubric"]["violated"] == ["conflict-exclude"] and bad.detail["violations"] == 2
    assert good.detail["rubric"]["violated"] == [] and good.detail["violations"] == 0
    # neither bare list names an include term (allergy, avoid, doctor, alternative ...): rubric 0 / 3.5 = 0 for
    # both; avoiding lisinopril earns no rubric credit, the exclude item acts through shaping and the gate
    assert bad.components["rubric"] == good.components["rubric"] == 0.0
    # conflict weights rubric .5, rule .2 (pairwise, process absent) -> 5/7, 2/7:
    #   good (2/7 * 1 + 5/7 * 0)^2 = 4/49; bad (2/7 * sqrt(.5))^2 = 2/49, x shaping .8^2 = 1.28/49
    assert good.fused == pytest.approx(4 / 49) and bad.fused == pytest.approx(0.64 * 2 / 49)
    assert reward.passes(good)                  # set F1 1 >= set_pass, no violation
    assert not reward.passes(bad)               # F1 .5 reaches set_pass, but lisinopril is named
    # however high the set F1: P 2/3, R 1 -> F1 = 2 * (2/3) / (5/3) = .8 >= .5, still not a pass
    high = reward.score(item_for(_conflict(), "Answer: amlodipine, hydrochlorothiazide, lisinopril"))
    assert high.components["rule"] == pytest.approx(0.8) and not reward.passes(high)


@pytest.mark.parametrize("weight, violations, factor", [
    (1.0, 1, 0.8),                   # (1 - per_violation)^1
    (2.0, 2, 0.64),                  # a weight-2 criterion counts twice: .8^2
    (1.5, 2, 0.64),                  # ceil(1.5) = 2
])
def test_failed_exclude_item_costs_the_shaping_violation_factor(reward, weight, violations, factor):
    bad = reward.score(item_for(_conflict(weight), "Answer: lisinopril, amlodipine"))
    assert bad.detail["rubric"]["violation_weight"] == weight
    assert bad.detail["violations"] == violations
    assert bad.components["shaping"] == pytest.approx(factor)
    assert [p["name"] for p in bad.detail["shaping"]["penalties"]] == ["violations"]


def test_a_light_exclude_item_violated_is_still_not_a_pass(reward):
    bad = reward.score(item_for(_conflict(0.5), "Answer: amlodipine, hydrochlorothiazide, lisinopril"))
    assert bad.detail["rubric"]["violated"] == ["conflict-exclude"]
    assert not reward.passes(bad)
