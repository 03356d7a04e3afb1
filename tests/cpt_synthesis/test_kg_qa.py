"""Atomic and aggregated QA over a small graph: templates per relation, rejected nodes/edges with
reasons, seeded walks, the kg stage's CSR loader, and the LLM path against a scripted endpoint."""

from __future__ import annotations

import json

import pytest
from scripted_endpoint import scripted

from tasks.cpt_synthesis.kg_qa import (
    Fact,
    KGQAParams,
    ListGraph,
    LLMQAWriter,
    LocalQAWriter,
    aggregated_qa,
    atomic_qa,
    display_name,
    largest_component,
    multi_fact_questions,
)
from tasks.cpt_synthesis.samples import validate_sample
from tasks.cpt_synthesis.self_contained import filter_self_contained

NODES = [{"norm": n.lower(), "name": n, "type": t, "degree": 1} for n, t in [
    ("Asthma", "Disease"), ("wheezing", "Symptom"), ("salbutamol", "Drug"), ("COPD", "Disease"),
    ("- appetite loss - nausea - vomiting", "Symptom"), ("smoking", "Chemical"), ("spirometry", "Test")]]
EDGES = [{"id": i, "head_idx": h, "tail_idx": t, "relation": r, "weight": 1.0,
          "provenance": {"doc_ids": [f"medquad-{i}"], "sentences": [{"text": f"evidence {i}"}]}}
         for i, (h, r, t) in enumerate([(0, "has_symptom", 1), (0, "treated_by", 2), (3, "has_symptom", 1),
                                        (3, "treated_by", 2), (3, "has_risk_factor", 5), (0, "co_occurs_with", 4),
                                        (0, "diagnosed_by", 6), (3, "has_symptom", 4)])]


def test_display_names():
    p = KGQAParams()
    assert display_name({"name": "- Fever"}, p) == "Fever"
    assert display_name({"name": "- appetite loss - nausea - vomiting"}, p) is None
    assert display_name({"name": "  "}, p) is None and display_name({"name": "123"}, p) is None
    assert display_name({"name": " ".join(["w"] * 9)}, p) is None
    assert display_name({"name": "T"}, p) is None and display_name({"name": "TB"}, p) == "TB"


def test_atomic_qa_templates_and_rejections():
    out = atomic_qa(NODES, EDGES, LocalQAWriter(), KGQAParams())
    assert out.reasons() == {"bad_node_name": 2, "relation_excluded": 1}    # list node + its edge; co_occurs
    qa = {(s["messages"][0]["content"], s["messages"][1]["content"]) for s in out.kept}
    assert ("What type of medical entity is Asthma?", "Asthma is classified as a disease.") in qa
    edge_qa = [s for s in out.kept if s["meta"]["relation"] == "has_symptom" and s["meta"]["edge_id"] == 0]
    assert edge_qa[0]["messages"][1]["content"] == "Wheezing is a symptom of Asthma."
    assert edge_qa[0]["source_ids"] == ["kg-node:asthma", "kg-node:wheezing", "kg-edge:0", "medquad-0"]
    for s in out.kept:
        validate_sample(s)
    assert filter_self_contained(out.kept).rejected == []
    again = atomic_qa(NODES, EDGES, LocalQAWriter(), KGQAParams())
    assert [s["id"] for s in again.kept] == [s["id"] for s in out.kept]


def test_multi_fact_questions_bridge_and_list():
    facts = [Fact("Asthma", "treated_by", "salbutamol"), Fact("COPD", "treated_by", "salbutamol"),
             Fact("COPD", "has_symptom", "wheezing"), Fact("COPD", "has_symptom", "cough")]
    qa = multi_fact_questions(facts)
    qs = [q["question"] for q in qa]
    assert "What is both a treatment for Asthma and a treatment for COPD?" in qs
    assert "Name 2 symptoms of COPD." in qs
    assert any(q["answer"].startswith("Salbutamol: ") for q in qa)
    # facts joined only through an excluded relation are two groups: the larger one is kept
    split = [Fact("A", "has_symptom", "b"), Fact("C", "treated_by", "d"), Fact("C", "has_symptom", "e")]
    assert largest_component(split) == split[1:]


def test_aggregated_qa_is_seeded_and_self_contained():
    g = ListGraph(NODES, EDGES)
    p = KGQAParams(walks=20, walk_length=5)
    a = aggregated_qa(g, LocalQAWriter(), p, seed=3)
    b = aggregated_qa(g, LocalQAWriter(), p, seed=3)
    assert [s["id"] for s in a.kept] == [s["id"] for s in b.kept]
    tasks = {s["task"] for s in a.kept}
    assert tasks == {"passage", "aggregated_qa"}
    assert len(a.kept) > 0 and sum(r["reason"] == "walk_too_short" for r in a.rejected) == len(a.rejected)
    passages = [s for s in a.kept if s["task"] == "passage"]
    assert all(s["text"].endswith(".") and s["meta"]["facts"] >= 2 for s in passages)
    assert filter_self_contained(a.kept).rejected == []
    c = aggregated_qa(g, LocalQAWriter(), KGQAParams(walks=1, min_facts=9, max_facts=9), seed=3)
    assert c.kept == [] and c.reasons() == {"walk_too_short": 1}
    empty = aggregated_qa(ListGraph([{"name": "x"}], []), LocalQAWriter(), p, seed=3)
    assert empty.reasons() == {"empty_graph": 1}


def test_aggregated_qa_on_the_kg_stage_loader(tmp_path):
    kg_graph = pytest.importorskip("tasks.knowledge_graph.graph")
    kg_graph.write_graph(tmp_path, NODES, EDGES)
    g = kg_graph.KnowledgeGraph.load(tmp_path)
    out = aggregated_qa(g, LocalQAWriter(), KGQAParams(walks=10), seed=1)
    assert any(s["task"] == "aggregated_qa" for s in out.kept)
    srcs = {x for s in out.kept for x in s["source_ids"]}
    assert any(x.startswith("kg-edge:") for x in srcs) and any(x.startswith("medquad-") for x in srcs)


def test_llm_writer_parses_repairs_and_records_failures(tmp_path):
    def reply(messages):
        user = messages[1]["content"]
        if len(messages) > 2 and "Fact:" in user:           # the repair turn of an atomic prompt
            return 200, json.dumps([{"question": "What is a symptom of COPD?", "answer": "Wheezing is a symptom of COPD."}])
        if "Fact: Wheezing is a symptom of Asthma." in user:
            return 200, 'Sure: [{"question": "What is a symptom of asthma?", "answer": "Wheezing."}]'
        if "Fact: Wheezing is a symptom of COPD." in user:
            return 200, "I think wheezing."                  # not JSON: repaired
        if "Fact:" in user:
            return 200, '[{"question": "", "answer": "x"}]'  # empty question: repaired... to an unrelated answer
        if "Rewrite these medical facts" in user:
            return 200, '{"passage": "Asthma presents with wheezing and is treated with salbutamol."}'
        return 200, "no json here"
    with scripted(reply, tmp_path) as (client, _requests):
        out = atomic_qa(NODES[:4], EDGES[:3], LLMQAWriter(client), KGQAParams(node_qa=False))
        agg = aggregated_qa(ListGraph(NODES, EDGES), LLMQAWriter(client), KGQAParams(walks=3), seed=0)
    answers = [s["messages"][1]["content"] for s in out.kept]
    assert "Wheezing." in answers and "Wheezing is a symptom of COPD." in answers
    assert all(s["meta"]["generator"] == "llm" for s in out.kept)
    # the passage question prompt never gets JSON: passages kept, questions recorded as failures with raw text
    assert [s["task"] for s in agg.kept] and {s["task"] for s in agg.kept} == {"passage"}
    fails = [r for r in agg.rejected if r["reason"] == "llm_failed"]
    assert fails and fails[0]["item"]["failure"]["raw"] == "no json here"
    assert fails[0]["item"]["failure"]["raw_repair"] is not None
