"""AMCS, paper Eq. (1) (tasks/mapping/coverage.py), on hand-made sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.mapping.coverage import amcs, coverage_row, max_cosine, render_table
from tasks.mapping.vocab import benchmark_entities, load_doid, norm_term


def unit(*vs):
    a = np.asarray(vs, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_amcs_known_answers():
    x, y, z = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    ref = unit(x, y)
    assert amcs(unit(x, y), ref) == pytest.approx(1.0)        # A subset of Ref: forward 1
    assert amcs(unit(x, z), ref) == pytest.approx(0.5)        # (1 + 0) / 2
    assert amcs(unit(x), unit(x, y, z)) == pytest.approx(1.0)
    assert amcs(unit(x, y, z), unit(x)) == pytest.approx(1 / 3)   # asymmetric: backward
    d = [1, 1, 0]                                             # cos(d, x) = 1/sqrt(2)
    assert amcs(unit(d), ref) == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert amcs(unit(d, z), ref) == pytest.approx((1 / np.sqrt(2) + 0) / 2, abs=1e-6)
    assert amcs(np.zeros((0, 3), np.float32), ref) == 0.0
    big = np.random.default_rng(0).normal(size=(5000, 8)).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    np.testing.assert_allclose(max_cosine(big, big[:300], block=512), (big @ big[:300].T).max(1), rtol=1e-5)


def test_coverage_row_and_table():
    row = coverage_row("toy", ["a", "b"], unit([1, 0], [0, 1]), ["a"], unit([1, 0]), 0.9, 10)
    assert row["forward"] == pytest.approx(0.5) and row["backward"] == pytest.approx(1.0)
    assert row["forward_exact"] == 0.5 and row["backward_exact"] == 1.0 and row["full_size"] == 10
    md = render_table([row], 0.9, "enc")
    assert "| toy | 2 (10) | 0.50 | 1.00 |" in md


def test_vocab_loaders_and_independent_benchmark_extraction(tmp_path):
    obo = tmp_path / "t.obo"
    obo.write_text('[Term]\nid: DOID:1\nname: Lung Cancer\nsynonym: "lung  neoplasm" EXACT []\n\n'
                   '[Term]\nid: DOID:2\nname: old thing\nis_obsolete: true\n\n'
                   '[Typedef]\nid: part_of\nname: part of\n', encoding="utf-8")
    assert load_doid(obo) == ["lung cancer", "lung neoplasm"]
    assert norm_term("  Heart   FAILURE ") == "heart failure"
    qs = ["Which drug treats lung cancer?", "Smaller lungs in COPD"]
    assert benchmark_entities(qs, ["lung cancer", "lung", "copd", "all"], min_chars=4) == ["copd", "lung cancer"]


def test_amcs_with_the_real_encoder():
    from tasks.tree.embed import embed
    a = ["breast cancer", "lung cancer"]
    ref = ["breast cancer", "lung cancer", "cisplatin"]
    ea, er = embed(a), embed(ref)
    assert amcs(ea, er) == pytest.approx(1.0, abs=1e-5)       # forward: A inside Ref
    assert amcs(er, ea) < 1.0                                 # backward: cisplatin is missing from A
    assert amcs(embed(["mammary carcinoma"]), er) > amcs(embed(["bicycle repair"]), er)
