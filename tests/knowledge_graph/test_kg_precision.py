"""Edge precision: the seeded held-out CID split (deterministic, excluded from the edges), scores
against its gold on the fixtures (known tp / fp / fn), the review sample and the import of its labels."""

from __future__ import annotations

import json

import pytest
from knowledge_graph.test_kg_fixtures import read_jsonl, run_stage, run_stage_once, write_inputs

from eval.intervals import wilson
from tasks.knowledge_graph.heldout import HeldOutCid, heldout_value
from tasks.knowledge_graph.precision import precision_recall
from tasks.knowledge_graph.signatures import SignatureCheck, default_signatures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return run_stage_once(tmp_path_factory.mktemp("kg_prec"))


def test_heldout_split_is_seeded_by_document_id():
    ids = [f"doc-{i}" for i in range(2000)]
    check = SignatureCheck(default_signatures(), [])

    def held(seed, fraction, order=ids):
        h = HeldOutCid(seed, fraction, check)
        return {d for d in order if h.holds_out(d, {"relations": [{}]})}

    small, large = held(7, 0.1), held(7, 0.3)
    assert small == held(7, 0.1, list(reversed(ids)))              # order of the corpus does not matter
    assert small < large and 100 < len(small) < 300 and 450 < len(large) < 750
    assert held(8, 0.1) != small                                    # the seed does
    assert not HeldOutCid(7, 0.99, check).holds_out("doc-1", {"relations": []})   # no gold: never held out
    # the fixtures rely on this draw: pt-3 held out, pt-1 not, at the default fraction and seed
    assert heldout_value(1234, "pt-3") < 0.2 <= heldout_value(1234, "pt-1")


def test_heldout_relations_are_gold_not_edges(built):
    _, out, summary = built
    edges = read_jsonl(out / "edges.jsonl")
    assert not any("pt-3" in e["provenance"]["doc_ids"] for e in edges if e["kind"] == "cid")
    assert any("pt-1" in e["provenance"]["doc_ids"] for e in edges if e["kind"] == "cid")
    # the held-out text is still read: its pattern relations are edges like any other document's
    pattern = {(e["head"], e["tail"]): e for e in edges if e["kind"] == "pattern" and e["relation"] == "caused_by"}
    assert pattern[("seizures", "lithium carbonate")]["provenance"]["doc_ids"] == ["pt-3"]
    assert summary["sources"]["cid"]["heldout"] == 3


def test_precision_against_heldout_gold(built):
    _, out, summary = built
    report = json.loads((out / "edge_precision.json").read_text())
    assert report == summary["edge_precision"]
    h = report["heldout_cid"]
    assert (h["docs_with_cid"], h["docs_heldout"], h["gold_relations_read"], h["gold_relations_not_usable"],
            h["gold_pairs"], h["gold_pairs_violating_signature"]) == (2, 1, 4, 1, 3, 0)
    p = h["relations"]["pattern"]
    assert (p["predicted"], p["tp"], p["fp"], p["fn"]) == (3, 2, 1, 1)
    assert p["precision"] == p["recall"] == round(2 / 3, 6)
    assert (p["precision_ci_low"], p["precision_ci_high"]) == tuple(round(x, 6) for x in wilson(2, 3))
    c = h["cooccurrence_baseline"]
    assert (c["predicted"], c["tp"], c["fp"], c["fn"], c["precision"], c["recall"]) == (5, 3, 2, 0, 0.6, 1.0)
    assert h["signature_effect"]["pattern"] == {"caused_by_found": 3, "in_scope": 3, "out_of_scope": 0,
                                                "rejected_by_signature": 0, "rejected_but_gold": 0}


def test_no_heldout_share_gives_every_cid_edge(tmp_path):
    paths = write_inputs(tmp_path / "in")
    summary = run_stage(paths, tmp_path / "kg", "heldout.cid_fraction=0")
    assert summary["sources"]["cid"]["kept"] == 6 and "heldout" not in summary["sources"]["cid"]
    h = summary["edge_precision"]["heldout_cid"]
    assert h["docs_heldout"] == 0 and h["relations"]["pattern"]["precision"] is None


def test_precision_recall_counts():
    got = precision_recall({1, 2, 3, 4}, {2, 4, 5})
    assert (got["tp"], got["fp"], got["fn"], got["precision"], got["recall"]) == (2, 2, 1, 0.5, round(2 / 3, 6))
    assert precision_recall(set(), {1})["precision"] is None and precision_recall({1}, set())["recall"] is None


def test_review_sample_is_seeded_and_capped(built, tmp_path):
    paths, out, _ = built
    sample = read_jsonl(out / "edge_review_sample.jsonl")
    assert sample and all(r["label"] is None for r in sample)
    assert {r["kind"] for r in sample} <= {"cid", "medquad", "pattern", "llm"}      # no co-occurrence
    assert {r["status"] for r in sample} == {"kept", "rejected"}
    row = next(r for r in sample if r["key"] == "medquad|hypertension|treated_by|asthma")
    assert (row["status"], row["head_type"], row["tail_type"], row["sentence"]) == (
        "rejected", "Disease", "Disease", "Patients with asthma need care.")
    run_stage(paths, tmp_path / "one", "review.per_relation=1")
    small = read_jsonl(tmp_path / "one" / "edge_review_sample.jsonl")
    groups = [(r["relation"], r["kind"], r["status"]) for r in small]
    assert len(groups) == len(set(groups)) == len({(r["relation"], r["kind"], r["status"]) for r in sample})
    assert len(small) < len(sample)
    run_stage(paths, tmp_path / "seed", "review.per_relation=1", "seed=99")
    assert read_jsonl(tmp_path / "seed" / "edge_review_sample.jsonl") != small


def write_labels(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_review_labels_give_precision_per_relation(tmp_path):
    paths = write_inputs(tmp_path / "in")
    labels = write_labels(tmp_path / "labels.jsonl", [
        {"key": "pattern|seizures|caused_by|lithium carbonate", "label": "correct"},
        {"key": "pattern|headache|caused_by|aspirin", "label": "correct"},
        {"key": "pattern|hypertension|caused_by|vincristine", "label": "incorrect"},
        {"key": "medquad|hypertension|treated_by|aspirin", "label": "correct"},
        {"key": "medquad|hypertension|treated_by|asthma", "label": "incorrect"},     # a rejected edge
        {"key": "pattern|asthma|caused_by|unicorn", "label": "correct"},             # no such edge
        {"key": "medquad|asthma|has_symptom|cough", "label": None}])                 # not reviewed yet
    summary = run_stage(paths, tmp_path / "kg", f"review.labels={labels}")
    r = summary["edge_precision"]["review"]
    assert (r["labels"], r["unlabelled"], r["stale"]) == (6, 1, 1)
    caused = r["kept"]["by_relation"]["caused_by"]
    assert (caused["labelled"], caused["correct"], caused["precision"]) == (3, 2, round(2 / 3, 6))
    assert (caused["precision_ci_low"], caused["precision_ci_high"]) == tuple(round(x, 6) for x in wilson(2, 3))
    assert r["kept"]["by_kind_relation"]["medquad"]["treated_by"]["precision"] == 1.0
    assert (r["kept"]["labelled"], r["kept"]["correct"]) == (4, 3)
    assert r["rejected"]["by_relation"]["treated_by"] == {
        "labelled": 1, "incorrect": 1, "precision": 1.0, "precision_ci_low": round(wilson(1, 1)[0], 6),
        "precision_ci_high": 1.0}
    assert json.loads((tmp_path / "kg" / "edge_precision.json").read_text())["review"] == r


def test_review_labels_that_cannot_be_read_stop_the_stage(tmp_path):
    paths = write_inputs(tmp_path / "in")
    with pytest.raises(FileNotFoundError, match="review.labels"):
        run_stage(paths, tmp_path / "kg", f"review.labels={tmp_path / 'missing.jsonl'}")
    assert not (tmp_path / "kg").exists()
    bad = write_labels(tmp_path / "bad.jsonl", [{"key": "a|b|treated_by|c", "label": "maybe"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: label 'maybe'"):
        run_stage(paths, tmp_path / "kg", f"review.labels={bad}")
    twice = write_labels(tmp_path / "twice.jsonl", [{"key": "k", "label": "correct"}, {"key": "k", "label": "incorrect"}])
    with pytest.raises(ValueError, match="twice.jsonl:2: key 'k' is labelled twice"):
        run_stage(paths, tmp_path / "kg", f"review.labels={twice}")
