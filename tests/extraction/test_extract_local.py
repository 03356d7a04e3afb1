"""The local extractor: gold reading, BIO encoding, and a CRF trained on a small slice of the real
PubTator training data that beats a dictionary baseline on a slice of the (never trained on) test split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tasks.extraction.common import DocResult, find_occurrences, mention, tokenize
from tasks.extraction.gold import load_gold, read_pubtator_file
from tasks.extraction.local import CRFExtractor, CRFParams, bio_labels, bio_spans, sentence_features
from tasks.extraction.scoring import score

TRAIN = ["CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt", "NCBItrainset_corpus.txt"]
TEST = ["CDR_TestSet.PubTator.txt", "NCBItestset_corpus.txt"]


@pytest.fixture(scope="module")
def pubtator(data_root) -> Path:
    return data_root / "corpus" / "pubtator"


def test_gold_types_offsets_dedup_and_test_exclusion(pubtator, tmp_path):
    ncbi, skipped = read_pubtator_file(pubtator / "NCBItestset_corpus.txt")
    assert len(ncbi) == 100 and all(d.corpus == "NCBI-disease" for d in ncbi)
    assert {t for d in ncbi for _, _, t in d.mentions} == {"Disease"}     # SpecificDisease, Modifier, ...
    for d in ncbi[:20]:
        assert d.annotated_types == ("Disease",)
    # CDR_TrainingSet here already holds the development abstracts: each is read once
    docs, stats = load_gold(pubtator, ["CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt"])
    assert stats["duplicates"] == 500 and len(docs) == len({d.doc_id for d in docs})
    # a train document whose PMID is in a test file is dropped
    fake = tmp_path / "train.txt"
    fake.write_text("111|t|Aspirin test.\n111|a|Fever.\n111\t0\t7\tAspirin\tChemical\tD1\n\n"
                    "222|t|Other.\n222|a|Text.\n222\t0\t5\tOther\tBogusType\tD2\n\n"
                    "333|t|Bad offsets.\n333|a|x\n333\t0\t3\tXYZ\tDisease\tD3\n")
    docs, stats = load_gold(tmp_path, ["train.txt"], exclude_pmids={"111"})
    assert [d.pmid for d in docs] == ["222", "333"] and stats["excluded_test_pmids"] == 1
    assert stats["skipped"] == {"offset_mismatch": 1, "type_BogusType": 1}
    with pytest.raises(FileNotFoundError):
        read_pubtator_file(tmp_path / "missing.txt")


def test_bio_roundtrip_and_features():
    text = "Adriamycin-induced cardiomyopathy in rats"
    toks = tokenize(text)
    gold = [(0, 10, "Chemical"), (19, 33, "Disease")]
    labels = bio_labels(toks, gold)
    assert labels == ["B-Chemical", "O", "O", "B-Disease", "O", "O"]
    assert bio_spans(toks, labels) == gold
    # a stray I- starts a span; a type change inside a run splits it
    assert bio_spans(toks, ["I-Chemical", "I-Chemical", "I-Disease", "I-Disease", "O", "B-Disease"]) == [
        (0, 11, "Chemical"), (11, 33, "Disease"), (37, 41, "Disease")]
    feats = sentence_features([t for t, _, _ in toks])
    assert "w=adriamycin" in feats[0] and "BOS" in feats[0] and "EOS" in feats[-1]
    assert "sh=Xx" in feats[0] and "s3=cin" in feats[0] and "+1w=-" in feats[0]


def dictionary_baseline(train, test) -> list[DocResult]:
    """Trivial baseline: every training mention string, matched case-insensitively as whole words."""
    lex: dict[str, Counter] = {}
    for d in train:
        for s, e, t in d.mentions:
            lex.setdefault(d.text[s:e].lower(), Counter())[t] += 1
    out = []
    for d in test:
        res, low = DocResult(d.doc_id), d.text.lower()
        for k, c in lex.items():
            res.entities += [mention(d.text[a:b], c.most_common(1)[0][0], a, b) for a, b in find_occurrences(low, k)]
        out.append(res)
    return out


def test_crf_trains_deterministically_and_beats_dictionary_baseline(pubtator, tmp_path):
    train, _ = load_gold(pubtator, TRAIN, max_docs=60)
    test, _ = load_gold(pubtator, TEST, max_docs=40)
    params = CRFParams(max_iterations=25)
    crf = CRFExtractor(tmp_path / "a.crfsuite", params)
    stats = crf.train(train)
    assert stats["docs"] == 60 and stats["sentences"] > 300 and stats["active_features"] > 0
    assert set(stats["labels"]) == {"O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"}
    results = crf.extract([(d.doc_id, d.text) for d in test])
    crf_score = score(test, results)
    base = score(test, dictionary_baseline(train, test))
    assert crf_score["micro"]["f1"] > base["micro"]["f1"] + 0.05, (crf_score["micro"], base["micro"])
    assert crf_score["per_type"]["Disease"]["f1"] > 0.4 and crf_score["per_type"]["Chemical"]["f1"] > 0.4
    for d, r in zip(test, results):                       # the mention contract
        for m in r.entities:
            assert d.text[m["start"]:m["end"]] == m["text"] and m["type"] in ("Chemical", "Disease")
    # same data, same order -> the same model file byte for byte; a loaded model tags the same
    again = CRFExtractor(tmp_path / "b.crfsuite", params)
    again.train(train)
    assert (tmp_path / "a.crfsuite").read_bytes() == (tmp_path / "b.crfsuite").read_bytes()
    loaded = CRFExtractor.load(tmp_path / "a.crfsuite", params=params)
    assert [r.entities for r in loaded.extract([(d.doc_id, d.text) for d in test[:5]])] == \
        [r.entities for r in results[:5]]


def test_crf_extract_handles_empty_text_and_rejects_overlong_spans(pubtator, tmp_path):
    train, _ = load_gold(pubtator, TRAIN[:1], max_docs=20)
    crf = CRFExtractor(tmp_path / "m.crfsuite", CRFParams(max_iterations=10), max_entity_chars=5)
    crf.train(train)
    empty, = crf.extract([("img", "")])
    assert empty.entities == [] and empty.sentences == 0 and empty.ok
    res, = crf.extract([("d", "Naloxone reverses the antihypertensive effect of clonidine in hypertensive rats.")])
    # every predicted span is either a mention (<= 5 chars) or a too_long rejection: none is lost
    spans, _ = crf.predict_spans("Naloxone reverses the antihypertensive effect of clonidine in hypertensive rats.")
    assert len(res.entities) + len(res.rejected) == len(spans) > 0
    assert all(r["reason"] == "too_long" for r in res.rejected)
    with pytest.raises(ValueError):
        crf.train([])
