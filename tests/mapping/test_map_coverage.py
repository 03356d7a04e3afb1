"""AMCS, paper Eq. (1) (tasks/mapping/coverage.py), on hand-made sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.mapping.coverage import (
    amcs,
    coverage_row,
    independent_mean,
    max_cosine,
    provenance,
    render_table,
)
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


def test_build_vocabularies_are_marked_and_left_out_of_the_mean():
    rows = [{**coverage_row(name, ["a"], unit([1, 0]), ["a"], unit(v), 0.9, 5), **prov}
            for name, v, prov in [("doid", [1, 0], provenance("doid", ["mesh"])),
                                  ("mesh", [1, 0], provenance("mesh", ["mesh"])),
                                  ("hpo", [0, 1], provenance("hpo", ["mesh"])),
                                  ("benchmark", [1, 0], provenance("benchmark", ["mesh"], {"mesh": 0.625}))]]
    ind = {r["target"]: (r["independent"], r["why"]) for r in rows}
    assert ind == {"doid": (True, ""), "mesh": (False, "used to build the tree"), "hpo": (True, ""),
                   "benchmark": (False, "partly derived from a build vocabulary: 62% of its terms are mesh terms")}
    assert rows[3]["derived_from"] == {"mesh": 0.625}
    assert provenance("benchmark", ["mesh"], {"mesh": 0.0}) == {"independent": True, "why": ""}
    # the summary figure: doid (forward 1) and hpo (forward 0) only, though mesh and benchmark are 1.0
    assert independent_mean(rows) == {"targets": ["doid", "hpo"], "excluded": ["mesh", "benchmark"],
                                      "forward": 0.5, "backward": 0.5}
    md = render_table(rows, 0.9, "enc", ["mesh"])
    assert "Vocabularies used to build the tree: mesh." in md
    assert "| doid | 1 (5) | 1.00 | 1.00 |" in md and md.count("| yes |") == 2
    assert "| mesh | 1 (5) | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 | near-equivalent sets | " \
           "**no**: used to build the tree |" in md
    assert "| **no**: partly derived from a build vocabulary: 62% of its terms are mesh terms |" in md
    assert "Mean over the independent targets (doid, hpo): forward 0.50, backward 0.50." in md
    only_built = [r for r in rows if not r["independent"]]
    assert independent_mean(only_built)["forward"] is None
    assert "No independent target" in render_table(only_built, 0.9, "enc", ["mesh"])


def test_benchmark_share_of_build_vocabulary_terms(tmp_path):
    from tasks.mapping.run import EntityMapConfig, load_targets
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "d.obo").write_text("[Term]\nid: DOID:1\nname: lung cancer\n\n"
                                               "[Term]\nid: DOID:2\nname: asthma\n", encoding="utf-8")
    (tmp_path / "vocab" / "m.txt").write_text("Tree Number\tDesc Ui\tTerm\nC08\tD1\tAsthma\n"
                                               "C04\tD2\tNeoplasms\nC10\tD3\tMigraine Disorders\n",
                                               encoding="utf-8")
    (tmp_path / "b" / "medqa").mkdir(parents=True)
    (tmp_path / "b" / "medqa" / "medqa_input.jsonl").write_text(
        '{"question": "Asthma or lung cancer or neoplasms?"}\n{"question": "A smoker with asthma."}\n',
        encoding="utf-8")
    cfg = EntityMapConfig(data_root=str(tmp_path))
    cfg.amcs.doid, cfg.amcs.mesh, cfg.amcs.benchmarks_dir = "vocab/d.obo", "vocab/m.txt", "b"
    cfg.amcs.vocabs = ["mesh", "benchmark"]
    targets, shares = load_targets(cfg)
    assert targets["benchmark"] == ["asthma", "lung cancer", "neoplasms"]
    assert shares == {"benchmark": {"mesh": 2 / 3}}              # asthma, neoplasms are MeSH terms
    cfg.amcs.build_vocabs = ["mesh", "doid"]
    assert load_targets(cfg)[1] == {"benchmark": {"mesh": 2 / 3, "doid": 2 / 3}}
    cfg.amcs.build_vocabs = []
    assert load_targets(cfg)[1] == {"benchmark": {}}
    cfg.amcs.build_vocabs = ["umls"]
    with pytest.raises(ValueError, match="amcs.build_vocabs: unknown vocabulary 'umls'"):
        load_targets(cfg)


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
