"""Corpus documents as CPT samples: one per planned view with distinct deterministic ids, rejections with
reasons (missing, empty, image documents), views accounted, text cut at whitespace, and a max_views cap
that keeps the plan's proportions."""

from __future__ import annotations

import numpy as np

from tasks.cpt_synthesis.documents import (
    DocumentParams,
    capped_repeats,
    corpus_entry,
    cut_text,
    document_samples,
)
from tasks.cpt_synthesis.mixing import mixing_plan
from tasks.cpt_synthesis.samples import validate_sample

RECORDS = [{"id": "medquad-1", "source": "medquad", "text": "Asthma causes wheezing and cough.", "images": [], "meta": {}},
           {"id": "iu_xray-2", "source": "iu_xray", "text": "  \n ", "images": [], "meta": {}},
           {"id": "vqa_rad-3", "source": "vqa_rad", "text": "Question: Is there a mass?\nAnswer: yes",
            "images": [{"path": "images/aa/a.png", "sha256": "a" * 64}], "meta": {}},
           {"id": "medline-4", "source": "medline", "text": "Salbutamol relieves bronchospasm.", "images": [], "meta": {}}]
DOCS = {r["id"]: corpus_entry(r) for r in RECORDS}
PLAN = [{"doc_id": "medquad-1", "repeats": 3}, {"doc_id": "iu_xray-2", "repeats": 1},
        {"doc_id": "vqa_rad-3", "repeats": 2}, {"doc_id": "gone-9", "repeats": 2},
        {"doc_id": "medline-4", "repeats": 0}]


def test_views_become_samples_with_distinct_deterministic_ids():
    out, report = document_samples(PLAN, DOCS, DocumentParams(), seed=1)
    assert [s["source_ids"] for s in out.kept] == [["medquad-1"]] * 3
    ids = [s["id"] for s in out.kept]
    assert len(set(ids)) == 3
    assert ids == [s["id"] for s in document_samples(PLAN, DOCS, DocumentParams(), seed=2)[0].kept]
    for v, s in enumerate(out.kept):
        validate_sample(s)
        assert (s["kind"], s["task"], s["text"]) == ("text", "document", RECORDS[0]["text"])
        assert s["meta"] == {"generator": "local", "source": "medquad", "view": v, "repeats": 3, "truncated": False}
    assert report["planned_views"] == report["views"] == 8 and report["documents"] == 4


def test_rejections_have_reasons_and_every_view_is_accounted():
    out, report = document_samples(PLAN, DOCS, DocumentParams(), seed=1)
    assert out.reasons() == {"empty_text": 1, "image_document": 2, "missing_document": 2}
    assert len(out.kept) + len(out.rejected) == report["views"]
    assert {r["item"]["doc_id"] for r in out.rejected} == {"iu_xray-2", "vqa_rad-3", "gone-9"}
    assert DOCS["vqa_rad-3"]["text"] == ""                     # image documents keep no text in memory


def test_cut_text_at_whitespace():
    assert cut_text("  short text ", 100) == ("short text", False)
    assert cut_text("alpha beta gamma", 12) == ("alpha beta", True)
    assert cut_text("alpha beta gamma", 10) == ("alpha beta", True)     # the space right after the limit
    assert cut_text("x" * 20, 8) == ("x" * 8, True)                     # no whitespace: hard cut
    docs = {"d": {"source": "medline", "text": "word " * 100, "images": False}}
    out, report = document_samples([{"doc_id": "d", "repeats": 1}], docs, DocumentParams(max_chars=42), seed=0)
    assert len(out.kept[0]["text"]) <= 42 and out.kept[0]["text"].endswith("word")
    assert out.kept[0]["meta"]["truncated"] and report["truncated_documents"] == 1


def test_max_views_cap_keeps_proportions_and_is_deterministic():
    rows = [{"doc_id": f"d{i}", "weight": w, "n_entities": 1} for i, w in enumerate(np.linspace(0.1, 3.0, 40))]
    plan, _ = mixing_plan(rows, budget=400, seed=5)
    planned = [r["repeats"] for r in plan.kept]
    capped = capped_repeats(planned, 100, seed=5)
    assert sum(capped) == 100 and capped == capped_repeats(planned, 100, seed=5)
    for p, c in zip(planned, capped):
        assert np.floor(p / 4) <= c <= np.ceil(p / 4)                      # each document: its share of the cap
    assert capped_repeats(planned, 0, 5) == planned == capped_repeats(planned, 1000, 5)

    docs = {r["doc_id"]: {"source": "medline", "text": f"text of {r['doc_id']}", "images": False} for r in rows}
    out, report = document_samples(plan.kept, docs, DocumentParams(max_views=100), seed=5)
    assert len(out.kept) == 100 == report["views"] and report["planned_views"] == 400
    again, _ = document_samples(plan.kept, docs, DocumentParams(max_views=100), seed=5)
    assert [s["id"] for s in again.kept] == [s["id"] for s in out.kept]
