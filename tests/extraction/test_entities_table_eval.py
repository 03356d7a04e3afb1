"""Evaluation math on hand-made spans, the entity table's filters and order, and the entity rejections."""

from __future__ import annotations

import json

import pytest

from tasks.common.io import shard_paths
from tasks.extraction.common import DocResult, entity_rejection, mention
from tasks.extraction.entity_table import EntityRejections, EntityTable
from tasks.extraction.gold import GoldDoc
from tasks.extraction.scoring import flat_metrics, prf, score


def test_prf_counts_and_undefined_cases():
    assert prf(3, 1, 2) == {"precision": 0.75, "recall": 0.6, "f1": pytest.approx(0.666667, abs=1e-6),
                            "tp": 3, "fp": 1, "fn": 2}
    assert prf(0, 0, 0)["f1"] == 0.0 and prf(0, 5, 0)["precision"] == 0.0 and prf(0, 0, 5)["recall"] == 0.0


def gold_docs():
    text = "Aspirin caused gastric ulcer and asthma in rats."
    cdr = GoldDoc("BC5CDR:1", "BC5CDR", "1", text,
                  [(0, 7, "Chemical"), (15, 28, "Disease"), (33, 39, "Disease")])
    ncbi = GoldDoc("NCBI-disease:2", "NCBI-disease", "2", text, [(15, 28, "Disease")])
    return [cdr, ncbi]


def test_score_exact_span_per_type_micro_and_span_only():
    cdr, ncbi = gold_docs()
    p1 = DocResult("BC5CDR:1", entities=[
        mention("Aspirin", "Chemical", 0, 7),           # TP
        mention("gastric ulcer", "Chemical", 15, 28),   # right span, wrong type: FP Chem + FN Disease
        mention("ulcer", "Disease", 23, 28),            # boundary error: FP
        mention("asthma", "Disease", 33, 39),           # TP
        mention("rat", "Disease", None, None),          # unlocated: FP
        mention("COX", "Gene", 0, 3),                   # a type nobody annotates: ignored
    ])
    p2 = DocResult("NCBI-disease:2", entities=[
        mention("Aspirin", "Chemical", 0, 7),           # NCBI annotates no chemicals: ignored
        mention("gastric ulcer", "Disease", 15, 28),    # TP
    ])
    r = score([cdr, ncbi], [p1, p2])
    assert r["per_type"]["Chemical"] | {} == {**prf(1, 1, 0)}
    assert r["per_type"]["Disease"] == prf(2, 2, 1)
    assert r["micro"] == prf(3, 3, 1)
    # span-only: doc1 spans {0-7, 15-28, 23-28, 33-39} + 1 unlocated vs gold {0-7, 15-28, 33-39}
    assert r["span_only"] == prf(4, 2, 0)
    assert r["ignored_predictions_by_type"] == {"Chemical": 1, "Gene": 1}
    assert r["unlocated_predictions"] == 1 and r["failed_docs"] == 0
    m = flat_metrics("eval.local", r)
    assert m["eval.local.Disease.f1"] == r["per_type"]["Disease"]["f1"] and "eval.local.micro.precision" in m


def test_score_type_map_and_failed_documents():
    cdr, ncbi = gold_docs()
    p1 = DocResult("BC5CDR:1", entities=[mention("Aspirin", "drug", 0, 7), mention("asthma", "Symptom", 33, 39)])
    failed = DocResult("NCBI-disease:2", entities=[mention("gastric ulcer", "Disease", 15, 28)],
                       failures=[{"kind": "unparseable"}])
    r = score([cdr, ncbi], [p1, failed], type_map={"Drug": "Chemical", "symptom": "Disease"})
    assert r["per_type"]["Chemical"]["tp"] == 1 and r["per_type"]["Disease"]["tp"] == 1
    assert r["per_type"]["Disease"]["fn"] == 2          # doc1's ulcer + the failed doc's ulcer
    assert r["failed_docs"] == 1
    with pytest.raises(ValueError):
        score([cdr], [failed])


def test_entity_table_counts_majority_and_filters():
    t = EntityTable()
    docs = [[mention("Aspirin", "Chemical", 0, 7), mention("aspirin", "Chemical", 10, 17)],
            [mention("aspirin", "Disease", 0, 7), mention("Flu", "Disease", 9, 12)],
            [mention("ASPIRIN", "Chemical", 0, 7), mention("flu", "Disease", 3, 6),
             mention("rare", "Disease", 7, 11)],
            [mention("gene x", "Gene", 0, 6)] * 1 + [mention("gene x", "Gene", 8, 14)]]
    for d in docs:
        t.add_document(d)
    kept, rejected = t.filtered(min_entity_count=2, min_type_entities=2)
    assert t.row("aspirin") == {"norm": "aspirin", "text": "aspirin", "type": "Chemical", "count": 4,
                                "doc_count": 3, "types": {"Chemical": 3, "Disease": 1}, "alt_types": []}
    # rare (1 mention) -> rare_entity first; then every type keeps 1 entity (< 2) -> rare_type
    assert kept == []
    assert {r["norm"]: r["reason"] for r in rejected} == {"rare": "rare_entity", "aspirin": "rare_type",
                                                          "flu": "rare_type", "gene x": "rare_type"}
    assert [r["norm"] for r in rejected if r["reason"] == "rare_type"] == ["aspirin", "flu", "gene x"]
    kept, rejected = t.filtered(min_entity_count=2, min_type_entities=1)
    assert [(r["norm"], r["count"]) for r in kept] == [("aspirin", 4), ("flu", 2), ("gene x", 2)]
    assert kept[1]["text"] == "Flu"                      # tie Flu/flu: lexicographically smallest


def test_entity_rejections_are_rejection_entries_of_their_own_unit(tmp_path):
    t = EntityTable()
    t.add_document([mention("flu", "Disease", 0, 3), mention("flu", "Disease", 5, 8), mention("rare", "Disease", 9, 13)])
    _, rejected_rows = t.filtered(min_entity_count=2, min_type_entities=1)
    rej = EntityRejections(tmp_path, shard_size=1)
    rej.add({**entity_rejection("  ", "Drug", "empty", 100), "doc_id": "d1", "source": "medquad"})
    for r in rejected_rows:
        rej.add(r)
    counts = rej.close()
    assert counts == {"entities_rejected": 2, "entities_rejected_by_reason": {"empty": 1, "rare_entity": 1}}
    assert not (tmp_path / "rejected").exists()           # documents' rejected/ is not touched
    lines = [json.loads(x) for p in shard_paths(tmp_path / "rejected_entities") for x in open(p)]
    assert len(shard_paths(tmp_path / "rejected_entities")) == 2
    empty, rare = lines
    assert empty["reason"] == "empty" and empty["source"] == "medquad" and empty["record"]["doc_id"] == "d1"
    assert rare == {"reason": "rare_entity", "detail": "seen 1 times < min_entity_count 2", "id": None,
                    "source": None, "record": {"norm": "rare", "text": "rare", "type": "Disease", "count": 1,
                                               "doc_count": 1, "types": {"Disease": 1}, "alt_types": []}}
