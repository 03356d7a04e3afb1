"""Open typing: the MeSH-derived type rules and terms, the weak labels (dictionary + gene pattern),
the gold augmentation, the held-out-term split and its recall, the entity table's alt types, and the
review sample with imported labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.common.io import ShardedJsonlWriter, shard_paths
from tasks.common.records import make_record
from tasks.extraction.common import DocResult, mention
from tasks.extraction.entity_table import EntityTable
from tasks.extraction.gold import GoldDoc
from tasks.extraction.review import ReviewParams, ReviewSample, precision_by_type
from tasks.extraction.scoring import recall_on_spans
from tasks.extraction.vocabulary import (
    TypedVocabulary,
    VocabularyParams,
    descriptor_type,
    gene_symbol,
    load_mesh_vocabulary,
    term_surfaces,
)
from tasks.extraction.weak_labels import WeakLabeller, WeakParams, augment_gold, weak_training_docs

MESH = """\ufeffTree Number\tDesc Ui\tTerm
C05.550.091\tD018771\tArthralgia
C23.888.592.612.050\tD018771\tArthralgia
C01.150.703.080\tD014008\tTinea Pedis
C23.888.885.687\tD014008\tTinea Pedis
D12.776.157\tD019398\tBRCA1 Protein
G05.360.340.024.340.137\tD019398g\tGenes, BRCA1
G05.360.340.024.340.030\tD005787\tGenes, Dominant
C18.452.394.750.149\tD003924\tDiabetes Mellitus, Type 2
A04.411\tD008168\tLung
A01.236\tD001940\tBreast
B01.050.150.900.649.313.988.400.112.400.400\tD006801\tHumans
E04.650\tD015412\tMastectomy
E01.370.225.500\tD001772\tBlood Cell Count
Z01.107\tD000349\tAfrica
"""


@pytest.fixture
def mesh_file(tmp_path) -> Path:
    p = tmp_path / "mesh.txt"
    p.write_text(MESH, encoding="utf-8")
    return p


def test_descriptor_type_follows_priority_and_exclusions():
    p = VocabularyParams()
    assert descriptor_type({"C05.550.091", "C23.888.592.612.050"}, p) == "Symptom"   # a sign first
    assert descriptor_type({"C01.150.703.080", "C23.888.885.687"}, p) == "Disease"   # an infection is not
    assert descriptor_type({"D12.776.157"}, p) == "Chemical"
    assert descriptor_type({"G05.360.340.024.340.137"}, p) == "Gene"
    assert descriptor_type({"E01.370.225.500"}, p) == "Test"
    assert descriptor_type({"Z01.107"}, p) is None
    with pytest.raises(ValueError, match="unknown types"):
        VocabularyParams(rules={"Vibes": {"include": ["Q"]}}, priority=["Vibes"])


def test_term_surfaces_uninvert_and_number():
    assert term_surfaces("Diabetes Mellitus, Type 2") == ["type 2 diabetes mellitus"]   # "-us" is no plural
    assert term_surfaces("Lung") == ["lung", "lungs"]
    assert term_surfaces("Mammary Glands, Human") == ["human mammary glands", "human mammary gland"]
    assert term_surfaces("Diagnosis, Dual (Psychiatry)")[0] == "dual diagnosis"
    assert gene_symbol("Genes, BRCA1") == "brca1"
    assert gene_symbol("Genes, Dominant") is None and gene_symbol("Genes, X-Linked") is None


def test_load_vocabulary_types_stop_terms_and_deterministic_heldout(mesh_file):
    p = VocabularyParams(heldout_term_fraction=0.0)
    v = load_mesh_vocabulary(mesh_file, p, seed=1)
    assert v.terms["arthralgia"] == "Symptom" and v.terms["tinea pedis"] == "Disease"
    assert v.terms["brca1"] == "Gene" and v.terms["brca1 protein"] == "Chemical"
    assert v.terms["type 2 diabetes mellitus"] == "Disease" and v.terms["lungs"] == "Anatomy"
    assert "humans" not in v.terms and "africa" not in v.terms
    assert v.stats["skipped"]["stop_term"] >= 1 and v.stats["skipped"]["untyped_category"] == 1
    half = VocabularyParams(heldout_term_fraction=0.5)
    a, b = load_mesh_vocabulary(mesh_file, half, seed=1), load_mesh_vocabulary(mesh_file, half, seed=1)
    assert a.heldout == b.heldout and a.heldout and a.terms
    assert not set(a.heldout) & set(a.terms) and {**a.terms, **a.heldout} == v.terms
    with pytest.raises(FileNotFoundError):
        load_mesh_vocabulary(mesh_file.parent / "nope.txt", p, 1)


def test_weak_labeller_dictionary_and_gene_pattern():
    lab = WeakLabeller({"breast": "Anatomy", "mastectomy": "Procedure", "breast cancer": "Disease"})
    text = "Mutations in the BRCA1 and BRCA2 genes raise breast cancer risk; mastectomy of the breast."
    spans = [(text[s:e], t) for s, e, t in lab.spans(text)]
    assert spans == [("BRCA1", "Gene"), ("BRCA2", "Gene"), ("breast cancer", "Disease"),
                     ("mastectomy", "Procedure"), ("breast", "Anatomy")]
    # no symbol-like token before "gene": nothing; the pattern can be switched off
    assert WeakLabeller({}, gene_pattern=True).spans("the gene was found in a study") == []
    assert WeakLabeller({}, gene_pattern=False).spans("the CFTR gene") == []


def test_augment_gold_keeps_gold_adds_unannotated_types_and_relabels_symptoms():
    text = "Cough and asthma after aspirin in the lung."
    vocab = TypedVocabulary({"cough": "Symptom", "asthma": "Disease", "aspirin": "Chemical", "lung": "Anatomy",
                             "asthma after": "Anatomy"}, {}, {})
    bc5 = GoldDoc("BC5CDR:1", "BC5CDR", "1", text, [(0, 5, "Disease"), (10, 16, "Disease")])
    ncbi = GoldDoc("NCBI-disease:2", "NCBI-disease", "2", text, [(10, 16, "Disease")])
    (a, b), stats = augment_gold([bc5, ncbi], vocab)
    got = lambda d: [(d.text[s:e], t) for s, e, t in d.mentions]  # noqa: E731
    # BC5CDR annotates chemicals: an unmarked aspirin stays unmarked; the anatomy is added
    assert got(a) == [("Cough", "Symptom"), ("asthma", "Disease"), ("lung", "Anatomy")]
    # NCBI-disease does not annotate chemicals: aspirin gets the dictionary's label; gold span wins over
    # the overlapping "asthma after"; Cough is not added as a Symptom (the annotators left it out)
    assert got(b) == [("asthma", "Disease"), ("aspirin", "Chemical"), ("lung", "Anatomy")]
    assert stats == {"added_by_type": {"Anatomy": 2, "Chemical": 1}, "disease_relabelled_symptom": 1}


def test_weak_training_docs_hold_out_terms_and_skip_pubtator(tmp_path):
    w = ShardedJsonlWriter(tmp_path / "kept")
    for i in range(40):
        w.write(make_record("medquad", i, f"Doc {i}. The liver was enlarged. Fever and rash appeared. Nothing here."))
    w.write(make_record("pubtator", "p", "The liver of a test abstract."))
    w.close()
    vocab = TypedVocabulary({"liver": "Anatomy", "rash": "Symptom"}, {"fever": "Symptom"}, {})
    params = WeakParams(max_docs=10, max_sentences=100, eval_docs=10, max_eval_sentences=100)
    data = weak_training_docs(shard_paths(tmp_path / "kept"), vocab, params, seed=3, max_sentence_chars=600)
    assert len(data.train) == 10          # one "liver" sentence per training document
    assert all("Fever" not in d.text and "test abstract" not in d.text for d in data.train)
    assert data.stats["train_sentences_with_heldout_term"] == 10
    assert len(data.heldout_eval) == 10 and all(d.mentions[0][2] == "Symptom" for d in data.heldout_eval)
    train_docs = {d.pmid for d in data.train}
    assert not train_docs & {d.pmid for d in data.heldout_eval}
    again = weak_training_docs(shard_paths(tmp_path / "kept"), vocab, params, seed=3, max_sentence_chars=600)
    assert [d.doc_id for d in again.train] == [d.doc_id for d in data.train]


def test_recall_on_spans_exact_typed_span_and_overlap():
    docs = [GoldDoc("a", "heldout_terms", "a", "fever and liver", [(0, 5, "Symptom"), (10, 15, "Anatomy")])]
    res = DocResult("a", entities=[mention("fever", "Disease", 0, 5), mention("liver and", "Anatomy", 10, 19)])
    r = recall_on_spans(docs, [res])
    assert r["Symptom"] == {"spans": 1, "recall": 0.0, "span_recall": 1.0, "overlap_recall": 1.0}
    assert r["Anatomy"] == {"spans": 1, "recall": 0.0, "span_recall": 0.0, "overlap_recall": 1.0}
    assert r["all"]["spans"] == 2 and r["all"]["overlap_recall"] == 1.0


def test_entity_table_alt_types_share_and_minimum():
    t = EntityTable()
    for typ in ["Symptom"] * 6 + ["Disease"] * 3 + ["Chemical"]:
        t.add_document([mention("Cold", typ, 0, 4)])
    rows, _ = t.filtered(1, 1, alt_type_min_share=0.2)
    (row,) = rows
    assert row["type"] == "Symptom" and row["types"] == {"Chemical": 1, "Disease": 3, "Symptom": 6}
    assert row["alt_types"] == ["Disease"]          # Chemical: once, and under the share
    rows, _ = t.filtered(1, 1)                      # default share 1.0: no alt types
    assert rows[0]["alt_types"] == []


def test_review_sample_is_seeded_bounded_and_labels_give_precision(tmp_path):
    def sample(seed):
        rs = ReviewSample(ReviewParams(per_type=3, context_chars=5), seed, {"liver": "Anatomy"})
        text = "the liver and the liver and the liver and the liver"
        for i in range(4):
            rs.add("d1", text, mention("liver", "Anatomy", 4 + 14 * i, 9 + 14 * i))
        rs.add("d2", "a cold", mention("cold", "Symptom", 2, 6))
        return rs.rows()
    rows = sample(7)
    assert [r["type"] for r in rows] == ["Anatomy"] * 3 + ["Symptom"]
    assert rows == sample(7) and rows[0]["in_dictionary"] == "Anatomy" and rows[-1]["in_dictionary"] is None
    assert "[[liver]]" in rows[0]["context"] and rows[0]["label"] is None
    labels = tmp_path / "labels.jsonl"
    lines = [{"key": rows[0]["key"], "label": "correct"}, {"key": rows[1]["key"], "label": "correct"},
             {"key": rows[2]["key"], "label": "not_entity"}, {"key": rows[3]["key"], "label": None},
             {"key": "gone:1:2", "label": "correct"}]
    labels.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{bad\n")
    prec = precision_by_type(rows, labels)
    a = prec["by_type"]["Anatomy"]
    assert (a["reviewed"], a["correct"], a["not_entity"]) == (3, 2, 1) and a["precision"] == pytest.approx(0.6667)
    assert a["ci95"][0] < 0.6667 < a["ci95"][1] and "Symptom" not in prec["by_type"]
    assert prec["stale_labels"] == 1 and prec["bad_lines"] == 1
    labels.write_text(json.dumps({"key": rows[0]["key"], "label": "maybe"}) + "\n")
    with pytest.raises(ValueError, match="maybe"):
        precision_by_type(rows, labels)
    with pytest.raises(FileNotFoundError, match="review_labels"):
        precision_by_type(rows, tmp_path / "missing.jsonl")
