"""Instruction-following SFT data: the four constructions with the local writer (hand-derived replies), the
LLM writer against a scripted client (a pass, a checker failure, a request failure), the scenario graph,
the train/eval split boundary, accounting and determinism."""

from __future__ import annotations

import pytest

from eval.constraints import REGISTRY, SPLITS, Constraint, compatible, word_count
from tasks.sft_synthesis.instruct import (
    SCENARIO_GRAPH,
    InstructParams,
    LLMInstructWriter,
    LocalInstructWriter,
    build_instruct,
    implied_constraints,
    instruction_omissions,
    rationale,
    scenario_instruction,
)

GLAUCOMA = ("Glaucoma is a group of diseases that can damage the eye's optic nerve and result in vision loss and "
            "blindness. While glaucoma can strike anyone, the risk is much greater for people over 60. Treatment "
            "includes eye drops, laser surgery, and regular MRI follow-up. Call 1-800-222-1222 for more "
            "information. Early detection is very important.")
ASTHMA = ("Asthma symptoms include:\n- wheezing\n- coughing\n- chest tightness\n"
          "See a doctor if symptoms get worse.")
BASE = [
    {"id": "mq1", "question": "What is glaucoma?", "answer": GLAUCOMA, "source_ids": ["medquad:1"],
     "keywords": ["optic nerve", "Glaucoma"]},
    {"id": "mq2", "question": "What are the symptoms of asthma?", "answer": ASTHMA, "source_ids": ["medquad:2"],
     "keywords": ["wheezing", "Asthma"]},
]
DISCLAIMER = "Please consult a healthcare professional about your own situation."
ONLY = dict(forward=0, multi_turn=0, implicit=0, reverse=0)


def params(**kw) -> InstructParams:
    return InstructParams(**{**ONLY, **kw})


def test_forward_local_uppercase_is_the_reference_in_capitals():
    out = build_instruct(BASE, LocalInstructWriter(), params(forward=2, kinds=("format.uppercase",)), seed=0)
    assert (out.read, len(out.kept), out.rejected) == (2, 2, [])
    by_question = {s["messages"][0]["content"].split("\n\n")[0]: s for s in out.kept}
    s = by_question["What is glaucoma?"]
    assert s["messages"][0]["content"] == ("What is glaucoma?\n\nYour entire response must be in English and in all "
                                           "capital letters.")
    assert s["messages"][1]["content"] == GLAUCOMA.upper()
    assert s["meta"]["constraints"] == [{"kind": "format.uppercase", "args": {}}]
    assert (s["meta"]["construction"], s["meta"]["checks"], s["meta"]["accuracy"]) == ("forward", [True], "code")
    assert s["family"] == "instruct" and s["source_ids"] == ["medquad:1"] and s["meta"]["answer_kind"] == "open"


def test_answers_are_cut_to_whole_sentences_within_max_answer_words():
    out = build_instruct(BASE[:1], LocalInstructWriter(), params(forward=1, kinds=("format.uppercase",),
                                                                 max_answer_words=40), seed=0)
    # 19 + 14 words fit in 40; the third sentence (10 words) does not
    assert out.kept[0]["messages"][1]["content"] == GLAUCOMA.upper().split(" TREATMENT")[0]


def test_only_train_kinds_ever_appear_and_accounting_holds():
    seen = set()
    for seed in range(4):
        out = build_instruct(BASE, LocalInstructWriter(), params(forward=15, multi_turn=5, implicit=10, reverse=5),
                             seed=seed)
        assert out.read == 35 == len(out.kept) + len(out.rejected)
        for s in out.kept:
            kinds = [c["kind"] for c in s["meta"]["constraints"]]
            seen |= set(kinds)
            assert all(s["meta"]["checks"]) and len(kinds) == len(s["meta"]["checks"])
        for r in out.rejected:
            seen |= {c["kind"] for c in r["item"]["constraints"]}
    assert seen and seen <= set(SPLITS["train"]) and not seen & set(SPLITS["eval"])
    with pytest.raises(ValueError):
        InstructParams(kinds=("format.lowercase",))          # an eval kind


def test_deterministic_per_seed():
    a = build_instruct(BASE, LocalInstructWriter(), params(forward=6, reverse=2), seed=5)
    b = build_instruct(BASE, LocalInstructWriter(), params(forward=6, reverse=2), seed=5)
    c = build_instruct(BASE, LocalInstructWriter(), params(forward=6, reverse=2), seed=6)
    assert [s["id"] for s in a.kept] == [s["id"] for s in b.kept]
    assert [s["id"] for s in a.kept] != [s["id"] for s in c.kept]


def test_multi_turn_keeps_the_rule_in_the_second_reply():
    out = build_instruct(BASE, LocalInstructWriter(), params(multi_turn=1, kinds=("safety.disclaimer",)), seed=0)
    assert len(out.kept) == 1
    m = out.kept[0]["messages"]
    assert [x["role"] for x in m] == ["user", "assistant", "user", "assistant"]
    assert m[0]["content"].startswith("For this whole conversation, follow these rules: Include a disclaimer")
    answers = {"What is glaucoma?": GLAUCOMA, "What are the symptoms of asthma?": ASTHMA}
    q1, q2 = m[0]["content"].split("\n\n")[-1], m[2]["content"]
    assert {q1, q2} == set(answers)
    assert m[1]["content"] == answers[q1] + "\n\n" + DISCLAIMER
    assert m[3]["content"] == answers[q2] + "\n\n" + DISCLAIMER
    assert "still apply" in m[3]["reasoning_content"] and "still apply" not in m[1]["reasoning_content"]
    assert sorted(out.kept[0]["source_ids"]) == ["medquad:1", "medquad:2"]
    # one usable item: no second question
    one = build_instruct(BASE[:1], LocalInstructWriter(), params(multi_turn=2), seed=0)
    assert (one.read, one.by_gate()) == (2, {"input": {"not_enough_items": 2}})


def test_scenario_graph_paths_and_instruction():
    import numpy as np
    rng = np.random.default_rng(0)
    implied = implied_constraints(["audience:patient", "channel:sms"], {"keywords": ["Glaucoma"]}, rng)
    assert [(n, c.kind) for n, c in implied] == [
        ("channel:sms", "length.max_words"), ("audience:patient", "safety.disclaimer"),
        ("audience:patient", "language.no_caps_abbreviations"), ("channel:sms", "safety.no_identifiers"),
        ("channel:sms", "format.no_markdown")]
    assert implied[0][1].kwargs == {"n": 60}
    assert scenario_instruction(["audience:patient", "channel:sms"], "What is glaucoma?") == \
        "Reply as a text message to a patient. What is glaucoma?"
    # every root-to-leaf path implies a conflict-free set of train kinds
    for root in SCENARIO_GRAPH["roots"]:
        for leaf in SCENARIO_GRAPH["nodes"][root]["next"]:
            cs = [c for _, c in implied_constraints([root, leaf], {"topic": "Glaucoma"}, rng)]
            assert compatible(cs) and {c.kind for c in cs} <= set(SPLITS["train"]), (root, leaf)


def test_implicit_sms_reply_to_patient():
    out = build_instruct(BASE[:1], LocalInstructWriter(), params(implicit=12), seed=0)
    sms = [s for s in out.kept if s["meta"]["scenario"] == ["audience:patient", "channel:sms"]]
    assert sms, out.by_gate()
    reply = sms[0]["messages"][1]["content"]
    # 60-word cap: the disclaimer and the spelled-out MRI push the last two sentences out
    assert reply == GLAUCOMA.split(" Call")[0].replace("MRI", "magnetic resonance imaging") + "\n\n" + DISCLAIMER
    assert word_count(reply) == 55
    assert sms[0]["messages"][0]["content"] == "Reply as a text message to a patient. What is glaucoma?"
    think = sms[0]["messages"][1]["reasoning_content"]
    assert '"as a text message" (channel) implies: Answer with at most 60 words.' in think
    assert "the reply has 55 words, within 60: satisfied." in think
    # a kind outside the allowed set is a graph rejection, not a silent drop
    bad = build_instruct(BASE[:1], LocalInstructWriter(), params(implicit=3, kinds=("format.uppercase",)), seed=0)
    assert bad.by_gate() == {"graph": {"kind_not_allowed": 3}}


def test_reverse_infers_from_the_reference():
    out = build_instruct(BASE[1:], LocalInstructWriter(), params(reverse=1, kinds=("format.bullets",)), seed=0)
    s = out.kept[0]
    assert s["meta"]["constraints"] == [{"kind": "format.bullets", "args": {"n": 3}}]
    assert s["messages"][0]["content"] == ("What are the symptoms of asthma?\n\nYour answer must contain exactly 3 "
                                           "bullet points. Use markdown bullet points such as: * This is a point.")
    assert s["messages"][1]["content"] == ASTHMA
    assert "the reply has 3 bullet points: satisfied." in s["messages"][1]["reasoning_content"]
    kw = build_instruct(BASE[1:], LocalInstructWriter(), params(reverse=1, kinds=("content.keywords",)), seed=0)
    assert kw.kept[0]["meta"]["constraints"] == [{"kind": "content.keywords", "args": {"keywords": ["Asthma",
                                                                                                   "wheezing"]}}]
    none = build_instruct(BASE[1:], LocalInstructWriter(), params(reverse=1, kinds=("format.title",)), seed=0)
    assert none.by_gate() == {"reverse": {"nothing_inferred": 1}}


class FakeClient:
    """Scripted replies, one list per complete_many call; records every batch it was sent."""

    def __init__(self, *rounds):
        self.rounds, self.batches = list(rounds), []

    def complete_many(self, batch, return_exceptions=False, **params):
        assert return_exceptions and "temperature" in params and "max_tokens" in params
        self.batches.append(batch)
        return self.rounds.pop(0)


def test_llm_writer_pass_checker_failure_and_request_failure():
    client = FakeClient(["<think>capitals</think>REST AND DRINK FLUIDS.", "Rest and drink fluids.",
                         RuntimeError("HTTP 500")])
    out = build_instruct(BASE, LLMInstructWriter(client), params(forward=3, kinds=("format.uppercase",)), seed=0)
    assert out.read == 3 and [s["messages"][1]["content"] for s in out.kept] == ["REST AND DRINK FLUIDS."]
    assert out.kept[0]["meta"]["generator"] == "llm"
    assert out.by_gate() == {"checker": {"format.uppercase_failed": 1}, "llm": {"request_failed": 1}}
    system = client.batches[0][0][0]["content"]
    assert "- Your entire response must be in English and in all capital letters." in system
    assert GLAUCOMA in system or ASTHMA in system
    assert client.batches[0][0][1]["role"] == "user"


def test_llm_multi_turn_second_reply_is_checked_too():
    client = FakeClient(["Rest at home.\n\n" + DISCLAIMER], ["Rest at home."])
    out = build_instruct(BASE, LLMInstructWriter(client), params(multi_turn=1, kinds=("safety.disclaimer",)), seed=0)
    assert out.kept == [] and out.by_gate() == {"checker": {"safety.disclaimer_failed": 1}}
    assert out.rejected[0]["detail"].startswith("turn 2:")
    second = client.batches[1][0]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]


def test_llm_reverse_instruction_must_restate_the_numbers():
    client = FakeClient(["What are the symptoms of asthma? Answer in exactly 3 bullet points.",
                         "What are the symptoms of asthma? Use a few bullet points."])
    out = build_instruct(BASE[1:], LLMInstructWriter(client), params(reverse=2, kinds=("format.bullets",)), seed=0)
    assert [s["messages"][0]["content"] for s in out.kept] == [
        "What are the symptoms of asthma? Answer in exactly 3 bullet points."]
    assert out.by_gate() == {"checker": {"instruction_omits_format.bullets": 1}}


def test_bad_items_are_rejected_at_input():
    long_sentence = " ".join(["word"] * 30) + "."
    base = [*BASE, {"id": "x"}, "not a dict", {"id": "y", "question": "Q?", "answer": long_sentence}]
    out = build_instruct(base, LocalInstructWriter(), params(forward=2, kinds=("format.uppercase",),
                                                             max_answer_words=20), seed=0)
    assert out.read == 5 == len(out.kept) + len(out.rejected)
    assert out.by_gate() == {"input": {"bad_item": 2, "untrimmable_answer": 1}}


def test_rationale_and_instruction_omissions():
    c = Constraint.make("length.max_words", n=50)
    assert rationale([c], "Rest and fluids.") == (
        "Constraints to satisfy:\n1. [length] Answer with at most 50 words. -> the reply has 3 words, within 50: "
        "satisfied.")
    kw = Constraint.make("content.keywords", keywords=["Asthma"])
    assert instruction_omissions("Explain asthma in 50 words.", [c, kw, REGISTRY["safety.disclaimer"].sample(
        None, {})]) == []
    assert instruction_omissions("Explain it briefly.", [c, kw]) == ["length.max_words", "content.keywords"]
