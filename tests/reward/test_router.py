"""The data router: the table of which graders score which completion."""

from __future__ import annotations

import pytest

from tasks.reward.item import RewardItem
from tasks.reward.router import answer_kind, asks_to_reason, derive_task, route


def _item(query="What is the first-line drug for type 2 diabetes?", completion="Metformin.", task="open", **kw):
    return RewardItem(prompt_id="p", task=task, messages=({"role": "user", "content": query},),
                      completion=completion, **kw)


CONSTRAINT = {"kind": "length.max_words", "args": {"n": 50}}
SET = ("gentamicin", "vancomycin")

# (case, item kwargs, expected graders, expected task, expected answer kind)
TABLE = [
    ("choice question", dict(task="closed", answer_kind="choice", options=("a", "b"), answer="a"),
     ("rule",), "closed", "choice"),
    ("judgement with reasoning", dict(task="closed", answer_kind="judgement", completion="<think>x</think>No."),
     ("rule", "process"), "closed", "judgement"),
    ("open with reference", dict(reference="Metformin 500 mg."), ("rubric", "pairwise"), "open", "open"),
    ("open without reference", dict(), ("rubric",), "open", "open"),
    ("conflict task with a closed answer", dict(task="conflict", answer_kind="fill", answer="azithromycin",
                                                reference="Azithromycin."),
     ("rule", "rubric", "pairwise"), "conflict", "fill"),
    ("instructions on an open answer", dict(task="instruct", constraints=(CONSTRAINT,)),
     ("instruct", "rubric"), "instruct", "open"),
    ("instructions on a closed answer", dict(task="instruct", answer_kind="fill", answer="metformin",
                                             constraints=(CONSTRAINT,)), ("rule", "instruct"), "instruct", "fill"),
    ("list intent forces set grading", dict(task="multi", query="List the nephrotoxic drugs in this regimen.",
                                            answer_set=SET), ("rule",), "multi", "set"),
    ("list intent on an open task keeps the rubric",
     dict(query="Which of these drugs are nephrotoxic?", answer_set=SET), ("rule", "rubric"), "open", "set"),
    ("list intent without an answer set stays open", dict(query="List the nephrotoxic drugs."),
     ("rubric",), "open", "open"),
    ("asks to think step by step", dict(query="Think step by step: which drug first?"),
     ("rubric", "process"), "open", "open"),
    ("unclosed think still reasons", dict(completion="<think>metformin or"), ("rubric", "process"), "open", "open"),
    ("derived task: closed", dict(task="", answer_kind="choice", options=("a", "b"), answer="a"),
     ("rule",), "closed", "choice"),
]


@pytest.mark.parametrize("case,kw,graders,task,kind", TABLE, ids=[t[0] for t in TABLE])
def test_route_table(case, kw, graders, task, kind):
    r = route(_item(**kw))
    assert (r.graders, r.task, r.answer_kind) == (graders, task, kind)


def test_reason_names_every_row_that_fired():
    r = route(_item(reference="Metformin.", completion="<think>hm</think>Metformin."))
    assert r.reason == ("open answer -> rubric; open/conflict task -> rubric; rubric route with reference -> pairwise; "
                        "completion has <think> -> process")


@pytest.mark.parametrize("text,expected", [
    ("Reason through the differential before answering.", True),
    ("Explain your reasoning.", True),
    ("Please think carefully.", True),
    ("What is the reason for the raised ALT?", False),          # "reason" as a noun
    ("What do you think is the cause?", False),                 # an opinion question
    ("What is the main reason this drug is avoided?", False),
])
def test_reasoning_intent(text, expected):
    assert asks_to_reason(_item(query=text)) is expected


def test_system_prompt_can_ask_to_reason_but_history_cannot():
    sys_item = RewardItem("p", "open", ({"role": "system", "content": "Think step by step."},
                                        {"role": "user", "content": "Dose of metformin?"}), "500 mg")
    hist_item = RewardItem("p", "open", ({"role": "user", "content": "Think step by step."},
                                         {"role": "assistant", "content": "OK."},
                                         {"role": "user", "content": "Dose of metformin?"}), "500 mg")
    assert asks_to_reason(sys_item) and not asks_to_reason(hist_item)


def test_derived_task_order():
    assert derive_task(_item(task="", constraints=(CONSTRAINT,), answer_kind="choice")) == "instruct"
    assert derive_task(_item(task="", meta={"tools": ["search"]})) == "tool"
    two_turns = RewardItem("p", "?", ({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi"},
                                      {"role": "user", "content": "Dose?"}), "x")
    assert derive_task(two_turns) == "multi"
    assert derive_task(_item(task="bogus")) == "open"
    # an unknown answer kind is treated as open
    assert answer_kind(_item(answer_kind="essay")) == "open"
