"""Relation type signatures: the check on edge records (kept, rejected with the reason, counted; unknown
types; a tree without types), its config, and the stage applying it to every edge source before an
edge reaches edges.jsonl / graph.npz."""

from __future__ import annotations

import pytest
from knowledge_graph.test_kg_fixtures import (
    ENTITIES,
    kg_tree,
    read_jsonl,
    run_stage,
    run_stage_once,
    write_inputs,
)

from tasks.common.config import ConfigError, build
from tasks.knowledge_graph.graph import KnowledgeGraph
from tasks.knowledge_graph.run import KgConfig
from tasks.knowledge_graph.signatures import (
    DEFAULT_SIGNATURES,
    ENTITY_TYPES,
    RelationSignature,
    SignatureCheck,
    default_signatures,
)

NAMES = ["asthma", "albuterol", "hypertension", "cough", "lung", "thing"]
TYPES = ["Disease", "Chemical", "Disease", "Symptom", "Anatomy", "Entity"]


def edge(head: int, relation: str, tail: int, kind: str = "medquad") -> dict:
    return {"id": -1, "head": NAMES[head], "tail": NAMES[tail], "head_idx": head, "tail_idx": tail,
            "relation": relation, "kind": kind, "directed": True, "support": 1, "weight": 1.0,
            "provenance": {"kind": kind, "doc_ids": ["d"], "sentences": []}}


def test_default_table_uses_only_the_entity_types():
    assert set(DEFAULT_SIGNATURES) == {"caused_by", "treated_by", "has_symptom", "diagnosed_by", "prevented_by",
                                       "has_risk_factor", "has_complication", "located_in"}
    for sig in default_signatures().values():
        assert set(sig.head) <= set(ENTITY_TYPES) and set(sig.tail) <= set(ENTITY_TYPES)


def test_violating_edges_are_rejected_with_the_reason_and_counted():
    check = SignatureCheck(default_signatures(), TYPES)
    edges = [edge(0, "treated_by", 1), edge(0, "treated_by", 2), edge(0, "has_symptom", 3),
             edge(2, "has_symptom", 0, "pattern"), edge(0, "located_in", 4, "pattern"),
             edge(0, "associated_with", 2, "pattern")]
    kept, rejected, summary = check.partition(edges)
    assert [(e["head"], e["relation"], e["tail"], e["id"]) for e in kept] == [
        ("asthma", "treated_by", "albuterol", 0), ("asthma", "has_symptom", "cough", 1),
        ("asthma", "located_in", "lung", 2), ("asthma", "associated_with", "hypertension", 3)]
    assert [r["reason"] for r in rejected] == ["signature_violation"] * 2
    assert rejected[0]["detail"] == ("treated_by expects head Disease|Symptom and tail Chemical|Procedure, "
                                     "got Disease -> Disease")
    rec = rejected[0]["record"]
    assert rec["id"] == rejected[0]["id"] == "medquad|asthma|treated_by|hypertension"
    assert rejected[0]["locator"] == "edge:medquad|asthma|treated_by|hypertension"
    assert (rec["head_type"], rec["tail_type"], rec["provenance"]["doc_ids"]) == ("Disease", "Disease", ["d"])
    assert "weight" not in rec
    assert summary["applicable"] and summary["rejected"] == 2
    assert summary["edges_checked"] == 5 and summary["edges_unconstrained"] == 1
    assert summary["violations"] == {"has_symptom": {"Disease": {"Disease": 1}},
                                     "treated_by": {"Disease": {"Disease": 1}}}
    assert summary["node_types_unknown"] == {"Entity": 1} and summary["rejected_unknown_type"] == {}


def test_an_unknown_type_satisfies_no_signature_and_is_counted_as_such():
    check = SignatureCheck(default_signatures(), TYPES)
    kept, rejected, summary = check.partition([edge(0, "treated_by", 5), edge(5, "co_occurs_with", 0)])
    assert [e["relation"] for e in kept] == ["co_occurs_with"]               # unconstrained: kept
    assert rejected[0]["detail"].endswith("got Disease -> Entity (Entity: not an entity type)")
    assert summary["rejected_unknown_type"] == {"treated_by": 1}
    assert summary["violations"] == {"treated_by": {"Disease": {"Entity": 1}}}


def test_a_relation_without_an_entry_is_unconstrained():
    sigs = {r: s for r, s in default_signatures().items() if r != "treated_by"}
    kept, rejected, summary = SignatureCheck(sigs, TYPES).partition([edge(0, "treated_by", 2)])
    assert len(kept) == 1 and rejected == [] and summary["edges_unconstrained"] == 1
    assert SignatureCheck({}, TYPES).violation("has_symptom", "Chemical", "Anatomy") is None


def test_without_any_typed_node_the_check_is_not_applicable():
    check = SignatureCheck(default_signatures(), ["Entity"] * len(NAMES))
    kept, rejected, summary = check.partition([edge(0, "treated_by", 2), edge(0, "has_symptom", 1)])
    assert len(kept) == 2 and rejected == []
    assert summary["applicable"] is False and summary["edges_checked"] == 0 and summary["edges_unconstrained"] == 2
    assert "no node has one of the entity types" in summary["not_applicable"]


def test_config_validates_the_table():
    cfg = build(KgConfig, {"signatures": {"treated_by": {"head": ["Disease"], "tail": ["Chemical"]}}}, "kg")
    assert cfg.signatures == {"treated_by": RelationSignature(["Disease"], ["Chemical"])}
    assert build(KgConfig, {}, "kg").signatures == default_signatures()
    with pytest.raises(ConfigError, match="unknown type"):
        build(KgConfig, {"signatures": {"treated_by": {"head": ["Disease"], "tail": ["Drug"]}}}, "kg")
    with pytest.raises(ConfigError, match="unknown relation"):
        build(KgConfig, {"signatures": {"cures": {"head": ["Disease"], "tail": ["Chemical"]}}}, "kg")
    with pytest.raises(ConfigError, match="non-empty"):
        build(KgConfig, {"signatures": {"treated_by": {"head": [], "tail": ["Chemical"]}}}, "kg")


# ----------------------------------------------------------------------------- in the stage
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return run_stage_once(tmp_path_factory.mktemp("kg_sig"))


def test_stage_rejects_medquad_disease_treated_by_disease(built):
    _, out, summary = built
    edges = {(e["kind"], e["head"], e["relation"], e["tail"]) for e in read_jsonl(out / "edges.jsonl")}
    assert ("medquad", "hypertension", "treated_by", "aspirin") in edges          # Disease -> Chemical
    assert ("medquad", "hypertension", "treated_by", "asthma") not in edges       # Disease -> Disease
    rejected = {r["id"]: r for r in read_jsonl(out / "rejected_edges/part-00000.jsonl")}
    r = rejected["medquad|hypertension|treated_by|asthma"]
    assert r["reason"] == "signature_violation" and "got Disease -> Disease" in r["detail"]
    assert r["record"]["provenance"]["doc_ids"] == ["mq-6"] and r["record"]["provenance"]["qtype"] == ["treatment"]
    assert r["record"]["provenance"]["sentences"][0]["text"] == "Patients with asthma need care."
    assert set(rejected) == {"medquad|hypertension|treated_by|asthma",
                             "medquad|acute lymphoblastic leukemia|treated_by|fever",     # Disease -> Symptom
                             "pattern|hypertension|located_in|asthma"}                   # "Y in the X", not anatomy
    assert summary["rejected_edges"]["signature_violation"] == len(rejected) == summary["signatures"]["rejected"]
    assert summary["rejected_edges"]["by_kind_relation"] == {"medquad": {"treated_by": 2}, "pattern": {"located_in": 1}}
    assert summary["signatures"]["violations"] == {"located_in": {"Disease": {"Disease": 1}},
                                                   "treated_by": {"Disease": {"Disease": 1, "Symptom": 1}}}
    checked = summary["signatures"]
    assert checked["edges_checked"] + checked["edges_unconstrained"] == summary["edges"] + len(rejected)
    assert ("pattern", "asthma", "located_in", "lung") in edges and ("pattern", "wheezing", "located_in", "chest") in edges


def test_rejected_edges_are_not_in_the_graph(built):
    _, out, _ = built
    g = KnowledgeGraph.load(out)
    rejected = [r["record"] for r in read_jsonl(out / "rejected_edges/part-00000.jsonl")]
    for r in rejected:
        assert all(not (g.edge(nb.edge)["relation"] == r["relation"] and g.edge(nb.edge)["kind"] == r["kind"]
                        and nb.node == r["tail_idx"]) for nb in g.neighbors(r["head_idx"]))
    assert len(g.indices) == 2 * len(read_jsonl(out / "edges.jsonl"))


def test_type_metrics(built):
    from tasks.kg import type_metrics
    _, _, summary = built
    m = type_metrics(summary)
    assert m["nodes.type.Anatomy"] == 2 and m["nodes.type.Gene"] == 0 and m["edges.relation.located_in"] == 2
    assert m["rejected_edges.signature_violation.treated_by"] == 2
    assert m["rejected_edges.signature_violation.located_in"] == 1
    assert m["rejected_edges.signature_violation.has_symptom"] == 0
    assert sum(v for k, v in m.items() if k.startswith("edges.relation.")) == summary["edges"]


def test_stage_without_a_type_tier_keeps_every_edge_and_says_so(tmp_path):
    tree = kg_tree()
    tree.params = {"build": {"type_tier": False}}
    paths = write_inputs(tmp_path / "in", tree=tree)
    summary = run_stage(paths, tmp_path / "kg")
    assert summary["nodes_by_type"] == {"Entity": len(ENTITIES)}
    assert summary["signatures"]["applicable"] is False and summary["rejected_edges"]["signature_violation"] == 0
    edges = {(e["kind"], e["head"], e["relation"], e["tail"]) for e in read_jsonl(tmp_path / "kg" / "edges.jsonl")}
    assert ("medquad", "hypertension", "treated_by", "asthma") in edges
    assert summary["edge_precision"]["heldout_cid"]["typed"] is False
