"""Bad bytes in the files the eval harness reads: benchmark files (JSONL lines, JSON read whole) and
predictions files. A bad line is quarantined (benchmarks) or counted by reason (predictions) and the
rest is read; a file that cannot be read at all stops with an error that names it. Lines and files
are read under caps, so an oversized one never sits in memory whole.

Run: pytest -q tests/eval/test_bad_input_files.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.benchmarks import REGISTRY, BenchmarkError, byo_spec, iter_jsonl_lines, load
from eval.models import AdapterError, PredictionsModel

ROW = {"id": "q1", "question": "Which drug?", "options": {"A": "aspirin", "B": "insulin"}, "answer": "A"}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_invalid_utf8_line_in_a_benchmark_is_quarantined(tmp_path: Path):
    path = write_lines(tmp_path / "bench.jsonl", [
        json.dumps(ROW).encode(),
        json.dumps({**ROW, "id": "q2"}).encode().replace(b"Which", b"Wh\xff\xfeich"),   # not UTF-8
        json.dumps({**ROW, "id": "q3"}).encode(),
    ])
    res = load(byo_spec("bench", str(path), "mcq"), tmp_path)
    assert [i.id for i in res.items] == ["q1", "q3"]
    assert [(q["reason"], q["locator"]) for q in res.quarantined] == [("invalid_utf8", "bench.jsonl:2")]
    assert "UnicodeDecodeError" in res.quarantined[0]["detail"]
    assert res.read == 3 == len(res.items) + len(res.quarantined)


def test_bundled_jsonl_benchmark_with_invalid_utf8(tmp_path: Path):
    """The loader of MedQA / MedMCQA / MMLU files, on a copy with one damaged line."""
    d = tmp_path / "benchmarks" / "medqa"
    d.mkdir(parents=True)
    good = {"id": "m1", "question": "Q?\nAnswer Choices: (A) x (B) y", "label": ["A"]}
    write_lines(d / "medqa_input.jsonl", [json.dumps(good).encode(), b'{"id": "m2", "question": "\xc3\x28"}'])
    res = load(REGISTRY["medqa"], tmp_path)
    assert [i.id for i in res.items] == ["m1"]
    assert [(q["reason"], q["locator"]) for q in res.quarantined] == [("invalid_utf8", "medqa_input.jsonl:2")]


def test_benchmark_line_over_the_cap_is_skipped_not_read_whole(tmp_path: Path):
    long = json.dumps({**ROW, "id": "q2", "question": "w" * 5000}).encode()
    path = write_lines(tmp_path / "b.jsonl", [json.dumps(ROW).encode(), long, b"", json.dumps(ROW).encode()])
    got = [(n, obj["id"] if obj else None, err.reason if err else None)
           for n, obj, err in iter_jsonl_lines(path, max_line_bytes=1000)]
    assert got == [(1, "q1", None), (2, None, "line_too_large"), (4, "q1", None)]


@pytest.mark.parametrize("content, says", [(b'{"1": \xff}', "not UTF-8"), (b'{"1": {"QUESTION"', "not JSON")])
def test_pubmedqa_file_that_cannot_be_read_names_it(tmp_path: Path, content: bytes, says: str):
    d = tmp_path / "benchmarks" / "pubmedqa"
    d.mkdir(parents=True)
    (d / "ori_pqal.json").write_bytes(content)
    (d / "test_ground_truth.json").write_text('{"1": "yes"}')
    with pytest.raises(BenchmarkError, match=f"ori_pqal.json is {says}"):
        load(REGISTRY["pubmedqa"], tmp_path)


def test_vqa_rad_testset_with_invalid_utf8_names_it(tmp_path: Path):
    d = tmp_path / "benchmarks" / "vqa_rad"
    d.mkdir(parents=True)
    (d / "testset.json").write_bytes(b'[{"qid": 1, "question": "Is \xe9 there?"}]')   # Latin-1, not UTF-8
    with pytest.raises(BenchmarkError, match="testset.json is not UTF-8"):
        load(REGISTRY["vqa_rad"], tmp_path)


def pred(bid: str, output: str) -> bytes:
    return json.dumps({"benchmark": "medqa", "id": bid, "output": output}).encode()


def test_predictions_with_invalid_utf8_are_counted_by_reason(tmp_path: Path):
    path = write_lines(tmp_path / "preds.jsonl", [
        pred("a", "Answer: A"),
        pred("b", "Answer: B").replace(b"Answer", b"Ans\x80wer"),   # a lone continuation byte
        b"\xef\xbb",                                                 # half a BOM
        pred("c", "Answer: C"),
    ])
    model = PredictionsModel(path)
    assert sorted(model.rows) == [("medqa", "a"), ("medqa", "c")]
    assert model.stats == {"bad_lines": 2, "duplicate_rows": 0, "bad_line_reasons": {"invalid_utf8": 2}}


def test_predictions_line_and_file_caps(tmp_path: Path):
    path = write_lines(tmp_path / "preds.jsonl", [pred("a", "Answer: A"), pred("b", "x" * 5000), b"[1]",
                                                  pred("c", "Answer: C")])
    model = PredictionsModel(path, max_line_bytes=1000)
    assert sorted(model.rows) == [("medqa", "a"), ("medqa", "c")]
    assert model.stats["bad_line_reasons"] == {"line_too_large": 1, "missing_field": 1}
    with pytest.raises(AdapterError, match=f"predictions file too large: {path}"):
        PredictionsModel(path, max_file_bytes=1000)


def test_clean_predictions_keep_their_stats(tmp_path: Path):
    model = PredictionsModel(write_lines(tmp_path / "p.jsonl", [pred("a", "A"), pred("a", "B")]))
    assert model.stats == {"bad_lines": 0, "duplicate_rows": 1}
    assert model.rows[("medqa", "a")]["output"] == "B"
