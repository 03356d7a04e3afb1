"""`python -m tasks.entity_map` end to end on a tiny fixture tree + a few records (MLflow in a temp
store), and a tree with a cycle refused before anything is scanned."""

from __future__ import annotations

import json

import pytest
from mapping.test_map_fixtures import RECORDS, tiny_tree, write_corpus, write_tree

from tasks.tree.model import TreeError


def run_stage(tree, kept, out, data_root, *extra, stop_keys="[]"):
    from tasks import entity_map
    from tasks.common.stage import main
    return main(entity_map.STAGE, [f"tree={tree}", f"in_dir={kept}", f"out_dir={out}", f"data_root={data_root}",
                       "temperature=1.0", "sparse_bottom_n=3", f"stop_keys={stop_keys}", *extra])


def test_stage_end_to_end(tmp_path, data_root):
    tree = write_tree(tmp_path / "tree.json")
    kept = write_corpus(tmp_path / "kept")
    out = tmp_path / "entity_map"
    summary = run_stage(tree, kept, out, data_root, "amcs.vocabs=[doid]", "amcs.max_terms=40")
    # accounting: every valid document is kept (with or without hits), bad lines are rejected
    assert summary["read"] == len(RECORDS) + 2 == summary["kept"] + summary["rejected"]
    assert summary["kept"] == len(RECORDS) and summary["rejected"] == 2
    assert summary["rejected_by_reason"] == {"bad_json": 1, "missing_field": 1}
    assert summary["docs_without_hits"] == 2 and summary["docs_with_hits"] == 5
    assert summary["hits"] == 10 and summary["distinct_entities_hit"] == 5
    assert json.loads((out / "summary.json").read_text()) == summary

    rows = [json.loads(line) for line in open(out / "doc_hits" / "part-00000.jsonl")]
    assert [r["doc_id"] for r in rows] == [i for i, _ in RECORDS]
    texts = dict(RECORDS)
    for r in rows:
        for h in r["hits"]:
            assert texts[r["doc_id"]][h["start"]:h["end"]].casefold().replace("-", " ") == h["norm"]
            assert h["node"] == f"e:{h['norm']}"
    assert rows[2]["hits"][0]["norm"] == "all"                     # "ALL", not "smaller"

    freq = json.loads((out / "frequencies.json").read_text())
    assert freq["entities"]["breast cancer"] == {"mentions": 4, "docs": 3}
    assert freq["nodes"]["c1.1"]["mentions"] == 5 and freq["nodes"]["c"]["docs"] == 5

    manifest = [json.loads(line) for line in open(out / "balanced_manifest.jsonl")]
    assert [m["doc_id"] for m in manifest] == sorted(texts)
    w = {m["doc_id"]: m["weight"] for m in manifest}
    assert w["doc-5"] == w["doc-6"] == 1.0
    assert sum(w.values()) / len(w) == pytest.approx(1.0, abs=1e-6)
    assert w["doc-2"] < w["doc-1"]                                  # only the head entity
    bal = json.loads((out / "balance.json").read_text())
    assert bal["after"]["gini"] < bal["before"]["gini"]

    sparse = json.loads((out / "sparse_domains.json").read_text())["domains"]
    assert sparse[0]["node"] == "c4" and len(sparse) == 3
    amcs = json.loads((out / "amcs.json").read_text())
    (row,) = amcs["rows"]
    assert row["target"] == "doid" and row["size"] == 40 and 0 < row["forward"] <= 1 and 0 < row["backward"] <= 1
    # DOID did not build the tree (default build_vocabs: [mesh]): independent, the summary mean is its own
    assert row["independent"] is True and amcs["build_vocabs"] == ["mesh"]
    assert amcs["independent_mean"] == {"targets": ["doid"], "excluded": [], "forward": row["forward"],
                                        "backward": row["backward"]} == summary["amcs_independent_mean"]
    md = (out / "amcs.md").read_text()
    assert "| doid | 40 (" in md
    assert md.rstrip().endswith(f"(doid): forward {row['forward']:.2f}, backward {row['backward']:.2f}.")
    assert summary["stop_keys"] == {"configured": 0, "entities_affected": 0, "entities_never_matched": 0,
                                    "abbreviation_hits": 0, "suppressed_hits": 0, "entities": {}}
    assert (out / "long_tail.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    import mlflow
    client = mlflow.MlflowClient()
    run = client.search_runs([mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id])[0]
    m = run.data.metrics
    assert m["read"] == summary["read"] and m["hits"] == 10 and m["docs"] == summary["read"]
    assert m["amcs.forward.doid"] == row["forward"] and m["amcs.backward.doid"] == row["backward"]
    assert m["amcs.forward.independent_mean"] == row["forward"]
    assert m["scan_mb_per_s"] > 0 and m["pass_mb_per_s"] > 0 and "input_mb" in m
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "entity_map")}
    assert {"entity_map/amcs.md", "entity_map/long_tail.png", "entity_map/sparse_domains.json"} <= arts

    # re-run: byte-identical data outputs
    out2 = tmp_path / "again"
    run_stage(tree, kept, out2, data_root, "amcs.vocabs=[doid]", "amcs.max_terms=40")
    for name in ("balanced_manifest.jsonl", "frequencies.json", "amcs.json", "sparse_domains.json",
                 "doc_hits/part-00000.jsonl"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


def test_stop_keys_keep_the_abbreviation_and_report_what_they_drop(tmp_path, data_root):
    """"ALL" (doc-3) stays acute lymphoblastic leukemia; "at all" (doc-4) is no longer a hit."""
    tree = write_tree(tmp_path / "tree.json")
    out = tmp_path / "entity_map"
    summary = run_stage(tree, write_corpus(tmp_path / "kept"), out, data_root, "amcs.enabled=false",
                        stop_keys='[all, "no", the]')   # "no" quoted: YAML reads no as false
    assert summary["hits"] == 9 and summary["docs_without_hits"] == 3
    assert summary["stop_keys"] == {
        "configured": 3, "entities_affected": 1, "entities_never_matched": 0, "abbreviation_hits": 1,
        "suppressed_hits": 1, "entities": {"all": {"name": "ALL", "node": "e:all", "frequency": 1, "keys": ["all"],
                                                   "abbreviation_hits": 1, "suppressed_hits": 1}}}
    rows = [json.loads(line) for line in open(out / "doc_hits" / "part-00000.jsonl")]
    rows = {r["doc_id"]: r["hits"] for r in rows}
    assert [h["norm"] for h in rows["doc-3"]] == ["all", "cisplatin"] and rows["doc-4"] == []

    import mlflow
    client = mlflow.MlflowClient()
    m = client.search_runs([mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id])[0].data.metrics
    assert m["stop_keys.suppressed_hits"] == 1 and m["stop_keys.entities.all.abbreviation_hits"] == 1


def test_tree_with_a_cycle_is_refused(tmp_path, data_root):
    obj = tiny_tree().to_json()
    for n in obj["nodes"]:                      # c1 -> c1.1 -> c1 (and c1 no longer under the root)
        if n["id"] == "c1":
            n["parent"] = "c1.1"
    tree = write_tree(tmp_path / "tree.json", obj)
    kept = write_corpus(tmp_path / "kept")
    out = tmp_path / "entity_map"
    with pytest.raises(TreeError, match=r"cycle in parent links: .*c1.*c1\.1"):
        run_stage(tree, kept, out, data_root, "amcs.enabled=false")
    assert not out.exists()                     # nothing half-written


def test_missing_tree_is_a_clear_error(tmp_path, data_root):
    with pytest.raises(FileNotFoundError):
        run_stage(tmp_path / "nope.json", write_corpus(tmp_path / "kept"), tmp_path / "o", data_root,
                  "amcs.enabled=false")


def test_params_yaml_section_loads():
    from tasks.common.config import load_stage_config
    from tasks.mapping.run import EntityMapConfig
    for argv in ([], ["profile=tiny"]):
        cfg, _ = load_stage_config("entity_map", EntityMapConfig, argv)
        assert all(isinstance(w, str) for w in cfg.stop_keys) and "no" in cfg.stop_keys
        assert cfg.amcs.vocabs and 0 <= cfg.temperature
