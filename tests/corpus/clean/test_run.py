"""The whole clean chain on in-memory records built from real text."""

import hashlib
import json
from pathlib import Path

import pytest

from tasks.common.config import ConfigError, load_stage_config
from tasks.common.io import StageSink
from tasks.common.records import make_record, rejection
from tasks.corpus.clean.run import CleanConfig, clean_records


def _text_rec(text: str, key, source="medquad") -> dict:
    return make_record(source, key, text, meta={"license": "test"})


def _image_rec(path: Path, question: str, key) -> dict:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return make_record("vqa_rad", key, question, images=[{"path": str(path), "sha256": sha}])


@pytest.fixture
def cfg(data_root) -> CleanConfig:
    c = CleanConfig(data_root=str(data_root))
    c.chunk.max_words, c.chunk.overlap_words = 120, 20
    return c


@pytest.fixture
def corpus(medquad_answers, medqa_rows, vqa_test_image, tmp_path) -> list:
    good = medquad_answers[:6]
    long_doc = " ".join(medquad_answers[6:12])
    words = good[1].split()
    near = " ".join(words[:-1] + ["today."])
    medqa = medqa_rows[2]
    contaminated = "Case discussion. " + medqa["question"].split("Answer Choices")[0]
    # An unrelated image (not a benchmark one) must survive.
    from PIL import Image
    own = tmp_path / "own.png"
    Image.effect_noise((64, 64), 40).save(own)
    pairs = [
        (_text_rec(good[0], 0), None),
        (_text_rec("Too short to train on.", 1), None),
        (_text_rec(good[0].upper(), 2), None),                          # exact dup of 0
        (_text_rec(good[1], 3), None),
        (_text_rec(near, 4), None),                                    # near dup of 3
        (_text_rec(contaminated, 5), None),                            # MedQA leak
        (_image_rec(vqa_test_image, "Question: Is this a CT? Answer: yes", 6), None),
        (_image_rec(own, "Question: Is there a mass? Answer: no", 7), None),
        (_text_rec(good[2] + " Reach the clinic at (301) 555-1234 or help@clinic.example.org.", 8), None),
        (_text_rec(long_doc, 9), None),
        (None, rejection("bad_json", "Expecting value at col 1", locator="data/collect/kept/part-00000.jsonl:7")),
        (_text_rec("XXXX XXXX and lateral chest examination was obtained. Normal heart size.", 10,
                   source="iu_xray"), None),
    ]
    return pairs


def _run(pairs, cfg, out_dir, index):
    sink = StageSink(out_dir)
    extra, report = clean_records(pairs, sink, cfg, index=index)
    summary = sink.close(**extra)
    return summary, report


def _read(dir_: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(dir_.glob("part-*.jsonl")) for line in p.open()]


def test_chain_reasons_accounting_and_report(corpus, cfg, bench_index, tmp_path):
    cfg.min_chars_by_source = {"iu_xray": 50}
    summary, report = _run(corpus, cfg, tmp_path / "out", bench_index)
    assert summary["read"] == len(corpus) == summary["kept"] + summary["rejected"]
    reasons = {r.get("id") or r["locator"]: r["reason"] for r in _read(tmp_path / "out" / "rejected")}
    ids = [rec["id"] if rec else None for rec, _ in corpus]
    assert reasons[ids[1]] == "too_short"
    assert reasons[ids[2]] == "exact_duplicate"
    assert reasons[ids[4]] == "near_duplicate"
    assert reasons[ids[5]] == "decontaminated"
    assert reasons[ids[6]] == "decontaminated"
    assert reasons["data/collect/kept/part-00000.jsonl:7"] == "bad_json"
    assert summary["rejected_by_reason"] == {"bad_json": 1, "decontaminated": 2, "exact_duplicate": 1,
                                             "near_duplicate": 1, "too_short": 1}
    rejected = {r["id"]: r for r in _read(tmp_path / "out" / "rejected") if r.get("id")}
    assert ids[0] in rejected[ids[2]]["detail"] and ids[3] in rejected[ids[4]]["detail"]

    kept = _read(tmp_path / "out" / "kept")
    kept_parents = {r["meta"].get("parent_id", r["id"]) for r in kept}
    assert kept_parents == {ids[i] for i in (0, 3, 7, 8, 9, 11)}
    chunks = [r for r in kept if r["meta"].get("parent_id") == ids[9]]
    assert len(chunks) > 1
    assert summary["chunks_written"] == sum(1 for r in kept if "parent_id" in r["meta"])
    assert chunks[0]["id"] == f"{ids[9]}-c0000"
    phi_rec = next(r for r in kept if r["meta"].get("parent_id", r["id"]) == ids[8])
    phi_text = " ".join(r["text"] for r in kept if r["meta"].get("parent_id", r["id"]) == ids[8])
    assert "[PHONE]" in phi_text and "[EMAIL]" in phi_text and "555-1234" not in phi_text
    assert phi_rec["meta"]["phi_scrubbed"] == {"email": 1, "phone": 1}
    assert (summary["phi_phone"], summary["phi_email"], summary["records_with_phi"]) == (1, 1, 1)
    iu = next(r for r in kept if r["id"] == ids[11])
    assert iu["text"].startswith("[REDACTED] and lateral")

    kinds = {(r["record_id"], r["benchmark"], r["kind"]) for r in report}
    assert (ids[5], "medqa", "text") in kinds and (ids[6], "vqa_rad", "image_sha256") in kinds
    row = next(r for r in report if r["record_id"] == ids[5])
    assert set(row) == {"record_id", "source", "benchmark", "benchmark_item", "kind", "evidence"}
    assert summary["decontam_records_by_benchmark"] == {"medqa": 1, "vqa_rad": 1}


def test_image_action_report_keeps_image_records(corpus, cfg, bench_index, tmp_path):
    cfg.decontam.image_action = "report"
    summary, report = _run(corpus, cfg, tmp_path / "out", bench_index)
    assert summary["rejected_by_reason"]["decontaminated"] == 1  # the text leak only
    assert summary["decontam_image_hits_kept"] == 1
    assert any(r["kind"] == "image_sha256" for r in report)


def test_deterministic_byte_identical_outputs(corpus, cfg, bench_index, tmp_path):
    outs = []
    for run in ("a", "b"):
        _run(corpus, cfg, tmp_path / run, bench_index)
        outs.append({p.relative_to(tmp_path / run): p.read_bytes()
                     for p in sorted((tmp_path / run).rglob("*")) if p.is_file()})
    assert outs[0] == outs[1]


def test_ten_megabyte_record_goes_through(cfg, bench_index, tmp_path, ten_mb_line):
    # correctness only: its speed is bench/bench_stages.py's (a wall-clock limit fails on a loaded machine)
    summary, _ = _run([(_text_rec(ten_mb_line, "big"), None)], cfg, tmp_path / "out", bench_index)
    assert summary["kept"] == 1 and summary["chunks_written"] > 10_000


def test_config_from_params_yaml():
    cfg, profile = load_stage_config("clean", CleanConfig, ["minhash.threshold=0.7", "chunk.max_words=256"])
    assert cfg.minhash.threshold == 0.7 and cfg.chunk.max_words == 256
    assert cfg.minhash.num_perm == 128 and cfg.decontam.ngram == 13
    assert cfg.data_root and isinstance(cfg.seed, int)
    assert cfg.benchmarks_path().name == "benchmarks"
    with pytest.raises(ConfigError):
        load_stage_config("clean", CleanConfig, ["minhash.thresold=0.7"])
    with pytest.raises(ConfigError):
        load_stage_config("clean", CleanConfig, ["decontam.image_action=drop"])


def test_attribute_only_records_are_kept_and_deduplicated_by_content(cfg, bench_index, tmp_path):
    """DICOM headers without decodable pixels carry no text: judged by their attributes."""
    a = make_record("dicom", "a.dcm", "", meta={"attributes": {"Modality": "CT", "Rows": 128}})
    b = make_record("dicom", "b.dcm", "", meta={"attributes": {"Modality": "MR", "Rows": 64}})
    a_again = make_record("dicom", "c.dcm", "", meta={"attributes": {"Modality": "CT", "Rows": 128}})
    sink = StageSink(tmp_path)
    clean_records([(a, None), (b, None), (a_again, None)], sink, cfg, index=bench_index)
    summary = sink.close()
    assert summary["kept"] == 2 and summary["rejected_by_reason"] == {"exact_duplicate": 1}
