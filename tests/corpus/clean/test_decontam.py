"""Decontamination against the real benchmark files."""

import hashlib
import json
import os

import pytest
from PIL import Image

from tasks.corpus.clean.decontam import BenchmarkIndex, TokenHasher, tokenize


def test_index_covers_every_benchmark(bench_index):
    items = bench_index.stats["text_items"]
    assert items == {"medmcqa": 4183, "medqa": 1273, "mmlu_medical": 1089, "pubmedqa": 500,
                     "vqa_rad": 450}
    assert bench_index.stats["malformed_total"] == 0
    assert bench_index.stats["images_indexed"] > 200
    assert bench_index.stats["ngrams_indexed"] > 300_000


def test_tokenize_and_hash_stability():
    assert tokenize("A 67-year-old MAN, (with) pain!") == ["a", "67", "year", "old", "man", "with", "pain"]
    h = TokenHasher()
    toks = tokenize("one two three four five")
    assert list(h.ngram_hashes(toks, 3)) == list(TokenHasher().ngram_hashes(toks, 3))
    assert len(h.ngram_hashes(toks, 6)) == 0


def test_medqa_question_embedded_in_text_is_caught(bench_index, medqa_rows):
    row = medqa_rows[3]
    stem = row["question"].split("Answer Choices")[0]
    text = f"Board review notes.\n\n{stem.upper()}  Discuss the mechanism."
    hits = bench_index.check_text(text)
    assert ("medqa", row["id"]) in {(h.benchmark, h.item) for h in hits}
    hit = next(h for h in hits if h.item == row["id"])
    assert hit.kind == "text" and len(hit.evidence.split()) == 13
    assert hit.evidence in " ".join(tokenize(stem))


def test_pubmedqa_test_context_is_caught(bench_index, benchmarks_dir):
    test_ids = sorted(json.loads((benchmarks_dir / "pubmedqa" / "test_ground_truth.json").read_text()))
    pqal = json.loads((benchmarks_dir / "pubmedqa" / "ori_pqal.json").read_text())
    context = pqal[test_ids[0]]["CONTEXTS"][0]
    hits = bench_index.check_text("Abstract: " + context)
    assert ("pubmedqa", test_ids[0]) in {(h.benchmark, h.item) for h in hits}
    # A labeled-but-not-test PubMedQA abstract is not a test item.
    non_test = next(k for k in sorted(pqal) if k not in set(test_ids))
    hits = bench_index.check_text(pqal[non_test]["CONTEXTS"][0])
    assert not [h for h in hits if h.benchmark == "pubmedqa" and h.item == non_test]


def test_mmlu_items_have_line_ids(bench_index, benchmarks_dir):
    first = json.loads((benchmarks_dir / "mmlu_medical" / "mmlu_medical_input.jsonl").open().readline())
    hits = bench_index.check_text(first["question"])
    assert any(h.benchmark == "mmlu_medical" and h.item == f"{first['subject']}:1" for h in hits)


def test_clean_medical_text_is_not_flagged(bench_index, medquad_answers):
    flagged = [t for t in medquad_answers[:100] if bench_index.check_text(t)]
    assert flagged == []


def test_boilerplate_stem_alone_is_not_flagged(bench_index):
    text = ("Which of the following is the most appropriate next step in management? "
            "Answer Choices: (A) observe")
    assert bench_index.check_text(text) == []


def test_vqa_rad_test_image_sha256_and_phash(bench_index, vqa_test_image, tmp_path):
    sha = hashlib.sha256(vqa_test_image.read_bytes()).hexdigest()
    hits = bench_index.check_image(sha)
    assert [(h.benchmark, h.item, h.kind) for h in hits] == [("vqa_rad", vqa_test_image.name, "image_sha256")]
    # A re-encoded, downscaled copy has another sha256 but the same perceptual hash.
    copy = tmp_path / "copy.png"
    with Image.open(vqa_test_image) as im:
        im.convert("L").resize((im.width // 2, im.height // 2)).save(copy)
    hits = bench_index.check_image(hashlib.sha256(copy.read_bytes()).hexdigest(), copy)
    assert hits and hits[0].kind == "image_phash" and hits[0].item == vqa_test_image.name
    # An unrelated image is not flagged.
    other = tmp_path / "noise.png"
    Image.effect_noise((256, 256), 64).save(other)
    assert bench_index.check_image("0" * 64, other) == []


def test_malformed_benchmark_lines_are_counted(benchmarks_dir, tmp_path, medqa_rows):
    root = tmp_path / "benchmarks"
    for name in ("pubmedqa", "vqa_rad"):  # big/binary parts: link, never copy
        root.mkdir(exist_ok=True)
        os.symlink(benchmarks_dir / name, root / name)
    (root / "medqa").mkdir()
    lines = [json.dumps(r) for r in medqa_rows[:5]]
    lines += ['{"id": "broken", "question": ', '{"id": "x"}', "[1, 2]", ""]
    data = "\n".join(lines).encode("utf-8") + b'\n{"id": "\xff\xfe not utf8"}\n'
    (root / "medqa" / "medqa_input.jsonl").write_bytes(data)
    for name, fname in (("medmcqa", "medmcqa_input.jsonl"), ("mmlu_medical", "mmlu_medical_input.jsonl")):
        (root / name).mkdir()
        (root / name / fname).write_text('{"id": "a", "question": "q"}\nnot json\n')
    idx = BenchmarkIndex.build(root)
    assert idx.stats["malformed"] == {"medmcqa": 1, "medqa": 4, "mmlu_medical": 1}
    assert idx.stats["text_items"]["medqa"] == 5
    assert idx.check_text(medqa_rows[0]["question"])


def test_missing_benchmark_file_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError):
        BenchmarkIndex.build(tmp_path)
