"""`python -m tasks.kg` end to end on a small tree + PubTator / MedQuAD / other records (MLflow in a
temp store; the `kg:` section may be absent from params.yaml): accounting, every edge's provenance,
CSR consistent with edges.jsonl, per-source rejection reasons, byte-identical re-runs, and a bad tree
or out-of-step doc_hits stopping the stage with a clear error. Signatures and edge precision:
test_kg_signatures.py, test_kg_precision.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from knowledge_graph.test_kg_fixtures import (
    ENTITIES,
    RECORDS,
    kg_tree,
    read_jsonl,
    run_stage,
    run_stage_once,
    write_inputs,
)

from tasks.knowledge_graph.graph import KnowledgeGraph
from tasks.knowledge_graph.sources import SENTENCE_KINDS
from tasks.tree.model import TreeError

OUTPUTS = ("nodes.jsonl", "edges.jsonl", "graph.npz", "summary.json", "relation_failures.jsonl",
           "edge_precision.json", "edge_review_sample.jsonl", "rejected_edges/part-00000.jsonl")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One stage run shared by the read-only tests below (its own MLflow store, restored after)."""
    tmp = tmp_path_factory.mktemp("kg")
    paths, out, summary = run_stage_once(tmp)
    logged = {p.name for p in (tmp / "artifacts").rglob("*") if p.is_file()}
    assert {"kg_overview.png", "relation_failures.jsonl", "kept_sample.jsonl", "summary.json",
            "edge_precision.json", "edge_review_sample.jsonl"} <= logged
    return paths, out, summary


def test_accounting_and_sources(built):
    _, out, summary = built
    assert summary["read"] == len(RECORDS) + 2 == summary["kept"] + summary["rejected"]
    assert summary["rejected_by_reason"] == {"bad_json": 1, "missing_field": 1}
    assert json.loads((out / "summary.json").read_text()) == summary
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(o for o in OUTPUTS if "/" not in o), "kg_overview.png", "rejected", "rejected_edges"])
    cid = summary["sources"]["cid"]                       # pt-1: 7 relations; pt-3 (held out): 4
    assert cid["read"] == 11 and cid["kept"] == 3 and cid["heldout"] == 3
    assert cid["kept"] + cid["heldout"] + sum(cid["rejected_by_reason"].values()) == cid["read"]
    assert cid["rejected_by_reason"] == {"chemical_no_mention": 2, "disease_composite_mention_only": 1,
                                         "disease_not_in_tree": 1, "malformed_relation": 1}
    mq = summary["sources"]["medquad"]
    assert mq["docs"] == 6 and mq["docs_linked"] == 3 and mq["focus_partial"] == 1
    assert mq["rejected_by_reason"] == {"focus_not_in_tree": 1, "no_answer_entities": 1, "qtype_unmapped": 1}
    assert mq["qtype_unmapped"] == {"information": 1}
    co = summary["sources"]["cooccurrence"]
    assert co["pairs"] == co["kept"] + sum(co["rejected_by_reason"].values())
    assert summary["edges"] == sum(summary["edges_by_kind"].values())
    assert summary["nodes_by_type"] == {"Anatomy": 2, "Chemical": 5, "Disease": 6, "Symptom": 5, "Test": 1}
    assert all(summary["edges_by_kind"][k] > 0 for k in ("cid", "medquad", "pattern", "cooccurrence"))
    assert summary["edges_by_kind"]["llm"] == 0 and summary["relation_failures"] == 0


def test_nodes_are_the_tree_entities(built):
    _, out, summary = built
    nodes = read_jsonl(out / "nodes.jsonl")
    assert [n["norm"] for n in nodes] == sorted(ENTITIES) and summary["nodes"] == len(ENTITIES)
    asthma = next(n for n in nodes if n["norm"] == "asthma")
    assert (asthma["name"], asthma["type"], asthma["tree_node"], asthma["tree_path"], asthma["path"],
            asthma["frequency"]) == ("Asthma", "Disease", "e:asthma", ["Disease", "respiratory"],
                                     "Disease.respiratory", 9)
    assert asthma["mentions"] > 0 and asthma["docs"] > 0 and asthma["degree"] > 0
    assert [n["idx"] for n in nodes] == list(range(len(nodes)))


def test_every_edge_has_provenance(built):
    _, out, _ = built
    edges = read_jsonl(out / "edges.jsonl")
    texts = {r["id"]: r["text"] for r in RECORDS}
    assert [e["id"] for e in edges] == list(range(len(edges)))
    for e in edges:
        p = e["provenance"]
        assert p["kind"] == e["kind"] and p["doc_ids"] and p["n_docs"] >= len(p["doc_ids"]) and e["weight"] > 0
        assert e["head"] != e["tail"] and e["directed"] == (e["relation"] not in ("co_occurs_with", "associated_with"))
        if e["kind"] in SENTENCE_KINDS:
            assert p["sentences"] and e["support"] == p["n_sentences"]
        for s in p["sentences"]:
            assert texts[s["doc_id"]][s["start"]:s["end"]] == s["text"]
    by = {(e["head"], e["relation"], e["tail"], e["kind"]): e for e in edges}
    cid = by[("hypertension", "caused_by", "cocaine", "cid")]["provenance"]
    assert cid["mesh"] == ["D003042>D006973"] and cid["sentences"][0]["text"].startswith("Cocaine-induced")
    assert by[("tricuspid regurgitation", "caused_by", "lithium carbonate", "cid")]["provenance"]["doc_ids"] == ["pt-1"]
    mq = by[("acute lymphoblastic leukemia", "treated_by", "vincristine", "medquad")]["provenance"]
    assert mq["qtype"] == ["treatment"] and mq["focus_match"] == ["partial"]
    pat = by[("hypertension", "caused_by", "cocaine", "pattern")]["provenance"]
    assert pat["pattern"] == ["x_induced_y", "y_caused_by_x"] and pat["n_docs"] == 2
    co = by[("albuterol", "co_occurs_with", "asthma", "cooccurrence")]
    assert co["provenance"]["count"] == co["support"] and 0 < co["provenance"]["npmi"] <= 1
    for rel in (("asthma", "has_symptom", x, k) for x in ("wheezing", "cough", "shortness of breath")
                for k in ("medquad", "pattern")):
        assert rel in by


def test_csr_matches_edges_jsonl(built):
    _, out, summary = built
    g = KnowledgeGraph.load(out)
    edges = read_jsonl(out / "edges.jsonl")
    assert len(g.indices) == 2 * len(edges) == summary["csr_entries"]
    assert (np.diff(g.indptr) == [n["degree"] for n in g.nodes]).all()
    seen = {}
    for i in range(g.n_nodes):
        for nb in g.neighbors(i):
            e = edges[nb.edge]
            assert nb.weight == e["weight"]
            assert (i, nb.node) == ((e["head_idx"], e["tail_idx"]) if nb.forward else (e["tail_idx"], e["head_idx"]))
            seen[(nb.edge, nb.forward)] = True
    assert len(seen) == 2 * len(edges)
    assert g.edge(0) == edges[0]
    walk = g.random_walk("asthma", 10, 1234)
    assert walk == g.random_walk("asthma", 10, 1234) and len(walk.edges) == 10
    sub = g.subgraph(["asthma", "albuterol", "cough"])
    assert sub.edges and all({edges[x]["head"], edges[x]["tail"]} <= {"asthma", "albuterol", "cough"}
                             for x in sub.edges)


def test_rerun_is_byte_identical(built, tmp_path):
    paths, out, _ = built
    run_stage(paths, tmp_path / "again")
    for name in OUTPUTS:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert (out / "rejected_edges/part-00000.jsonl").read_text().strip()        # not trivially equal


def test_tree_with_a_cycle_stops_the_stage(tmp_path):
    tree = kg_tree().to_json()
    for n in tree["nodes"]:
        if n["id"] == "c1":
            n["parent"] = "c1.1"                       # c1 -> c1.1 -> c1
    paths = write_inputs(tmp_path / "in")
    paths["tree"].write_text(json.dumps(tree), encoding="utf-8")
    with pytest.raises(TreeError, match="cycle"):
        run_stage(paths, tmp_path / "kg")
    assert not (tmp_path / "kg").exists()


def test_doc_hits_out_of_step_stop_the_stage(tmp_path):
    paths = write_inputs(tmp_path / "in")
    hits = paths["doc_hits_dir"] / "part-00000.jsonl"
    lines = hits.read_text().splitlines()
    hits.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(RuntimeError, match="out of step"):
        run_stage(paths, tmp_path / "kg")
    hits.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RuntimeError, match="out of step"):
        run_stage(paths, tmp_path / "kg2")
    assert not (tmp_path / "kg").exists() and not (tmp_path / "kg2").exists()


def test_config_rejects_unknown_relations_and_keys(tmp_path):
    from tasks.common.config import ConfigError
    paths = write_inputs(tmp_path / "in")
    with pytest.raises(ConfigError, match="unknown relation"):
        run_stage(paths, tmp_path / "kg", "medquad.qtype_relations={symptoms: cures}")
    with pytest.raises(ConfigError, match="unknown key"):
        run_stage(paths, tmp_path / "kg", "cooccurence.min_count=2")
