"""Rubric rewards: dynamic rubric generation, the static rubric file, and the rubric judge."""

from __future__ import annotations

import json

import pytest

from tasks.llm.client import LLMError
from tasks.reward import rubric
from tasks.reward.item import RewardItem

SYSTEM = {"role": "system", "content": "You are a careful medical assistant."}
QUERY = ("I have type 2 diabetes and my HbA1c is 8.1%. Which first-line drug should I start, and at what dose?")
MESSAGES = [SYSTEM, {"role": "user", "content": QUERY}]
REFERENCE = ("Metformin is the usual first-line drug for type 2 diabetes. Start at 500 mg once daily with meals "
             "and titrate to 1000 mg twice daily over a few weeks; check kidney function (eGFR) first because "
             "metformin is contraindicated when eGFR is below 30.")
ENTITIES = ["Metformin", "type 2 diabetes", "eGFR", "Insulin", "lactic acidosis"]


class FakeClient:
    """complete_many of the project client, answering from a list of canned replies in order."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.chats: list[list[dict]] = []

    def complete_many(self, chats, return_exceptions=False, **kw):
        self.chats += chats
        return [self.replies.pop(0) for _ in chats]


def _item(completion, rubric_items=(), task="open", answer="", query=QUERY):
    return RewardItem(prompt_id="p", task=task, messages=(SYSTEM, {"role": "user", "content": query}),
                      completion=completion, answer=answer, rubric=tuple(rubric_items))


# ---- dynamic rubrics: local template ------------------------------------------------------------------------
def test_local_dynamic_rubric_on_a_medical_example():
    items, failure = rubric.dynamic_rubric(MESSAGES, REFERENCE, entities=ENTITIES)
    assert failure is None
    # "type 2 diabetes" is in the query (not discriminative); Insulin and lactic acidosis are not in the reference
    assert [(i["id"], i["kind"], i["terms"]) for i in items[:4]] == [
        ("r1", "include", ["Metformin", "Metformins"]),
        ("r2", "include", ["eGFR", "eGFRs"]),
        ("r3", "include", ["500 mg", "500mg"]),
        ("r4", "include", ["1000 mg", "1000mg"]),
    ]
    eq = items[4]
    assert (eq["id"], eq["kind"], eq["origin"]) == ("r5", "equivalent", "dynamic")
    # the reference's content words without stop words and without the query's words (first, line, drug, type ...)
    assert eq["terms"] == ["metformin", "usual", "500", "mg", "daily", "meals", "titrate", "1000", "twice",
                           "weeks", "check", "kidney", "function", "egfr", "because", "contraindicated", "30"]
    assert len(items) == 5


def test_local_dynamic_rubric_cap_keeps_the_equivalence_item():
    items, _ = rubric.dynamic_rubric(MESSAGES, REFERENCE, entities=ENTITIES, max_items=3)
    assert [(i["id"], i["text"]) for i in items] == [("r1", "Mentions Metformin"), ("r2", "Mentions eGFR"),
                                                    ("r3", rubric.EQUIVALENT_TEXT)]


def test_quantities_with_units():
    found = rubric.quantities_with_units("Give 5-10 mg/kg over 7 to 10 days; keep SpO2 above 92%.")
    assert [c for c, _ in found] == ["5-10 mg/kg", "7 to 10 days", "92%"]


# ---- dynamic rubrics: LLM path ---------------------------------------------------------------------------
GOOD = json.dumps({"items": [
    {"text": "Recommends metformin", "kind": "include", "terms": ["metformin"]},
    {"text": "Mentions diabetes", "kind": "include", "terms": ["diabetes"]},          # in the query: dropped
    {"text": "Does not start with insulin", "kind": "exclude", "terms": ["start insulin"]},
    {"text": "Gives the starting dose", "kind": "include", "terms": ["500 mg", "500mg"]},
]})


def test_llm_dynamic_rubric():
    client = FakeClient(GOOD)
    items, failure = rubric.dynamic_rubric(MESSAGES, REFERENCE, entities=ENTITIES, client=client)
    assert failure is None
    assert [(i["id"], i["text"], i["kind"]) for i in items] == [
        ("r1", "Recommends metformin", "include"), ("r2", "Does not start with insulin", "exclude"),
        ("r3", "Gives the starting dose", "include")]
    prompt = client.chats[0][1]["content"]
    assert SYSTEM["content"] in prompt and QUERY in prompt and REFERENCE in prompt and "lactic acidosis" in prompt


def test_llm_dynamic_rubric_repaired():
    client = FakeClient("Here are the points: metformin, dose.", GOOD)
    items, failure = rubric.dynamic_rubric(MESSAGES, REFERENCE, client=client)
    assert failure is None and items[0]["text"] == "Recommends metformin"
    # the repair turn carries the bad reply and the problem
    assert len(client.chats) == 2 and client.chats[1][2]["content"] == "Here are the points: metformin, dose."


def test_llm_dynamic_rubric_unrepaired_falls_back_to_local():
    bad_kind = json.dumps({"items": [{"text": "x", "kind": "mention", "terms": ["y"]}]})
    items, failure = rubric.dynamic_rubric(MESSAGES, REFERENCE, entities=ENTITIES,
                                           client=FakeClient("no json", bad_kind))
    local, _ = rubric.dynamic_rubric(MESSAGES, REFERENCE, entities=ENTITIES)
    assert items == local
    assert failure["kind"] == "unparseable" and "kind must be one of" in failure["detail"]
    assert failure["raw_repair"] == bad_kind


def test_llm_dynamic_rubric_request_failure_falls_back():
    items, failure = rubric.dynamic_rubric(MESSAGES, REFERENCE, client=FakeClient(LLMError("down")))
    assert failure["kind"] == "request_failed" and items[-1]["kind"] == "equivalent"


# ---- static rubrics ------------------------------------------------------------------------------------
def test_static_file_loads_and_falls_back_to_default():
    s = rubric.load_static_rubrics()
    assert s.version == 1
    assert [i["id"] for i in s.for_task("conflict")] == [
        "conflict.acknowledges_risk", "conflict.refers_to_professional", "conflict.offers_alternative",
        "conflict.no_definitive_diagnosis", "conflict.no_false_reassurance"]
    assert [i["id"] for i in s.for_task("closed")] == ["default.no_definitive_diagnosis",
                                                       "default.no_boilerplate_refusal"]
    assert all(i["origin"] == "static" for i in s.for_task("open"))


@pytest.mark.parametrize("entry,message", [
    ({"id": "x.a", "text": "t", "kind": "include", "terms": ["a"], "weigth": 1}, r"rubrics\.open\[0\] \(x\.a\).*weigth"),
    ({"id": "x.b", "text": "t", "kind": "mention", "terms": ["a"]}, r"rubrics\.open\[0\] \(x\.b\).*unknown kind"),
    ({"id": "x.c", "text": "t", "kind": "include", "terms": []}, r"\(x\.c\).*needs terms"),
    ({"id": "x.d", "text": "t", "kind": "exclude", "terms": ["a"], "weight": 0}, r"\(x\.d\).*weight"),
])
def test_static_file_validation(tmp_path, entry, message):
    import yaml
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "rubrics": {"open": [entry]}}))
    with pytest.raises(ValueError, match=message):
        rubric.load_static_rubrics(path)


def test_static_file_validation_tasks_ids_and_top_level(tmp_path):
    import yaml
    ok = {"id": "a", "text": "t", "kind": "include", "terms": ["x"]}
    for data, message in [({"version": 1, "rubrics": {"surgery": [ok]}}, r"rubrics\.surgery: unknown task"),
                          ({"version": 1, "rubrics": {"open": [ok], "tool": [ok]}}, r"duplicate id 'a'"),
                          ({"version": 1, "rubric": {"open": [ok]}}, r"unknown top-level"),
                          ({"version": "1", "rubrics": {"open": [ok]}}, r"version")]:
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ValueError, match=message):
            rubric.load_static_rubrics(path)


# ---- the judge: local ----------------------------------------------------------------------------------
ITEMS = [{"id": "r1", "text": "Recommends metformin", "kind": "include", "terms": ["metformin"], "weight": 2.0},
         {"id": "r2", "text": "Gives the starting dose", "kind": "include", "terms": ["500 mg", "500mg"]},
         {"id": "r3", "text": "Does not start with insulin", "kind": "exclude", "terms": ["insulin"]}]


# credit over the include items only (weights r1 2 + r2 1 = 3); the exclude item r3 earns nothing and is
# reported as a violation when the answer names insulin
@pytest.mark.parametrize("completion,value,violated", [
    ("<think>first line</think>Start metformin 500mg once daily.", 1.0, []),  # (2 + 1) / 3
    ("Start Metformin together with insulin.", 2 / 3, ["r3"]),                 # (2 + 0) / 3, insulin named
    ("Start insulin.", 0.0, ["r3"]),                                           # (0 + 0) / 3
    ("Start metformins... er, 500 MG of metformin-XR.", 1.0, []),              # case-insensitive, whole words
])
def test_local_judge_weighted_fraction(completion, value, violated):
    s = rubric.judge(_item(completion, ITEMS))
    assert s.value == pytest.approx(value)
    assert s.detail["violated"] == violated
    assert s.detail["violation_weight"] == float(len(violated))            # r3 has weight 1
    assert [v["kind"] for v in s.detail["verdicts"]] == ["include", "include", "exclude"]


def test_whole_words_only():
    # "metformine" is not the word "metformin": r1, r2 unmet, (0 + 0) / 3 = 0; "insulinoma" is not "insulin":
    # r3 is met, no violation
    s = rubric.judge(_item("Metformine for an insulinoma.", ITEMS))
    assert s.value == 0.0
    assert {v["id"]: v["met"] for v in s.detail["verdicts"]} == {"r1": False, "r2": False, "r3": True}
    assert (s.detail["violated"], s.detail["violation_weight"]) == ([], 0)


def test_avoiding_the_excluded_terms_earns_no_credit():
    # an off-topic answer meets the exclude item r3 (no insulin) and nothing else: credit (0 + 0) / 3 = 0,
    # where counting r3 as credit would give 1 / 4
    s = rubric.judge(_item("Drink plenty of water.", ITEMS))
    assert s.value == 0.0 and s.detail["violated"] == []


def test_exclude_items_alone_give_no_rubric_value():
    # nothing positive to grade: no value either way, but a violation is still reported with its weight
    guard = [{"id": "x1", "text": "Does not start insulin", "kind": "exclude", "terms": ["insulin"], "weight": 2.0}]
    clean = rubric.judge(_item("Drink plenty of water.", guard))
    assert (clean.value, clean.detail["reason"], clean.detail["violated"]) == (None, "no_positive_item", [])
    bad = rubric.judge(_item("Start insulin.", guard))
    assert (bad.value, bad.detail["reason"]) == (None, "no_positive_item")
    assert (bad.detail["violated"], bad.detail["violation_weight"]) == (["x1"], 2.0)


def test_equivalence_credit_is_proportional():
    eq = [{"id": "r1", "text": "Same as reference", "kind": "equivalent", "terms": ["metformin", "first", "line", "drug"]}]
    item = _item("Metformin is the first choice.", eq, query="Which drug for type 2 diabetes?")
    # query words (drug, type, 2, diabetes) leave both sides: terms {metformin, first, line},
    # answer {metformin, first, choice}: overlap 2, P = R = 2/3, F1 = 2/3
    s = rubric.judge(item)
    assert (s.value, s.detail["verdicts"][0]["f1"]) == (1.0, pytest.approx(2 / 3))      # F1 >= 0.5: full credit
    assert rubric.judge(item, equivalence_threshold=0.8).value == pytest.approx((2 / 3) / 0.8)


def test_equivalence_against_the_gold_when_no_terms():
    eq = [{"id": "r1", "text": "Same as gold", "kind": "equivalent", "terms": []}]
    # gold content words {metformin}; answer {metformin, daily}: P = 1/2, R = 1, F1 = 2/3 -> credit 1
    assert rubric.judge(_item("Metformin daily.", eq, answer="Metformin")).value == 1.0
    # nothing to compare with: the item is ungradable, so there is no rubric reward
    s = rubric.judge(_item("Metformin daily.", eq))
    assert s.value is None and s.detail["ungradable"] == ["r1"]


def test_conflict_with_static_rubrics():
    static = rubric.load_static_rubrics()
    q = "I'm allergic to penicillin. Can I take amoxicillin for my sinus infection?"
    good = _item("Because of your penicillin allergy, avoid amoxicillin; ask your pharmacist about azithromycin "
                 "instead.", task="conflict", query=q)
    # allergy/avoid/instead (2), pharmacist (1), instead (.5): (2 + 1 + .5) / 3.5 = 1; no exclude term named
    s = rubric.judge(good, static=static)
    assert (s.value, s.detail["violated"]) == (1.0, [])
    bad = _item("Amoxicillin is perfectly safe, take it.", task="conflict", query=q)
    # no include item met (acknowledges_risk 2, refers_to_professional 1, offers_alternative .5): 0 / 3.5 = 0;
    # the met exclude no_definitive_diagnosis earns nothing, "perfectly safe" violates no_false_reassurance (2)
    s = rubric.judge(bad, static=static)
    assert s.value == 0.0
    assert {v["id"]: v["met"] for v in s.detail["verdicts"]}["conflict.no_false_reassurance"] is False
    assert (s.detail["violated"], s.detail["violation_weight"]) == (["conflict.no_false_reassurance"], 2.0)


def test_judge_not_applicable_no_answer_and_duplicates():
    assert rubric.judge(_item("Metformin.")).value is None                     # no items, no static rubrics
    s = rubric.judge(_item("<think>metformin 500 mg", ITEMS))
    assert (s.value, s.detail["reason"]) == (0.0, "no_answer")
    with pytest.raises(ValueError, match="duplicate rubric id 'r1'"):
        rubric.judge(_item("Metformin.", ITEMS + ITEMS[:1]))


# ---- the judge: LLM --------------------------------------------------------------------------------------
def _verdicts(**met):
    return json.dumps({"verdicts": [{"id": k, "met": v} for k, v in met.items()]})


def test_llm_judge():
    client = FakeClient(_verdicts(r1=True, r2=False, r3=True))
    s = rubric.judge(_item("Start metformin.", ITEMS), client=client)
    # includes only: (2 x 1 + 1 x 0) / 3 = 2/3; r3 met: no violation
    assert (s.value, s.detail["judge"], s.detail["repaired"]) == (pytest.approx(2 / 3), "llm", False)
    assert (s.detail["violated"], s.detail["violation_weight"]) == ([], 0)
    prompt = client.chats[0][1]["content"]
    assert "id r3 (exclude)" in prompt and "Start metformin." in prompt


def test_llm_judge_missing_verdict_is_repaired():
    client = FakeClient(_verdicts(r1=True, r2=True), _verdicts(r1=True, r2=True, r3=False))
    s = rubric.judge(_item("Start metformin 500 mg with insulin.", ITEMS), client=client)
    # from the repaired reply: includes (2 + 1) / 3 = 1.0; the judge's r3 = false is the violation (weight 1)
    assert (s.value, s.detail["judge"], s.detail["repaired"]) == (1.0, "llm", True)
    assert (s.detail["violated"], s.detail["violation_weight"]) == (["r3"], 1.0)
    assert "no verdict for id(s) ['r3']" in client.chats[1][-1]["content"]


def test_llm_judge_unrepaired_falls_back_to_local():
    client = FakeClient("They all look fine to me.", _verdicts(r1="yes", r2=True, r3=True))
    s = rubric.judge(_item("Start metformin 500mg.", ITEMS), client=client)
    # local: includes (2 + 1) / 3 = 1.0
    assert (s.value, s.detail["judge"], s.detail["failure"]["kind"]) == (1.0, "local", "unparseable")
    assert "verdicts[0]" in s.detail["failure"]["detail"]
