import time
import tracemalloc

import pytest

from tasks.corpus.clean.chunking import chunk_record, chunk_text


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_short_text_unchanged():
    assert chunk_text("a b c", 5, 1) == ["a b c"]
    assert chunk_text("", 5, 1) == [""]
    assert chunk_text(_words(5), 5, 1) == [_words(5)]


def test_windows_and_overlap():
    chunks = chunk_text(_words(25), 10, 3)
    assert [c.split()[0] for c in chunks] == ["w0", "w7", "w14", "w21"]
    assert all(len(c.split()) <= 10 for c in chunks)
    assert chunks[-1].split()[-1] == "w24"
    for a, b in zip(chunks, chunks[1:]):  # consecutive chunks share exactly `overlap` words
        assert a.split()[-3:] == b.split()[:3]


def test_no_overlap_and_exact_fit():
    assert chunk_text(_words(20), 10, 0) == [_words(20)[: len(_words(10))], " ".join(f"w{i}" for i in range(10, 20))]


def test_paragraph_breaks_survive_inside_chunks():
    text = "alpha beta\n\ngamma delta epsilon\nzeta eta theta"
    chunks = chunk_text(text, 5, 1)
    assert chunks[0] == "alpha beta\n\ngamma delta epsilon"


def test_invalid_params():
    with pytest.raises(ValueError):
        chunk_text("a", 0, 0)
    with pytest.raises(ValueError):
        chunk_text("a", 5, 5)


def test_chunk_record_ids_and_meta():
    rec = {"id": "src-abc", "source": "src", "text": _words(25), "images": [], "meta": {"license": "x"}}
    out = chunk_record(rec, 10, 3)
    assert [r["id"] for r in out] == [f"src-abc-c{i:04d}" for i in range(4)]
    assert all(r["meta"]["parent_id"] == "src-abc" and r["meta"]["license"] == "x" for r in out)
    assert [r["meta"]["chunk_index"] for r in out] == [0, 1, 2, 3]
    assert {r["meta"]["chunk_count"] for r in out} == {4}
    assert rec["meta"] == {"license": "x"}  # parent not mutated


def test_short_and_image_records_pass_through():
    short = {"id": "a", "source": "s", "text": "a b", "images": [], "meta": {}}
    assert chunk_record(short, 10, 3) == [short]
    img = {"id": "b", "source": "s", "text": _words(50), "images": [{"path": "p", "sha256": "x"}], "meta": {}}
    assert chunk_record(img, 10, 3) == [img]


def test_unicode_words():
    text = "糖尿病 は 慢性 疾患 です 。 diabète sucré"
    assert chunk_text(text, 4, 1) == ["糖尿病 は 慢性 疾患", "疾患 です 。 diabète", "diabète sucré"]


def test_ten_megabyte_single_line_time_and_memory():
    text = "word " * 2_000_000  # 10 MB, one line, 2M words
    tracemalloc.start()
    t0 = time.perf_counter()
    chunks = chunk_text(text, 512, 64)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 10
    assert len(chunks) == -(-(2_000_000 - 64) // 448)
    # The chunks themselves are ~11.4 MB; no per-word structures on top.
    assert peak < 3 * len(text)
