"""Fixtures for the clean-stage tests: the real benchmark index (built once per session) and a
few real texts to build records from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.corpus.clean.decontam import BenchmarkIndex


@pytest.fixture(scope="session")
def benchmarks_dir(data_root) -> Path:
    return data_root / "benchmarks"


@pytest.fixture(scope="session")
def bench_index(benchmarks_dir) -> BenchmarkIndex:
    return BenchmarkIndex.build(benchmarks_dir)


@pytest.fixture(scope="session")
def medqa_rows(benchmarks_dir) -> list[dict]:
    path = benchmarks_dir / "medqa" / "medqa_input.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:20]]


@pytest.fixture(scope="session")
def vqa_test_image(benchmarks_dir) -> Path:
    rows = json.loads((benchmarks_dir / "vqa_rad" / "testset.json").read_text(encoding="utf-8"))
    return benchmarks_dir / "vqa_rad" / "images" / rows[0]["image_name"]


@pytest.fixture(scope="session")
def medquad_answers(data_root) -> list[str]:
    """Real MedQuAD answers (a few hundred) as clean, non-benchmark medical text."""
    from defusedxml import ElementTree

    out = []
    for folder in sorted((data_root / "corpus" / "medquad").glob("*_QA"))[:4]:
        for f in sorted(folder.glob("*.xml"))[:40]:
            for a in ElementTree.parse(f).getroot().iter("Answer"):
                if a.text and len(a.text.strip()) > 400:
                    out.append(a.text.strip())
    assert len(out) > 100
    return out


@pytest.fixture(scope="session")
def ten_mb_line() -> str:
    """~10 MB on one line of pseudo-random words: nothing repeats for the n-gram rules to catch,
    so every step of the chain runs to the end on it."""
    import random

    rng = random.Random(0)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 10)))
             for _ in range(5000)]
    return " ".join(rng.choices(vocab, k=10_000_000 // 7))
