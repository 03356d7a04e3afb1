"""The two stage shells on a tiny project: cpt_order's outputs, then cpt (curriculum and shuffle),
MLflow metrics and the registered model."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import mlflow
import numpy as np
import pytest
from PIL import Image
from train.conftest import in_project

from tasks.training.model_io import load_model


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cpt_order_outputs(ordered_project):
    out = ordered_project / "data" / "cpt_order"
    summary = json.loads((out / "summary.json").read_text())
    manifest = rows(out / "manifest.jsonl")
    heldout = {r["id"] for r in rows(out / "heldout.jsonl")}
    samples = rows(ordered_project / "data" / "cpt_data" / "samples" / "part-00000.jsonl")
    assert summary["read"] == len(samples) == summary["kept"] + summary["rejected"]
    assert 0 < len(heldout) <= 8
    fresh = [e["id"] for e in manifest if not e["replay"]]
    assert sorted(fresh) == sorted(s["id"] for s in samples if s["id"] not in heldout)   # each once
    assert [e["position"] for e in manifest] == list(range(len(manifest)))
    seen = set()
    for e in manifest:
        assert not e["replay"] or e["id"] in seen, "replays only of samples already trained"
        seen.add(e["id"])
    report = json.loads((out / "clusters.json").read_text())
    ranks = [c["rank"] for c in report["clusters"]]
    scores = [c["compactness"] for c in report["clusters"] if c["label"] != -1]
    assert ranks == list(range(len(ranks))) and scores == sorted(scores) and len(scores) >= 2
    assert sum(c["size"] for c in report["clusters"]) == len(fresh)
    # the manifest walks the clusters in rank order, transitions between neighbours
    first_rank_of_region = [e["rank"] for e in manifest if e["region"] == "cluster"]
    assert first_rank_of_region == sorted(first_rank_of_region)
    assert all(t["size"] >= 2 for t in report["transitions"])
    with Image.open(out / "order_map.png") as img:
        assert img.size[0] > 400
    assert summary["warmup"]["steps"] > 0 and summary["warmup"]["last_loss"] < summary["warmup"]["first_loss"]


@pytest.fixture
def project(ordered_project, tmp_path):
    """A private copy of the ordered project (each test trains into its own data/cpt)."""
    root = tmp_path / "project"
    shutil.copytree(ordered_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    return root


def test_cpt_trains_in_manifest_order_and_registers_the_model(project):
    import tasks.cpt

    with in_project(project):
        summary = tasks.cpt_synthesis.main([])
    out = project / "data" / "cpt"
    manifest = rows(project / "data" / "cpt_order" / "manifest.jsonl")
    trace = rows(out / "order_trace.jsonl")
    assert [i for r in trace for i in r["ids"]] == [e["id"] for e in manifest]
    assert summary["global_step"] == len(trace) == -(-len(manifest) // 4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["heldout_ppl_before"]) and np.isfinite(metrics["heldout_ppl_after"])
    assert metrics["heldout_ppl_after"] < metrics["heldout_ppl_before"]
    assert summary["tokens_per_s"] > 0 and "tokens_per_s" not in metrics     # wall clock: MLflow, not DVC outputs
    vlm = load_model(out / "model")                          # the saved layout loads like the base model
    assert json.loads((out / "model" / "medx_model.json").read_text())["order"] == "curriculum"
    assert vlm.factor == 28
    assert not (project / ".cache" / "cpt_checkpoints" / summary["run_key"]).exists()   # cleaned up

    client = mlflow.MlflowClient()
    [run] = client.search_runs(client.get_experiment_by_name("medxiaohe-pipeline").experiment_id,
                               filter_string="tags.stage = 'cpt'")
    for key in ("train.loss", "train.learning_rate", "train.tokens_per_s", "heldout.ppl"):
        assert key in run.data.metrics, key
    assert len(client.get_metric_history(run.info.run_id, "heldout.ppl")) == 2     # before and after
    versions = client.search_model_versions("name = 'tiny-cpt'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].run_id == run.info.run_id


def test_shuffle_trains_the_same_entries_in_another_order(project):
    import tasks.cpt

    with in_project(project):
        summary = tasks.cpt_synthesis.main(["order=shuffle", "mlflow.log_model=false"])
    manifest = [e["id"] for e in rows(project / "data" / "cpt_order" / "manifest.jsonl")]
    trained = [i for r in rows(project / "data" / "cpt" / "order_trace.jsonl") for i in r["ids"]]
    assert Counter(trained) == Counter(manifest) and trained != manifest
    assert summary["order"] == "shuffle" and summary["heldout_ppl_after"] is not None
