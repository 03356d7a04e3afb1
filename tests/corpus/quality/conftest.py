"""Real data for the quality tests: MedQuAD answers and VQA-RAD image records, shaped as the clean
stage's output (kept shards + rejected entries)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from local_server import real_local_server

from tasks.common.io import ShardedJsonlWriter
from tasks.common.records import make_record, rejection

DATA = Path(os.environ.get("MEDX_DATA_ROOT", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "llm_server: tests that start the real local llama.cpp server")


def _medquad_answers() -> list[str]:
    from defusedxml import ElementTree as ET

    out = []
    for folder in sorted((DATA / "corpus" / "medquad").glob("*_QA")):
        for f in sorted(folder.glob("*.xml"))[:40]:
            for a in ET.parse(f).getroot().iter("Answer"):
                text = re.sub(r"[ \t]+", " ", a.text or "").strip()
                if text:
                    out.append(text)
    return out


@pytest.fixture(scope="session")
def medquad_all() -> list[str]:
    texts = _medquad_answers()
    assert len(texts) > 1500, f"MedQuAD not found under {DATA}"
    return texts


@pytest.fixture(scope="session")
def medquad(medquad_all) -> list[str]:
    """Answers long enough to pass the clean stage's min_chars (200)."""
    return [t for t in medquad_all if len(t) >= 200]


@pytest.fixture(scope="session")
def clean_dir(tmp_path_factory, medquad_all) -> Path:
    """A clean-stage output: kept = 700 long MedQuAD answers + 5 VQA-RAD image records (short
    text); rejected = real repetitive answers (a rule rejection: seed negatives), real too-short
    answers and near-duplicates (both excluded from the negatives by default)."""
    root = tmp_path_factory.mktemp("clean")
    long = [t for t in medquad_all if len(t) >= 200][:700]
    short = [t for t in medquad_all if 20 <= len(t) < 200][:150]
    kept = ShardedJsonlWriter(root / "kept", shard_size=300)
    vqa = json.loads((DATA / "benchmarks" / "vqa_rad" / "trainset.json").read_text())[:5]
    for i, text in enumerate(long):
        kept.write(make_record("medquad", i, text, meta={"license": "CC BY 4.0"}))
        if i % 150 == 0 and vqa:
            q = vqa.pop(0)
            img = DATA / "benchmarks" / "vqa_rad" / "images" / q["image_name"]
            sha = hashlib.sha256(img.read_bytes()).hexdigest()
            kept.write(make_record("vqa_rad", q["qid"], f"Question: {q['question']} Answer: {q['answer']}",
                                   images=[{"path": f"images/{sha[:2]}/{sha}.jpg", "sha256": sha}]))
    kept.close()
    rejected = ShardedJsonlWriter(root / "rejected")
    for i, text in enumerate(short):
        rejected.write(rejection("too_short", "len < 200", record=make_record("medquad", f"s{i}", text)))
    for i, text in enumerate(long[:20]):
        rejected.write(rejection("near_duplicate", "jaccard 0.9",
                                 record=make_record("medquad", f"d{i}", text)))
    # real answers that repeat themselves heavily: what clean's dup_ngram_ratio rule rejects
    from tasks.corpus.quality.signals import signals
    repetitive = [t for t in medquad_all[700:] if len(t) >= 200 and signals(t)["dup_5gram_frac"] > 0.6]
    for i, text in enumerate(repetitive[:40]):
        rejected.write(rejection("dup_ngram_ratio", "dup 5-grams > 0.6",
                                 record=make_record("medquad", f"r{i}", text)))
    rejected.close()
    return root


@pytest.fixture(scope="session")
def local_llm_quality(tmp_path_factory):
    """The real llama.cpp + SmolLM2 endpoint for the LLMVerifier tests (own cache dir)."""
    with real_local_server(tmp_path_factory.mktemp("llmq"), max_tokens=24) as live:
        yield live
