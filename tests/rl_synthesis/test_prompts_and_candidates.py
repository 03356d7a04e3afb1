"""The RL prompt contract and the candidate builders: RL prompts from a small SFT set, and the KG scenarios
(tool-assisted with a fake search tool, allergy conflicts, symptom sets) from hand-written edges and nodes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from eval.constraints import Constraint
from eval.templates import FORMAT, SYSTEM, THINKING
from tasks.mid_synthesis.samples import image_part, text_part, tool_call
from tasks.mid_synthesis.search_tool import SEARCH_SCHEMA, render_results
from tasks.rl_synthesis.candidates import ScenarioParams, from_sft_set, kg_scenarios
from tasks.rl_synthesis.prompts import SET_FORMAT, format_line, make_prompt, prompt_id, validate_prompt
from tasks.sft_synthesis.samples import sft_sample

CHOICE_TAIL = "Answer with the letter of the correct option."     # tasks/sft_synthesis/pools.py CHOICE_INSTRUCTION
OPTIONS = ["Insulin", "Metformin", "Warfarin", "Aspirin"]
SHA = "a" * 64


# ---------------------------------------------------------------------------------------------- prompts
def _prompt(**kw) -> dict:
    args = dict(answer="Metformin", answer_kind="choice", options=OPTIONS, thinking=True, source="test",
                source_ids=["s1"])
    args.update(kw)
    return make_prompt(args.pop("task", "closed"), args.pop("history", []), args.pop("query", "Which drug?"), **args)


def test_format_line_is_the_eval_harness_line():
    assert format_line("choice", False) == FORMAT["choice"]
    assert format_line("judgement", False) == "Reply on the last line as 'Answer: yes/no/maybe'."
    assert format_line("set", True) == f"{THINKING} {SET_FORMAT}"
    assert format_line("open", False) == FORMAT["longform"]


def test_make_prompt_appends_the_format_line_and_validates():
    history = [{"role": "user", "content": "I have diabetes."}, {"role": "assistant", "content": "Noted."}]
    p = _prompt(history=history, query="Which drug?  ", extra="x")
    assert p["messages"][0] == {"role": "system", "content": SYSTEM}
    assert p["messages"][1:3] == history
    assert p["messages"][-1] == {"role": "user", "content": f"Which drug?\n{THINKING} {FORMAT['choice']}"}
    assert p["split"] == "train" and p["hints"] == [] and p["meta"] == {"source": "test", "extra": "x"}
    assert p["id"] == prompt_id("closed", p["messages"], "Metformin") and p["id"].startswith("rl-closed-")
    assert validate_prompt(p) is p
    # the id depends on the answer: the same question with another gold is another prompt
    assert _prompt(answer="Insulin")["id"] != _prompt()["id"]
    assert _prompt()["id"] == _prompt()["id"]


def test_make_prompt_rejects_unknown_task_or_kind():
    with pytest.raises(ValueError):
        _prompt(task="chitchat")
    with pytest.raises(ValueError):
        _prompt(answer_kind="essay")


@pytest.mark.parametrize("field", ["id", "messages", "answer", "hints", "meta"])
def test_validate_prompt_names_a_missing_field(field):
    p = _prompt()
    del p[field]
    with pytest.raises(ValueError, match=repr(field)):
        validate_prompt(p)


def test_validate_prompt_rejects_broken_records():
    with pytest.raises(ValueError, match="options"):
        validate_prompt({**_prompt(), "options": ["Metformin"]})
    with pytest.raises(ValueError, match="user"):
        validate_prompt({**_prompt(), "messages": [*_prompt()["messages"], {"role": "assistant", "content": "B"}]})
    with pytest.raises(ValueError, match="user"):
        validate_prompt({**_prompt(), "messages": []})
    with pytest.raises(ValueError, match="answer_set"):
        validate_prompt({**_prompt(answer_kind="set", options=[]), "answer_set": []})
    with pytest.raises(ValueError, match="out of range"):
        validate_prompt({**_prompt(), "split": "test"})
    with pytest.raises(ValueError):
        validate_prompt(["not", "a", "dict"])


# ---------------------------------------------------------------------------------------------- SFT set
def _choice_sample() -> dict:
    q = "Which drug is first-line for type 2 diabetes?\n" + "\n".join(f"{c}. {o}" for c, o in zip("ABCD", OPTIONS))
    return sft_sample("kg_qa", ["cpt-1", "kg-edge:e1"], [{"role": "user", "content": f"{q}\n{CHOICE_TAIL}"},
                                                         {"role": "assistant", "content": "B. Metformin"}],
                      answer="Metformin", answer_kind="choice", accuracy="consensus", options=OPTIONS, gold_index=1)


def _samples() -> dict[str, dict]:
    constraint = Constraint.make("format.no_commas").to_json()
    return {
        "choice": _choice_sample(),
        # options not in meta but lettered in the question: read from the query
        "choice_lines": sft_sample("mid_data", ["mid-1"], [
            {"role": "user", "content": "Pick one.\nA) Fever\nB) Rash\nAnswer with the letter of the correct option."},
            {"role": "assistant", "content": "A"}], answer="Fever", answer_kind="choice", accuracy="code"),
        "no_options": sft_sample("mid_data", ["mid-2"], [
            {"role": "user", "content": "Which is right?\nAnswer with the letter of the correct option."},
            {"role": "assistant", "content": "B"}], answer="B", answer_kind="choice", accuracy="code"),
        "image": sft_sample("vqa_rad", ["vqa-1"], [
            {"role": "user", "content": [image_part(), text_part("Is there a fracture?")]},
            {"role": "assistant", "content": "yes"}], answer="yes", answer_kind="judgement", accuracy="consensus",
            images=[{"path": "img/1.png", "sha256": SHA}]),
        "tool": sft_sample("mid_data", ["mid-3"], [
            {"role": "user", "content": "What treats gout?"},
            {"role": "assistant", "content": "", "tool_calls": [tool_call("search", {"query": "gout", "k": 3})]},
            {"role": "tool", "name": "search", "content": "[1] p1 colchicine treats gout"},
            {"role": "assistant", "content": "Colchicine."}], answer="colchicine", answer_kind="fill",
            accuracy="code", tools=[SEARCH_SCHEMA]),
        "instruct": sft_sample("instruct", ["inst-1"], [
            {"role": "user", "content": "Explain hypertension briefly.\n\n" + Constraint.from_json(constraint).instruction},
            {"role": "assistant", "content": "Hypertension is high blood pressure."}],
            answer="Hypertension is high blood pressure.", answer_kind="open", accuracy="code",
            constraints=[constraint]),
        "open": sft_sample("medquad", ["mq-1"], [
            {"role": "user", "content": "What is asthma?"},
            {"role": "assistant", "content": "A chronic airway disease."}],
            answer="A chronic airway disease.", answer_kind="open", accuracy="consensus"),
    }


def _write(tmp_path: Path, samples: list[dict], bad_lines: int = 0) -> Path:
    d = tmp_path / "samples"
    d.mkdir()
    lines = [json.dumps(s) for s in samples] + ["{not json"] * bad_lines
    (d / "part-00000.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_from_sft_set_keeps_checkable_text_samples_and_rejects_the_rest(tmp_path):
    s = _samples()
    out = from_sft_set(_write(tmp_path, list(s.values()), bad_lines=1), thinking=True)
    # 7 samples + 1 bad line read; kept: choice, choice_lines, instruct, open; rejected 4
    assert out.read == 8 == len(out.kept) + len(out.rejected)
    assert len(out.kept) == 4
    reasons = {(r["item"], r["reason"]) for r in out.rejected if r["gate"] == "select"}
    assert reasons == {(s["image"]["id"], "image_prompt"), (s["tool"]["id"], "tool_sample"),
                       (s["no_options"]["id"], "options_unreadable")}
    assert [r["gate"] for r in out.rejected].count("read") == 1
    by_sft = {p["meta"]["sft_id"]: p for p in out.kept}
    for p in out.kept:
        validate_prompt(p)

    choice = by_sft[s["choice"]["id"]]
    assert choice["task"] == "closed" and choice["answer"] == "Metformin" and choice["options"] == OPTIONS
    assert choice["meta"]["source"] == "sft:kg_qa"
    assert choice["source_ids"] == [s["choice"]["id"], "cpt-1", "kg-edge:e1"]
    query = choice["messages"][-1]["content"]
    # the SFT's format sentence is replaced by the eval's format line; the option lines stay
    assert CHOICE_TAIL not in query
    assert query.endswith(f"D. Aspirin\n{THINKING} {FORMAT['choice']}")
    assert [m["role"] for m in choice["messages"]] == ["system", "user"]

    assert by_sft[s["choice_lines"]["id"]]["options"] == ["Fever", "Rash"]

    inst = by_sft[s["instruct"]["id"]]
    assert inst["task"] == "instruct" and inst["answer_kind"] == "open"
    assert inst["constraints"] == s["instruct"]["meta"]["constraints"]
    assert by_sft[s["open"]["id"]]["task"] == "open"


def test_from_sft_set_without_thinking_has_the_bare_format_line(tmp_path):
    out = from_sft_set(_write(tmp_path, [_choice_sample()]), thinking=False)
    assert out.kept[0]["messages"][-1]["content"].endswith(f"D. Aspirin\n{FORMAT['choice']}")


def test_from_sft_set_rejects_samples_without_a_checkable_answer(tmp_path):
    s = copy.deepcopy(_choice_sample())
    s["meta"]["answer_kind"] = "set"
    out = from_sft_set(_write(tmp_path, [s]), thinking=True)
    assert out.kept == [] and [r["reason"] for r in out.rejected] == ["no_checkable_answer"]


def test_instruct_constraint_sentences_are_kept_in_the_query(tmp_path):
    c = Constraint.make("length.max_words", n=100)
    assert c.instruction.startswith("Answer with")
    s = sft_sample("instruct", ["inst-2"], [
        {"role": "user", "content": f"Explain hypertension.\n\n{c.instruction}"},
        {"role": "assistant", "content": "High blood pressure."}], answer="High blood pressure.", answer_kind="open",
        accuracy="code", constraints=[c.to_json()])
    out = from_sft_set(_write(tmp_path, [s]), thinking=True)
    assert c.instruction in out.kept[0]["messages"][-1]["content"]


def test_judgement_sft_format_sentence_is_replaced(tmp_path):
    s = sft_sample("pubmedqa", ["pubmedqa-pqal-1"], [
        {"role": "user", "content": "Context: ...\nQuestion: Does X reduce Y?\nAnswer yes, no or maybe, then explain."},
        {"role": "assistant", "content": "yes. Because ..."}], answer="yes", answer_kind="judgement",
        accuracy="consensus", options=["yes", "no", "maybe"])
    out = from_sft_set(_write(tmp_path, [s]), thinking=True)
    assert "then explain" not in out.kept[0]["messages"][-1]["content"]


# ---------------------------------------------------------------------------------------------- KG
NODES = [("hypertension", "Disease"), ("lisinopril", "Chemical"), ("amlodipine", "Chemical"),
         ("hydrochlorothiazide", "Chemical"), ("salt", "Food"), ("gout", "Disease"), ("colchicine", "Chemical"),
         ("ibuprofen", "Chemical"), ("influenza", "Disease"), ("fever", "Symptom"), ("cough", "Symptom"),
         ("fatigue", "Symptom"), ("migraine", "Disease"), ("headache", "Symptom")]
EDGES = [
    ("e1", "hypertension", "lisinopril", "treated_by", "pattern"),
    ("e2", "hypertension", "amlodipine", "treated_by", "medquad"),
    ("e3", "hypertension", "hydrochlorothiazide", "treated_by", "cid"),
    ("e4", "hypertension", "salt", "treated_by", "pattern"),              # not a Chemical: no conflict option
    ("e5", "gout", "colchicine", "treated_by", "pattern"),
    ("e6", "gout", "ibuprofen", "treated_by", "cooccurrence"),            # co-occurrence: ignored everywhere
    ("e7", "influenza", "fever", "has_symptom", "pattern"),
    ("e8", "influenza", "cough", "has_symptom", "medquad"),
    ("e9", "influenza", "fatigue", "has_symptom", "cooccurrence"),
    ("e10", "migraine", "headache", "has_symptom", "pattern"),
    ("e11", "migraine", "aura", "associated_with", "pattern"),            # no question template: ignored
]


class FakeSearch:
    """Returns a passage naming lisinopril (and "salty", which does not name "salt") for hypertension queries,
    an unrelated passage otherwise."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def search(self, query: str, k: int) -> list[dict]:
        self.calls.append((query, k))
        if query.startswith("hypertension"):
            return [{"doc_id": "d1", "passage_id": "d1#0", "score": 3.5,
                     "text": "Hypertension is often treated with lisinopril; avoid salty food."},
                    {"doc_id": "d2", "passage_id": "d2#4", "score": 1.25, "text": "Blood pressure basics."}]
        return [{"doc_id": "d9", "passage_id": "d9#0", "score": 0.5, "text": "Nothing relevant here."}]


@pytest.fixture
def kg(tmp_path) -> tuple[Path, Path]:
    edges, nodes = tmp_path / "edges.jsonl", tmp_path / "nodes.jsonl"
    edges.write_text("".join(json.dumps({"id": i, "head": h, "tail": t, "relation": r, "kind": k, "count": 1}) + "\n"
                             for i, h, t, r, k in EDGES))
    nodes.write_text("".join(json.dumps({"norm": n, "name": n.title(), "type": t}) + "\n" for n, t in NODES))
    return edges, nodes


def test_conflict_scenario_excludes_the_allergy_drug(kg):
    tool = FakeSearch()
    out = kg_scenarios(*kg, tool, ScenarioParams(), seed=3, thinking=True)["conflict"]
    # heads with Chemical treatments: gout (colchicine; ibuprofen is co-occurrence only) and hypertension
    assert out.read == 2 == len(out.kept) + len(out.rejected)
    assert [(r["reason"], r["item"]) for r in out.rejected] == [("single_treatment", "gout")]
    (p,) = out.kept
    validate_prompt(p)
    drugs = {"amlodipine", "hydrochlorothiazide", "lisinopril"}
    allergy = p["meta"]["allergy"]
    assert allergy in drugs
    assert p["answer_set"] == sorted(drugs - {allergy}) and allergy not in p["answer_set"]
    assert "salt" not in p["answer_set"]
    assert p["task"] == "conflict" and p["answer_kind"] == "set" and p["answer"] == ", ".join(p["answer_set"])
    exclude = [r for r in p["rubric"] if r["kind"] == "exclude"]
    assert exclude == [{"id": "conflict-exclude", "text": f"does not recommend {allergy}", "kind": "exclude",
                        "terms": [allergy], "weight": 2.0, "origin": "dynamic"}]
    include = next(r for r in p["rubric"] if r["kind"] == "include")
    assert include["terms"] == p["answer_set"]
    # the allergy is stated in the history, the query asks for a list (the reward grades it as a set)
    assert allergy in p["messages"][1]["content"] and p["messages"][-1]["content"].startswith(
        "Which medicines could treat my hypertension? List them.")
    # seeded: the same seed draws the same allergy
    again = kg_scenarios(*kg, FakeSearch(), ScenarioParams(), seed=3, thinking=True)["conflict"]
    assert again.kept[0]["meta"]["allergy"] == allergy


def test_conflict_set_caps_at_max_set(kg):
    out = kg_scenarios(*kg, FakeSearch(), ScenarioParams(max_set=1), seed=3, thinking=True)["conflict"]
    assert len(out.kept[0]["answer_set"]) == 1


def test_multi_answer_uses_the_kg_symptom_set(kg):
    out = kg_scenarios(*kg, FakeSearch(), ScenarioParams(), seed=3, thinking=False)["multi"]
    assert out.read == 2 == len(out.kept) + len(out.rejected)
    assert [(r["reason"], r["item"]) for r in out.rejected] == [("single_answer", "migraine")]
    (p,) = out.kept
    validate_prompt(p)
    # fatigue is a co-occurrence edge: not part of the gold
    assert p["answer_set"] == ["cough", "fever"] and p["meta"]["set_size"] == 2
    assert p["messages"][-1]["content"] == f"Name the main symptoms of influenza.\n{SET_FORMAT}"


def test_tool_prompts_keep_only_evidence_backed_answers(kg):
    tool = FakeSearch()
    out = kg_scenarios(*kg, tool, ScenarioParams(search_k=2), seed=3, thinking=True)["tool"]
    # templated relations of extracted kinds: e1-e5, e7, e8, e10 (e6, e9 co-occurrence; e11 no template) = 8
    assert out.read == 8 == len(out.kept) + len(out.rejected)
    assert len(tool.calls) == 8 and {k for _, k in tool.calls} == {2}
    # only lisinopril is named by a returned passage ("salty" does not name "salt")
    assert [p["answer"] for p in out.kept] == ["lisinopril"]
    assert {r["reason"] for r in out.rejected} == {"no_evidence"}
    assert {r["item"] for r in out.rejected} == {f"kg-edge:{e}" for e in ("e2", "e3", "e4", "e5", "e7", "e8", "e10")}
    p = out.kept[0]
    validate_prompt(p)
    assert p["task"] == "tool" and p["answer_kind"] == "fill" and p["meta"]["relation"] == "treated_by"
    assert p["source_ids"] == ["kg-edge:e1", "d1#0", "d2#4"]
    system, question, call, result, query = p["messages"]
    assert question == {"role": "user", "content": "What can be used to treat hypertension?"}
    assert call["tool_calls"] == [tool_call("search", {"query": "hypertension treatment", "k": 2})]
    assert result["role"] == "tool" and result["content"] == render_results(tool.search("hypertension treatment", 2))
    assert query["content"].startswith("Using the search results, answer: What can be used to treat hypertension?")


def test_tool_prompts_without_a_tool_have_no_evidence(kg):
    out = kg_scenarios(*kg, None, ScenarioParams(tool=3), seed=3, thinking=True)["tool"]
    assert out.read == 3 and out.kept == [] and [r["reason"] for r in out.rejected] == ["no_evidence"] * 3


def test_scenario_counts_cap_the_draw(kg):
    out = kg_scenarios(*kg, FakeSearch(), ScenarioParams(tool=2, conflict=1, multi=1), seed=5, thinking=True)
    assert out["tool"].read == 2 and out["conflict"].read == 1 and out["multi"].read == 1
    for o in out.values():
        assert o.read == len(o.kept) + len(o.rejected)
