"""The two stages on a tiny project: cpt_order's outputs, then cpt (curriculum and shuffle), MLflow
metrics and the registered model, the rejection layout, and outputs that do not depend on where the
project lives."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import mlflow
import numpy as np
import pytest
from PIL import Image
from training.cpt_project import BAD_REASONS, in_project

from tasks.common.io import read_jsonl, shard_paths
from tasks.common.stage import main
from tasks.training.model_io import load_model


def rows(path):
    return read_jsonl(path)


def rejected_entries(out):
    return [r for p in shard_paths(out / "rejected") for r in read_jsonl(p)]


def output_files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def assert_no_absolute_paths(out, root):
    """No output names the project's location (a clone elsewhere must produce the same bytes)."""
    for rel, data in output_files(out).items():
        assert str(root).encode() not in data, rel


def good_samples(project):
    """The tiny corpus's trainable samples (cpt_project.BAD_SAMPLES and the broken last line aside)."""
    lines = (project / "data" / "cpt_data" / "samples" / "part-00000.jsonl").read_text().splitlines()
    return [s for s in map(json.loads, lines[:-1]) if s["id"] not in BAD_REASONS]


def test_cpt_order_outputs(ordered_project):
    out = ordered_project / "data" / "cpt_order"
    summary = json.loads((out / "summary.json").read_text())
    manifest = rows(out / "manifest.jsonl")
    heldout = {r["id"] for r in rows(out / "heldout.jsonl")}
    samples = good_samples(ordered_project)
    assert summary["read"] == len(samples) + len(BAD_REASONS) == summary["kept"] + summary["rejected"]
    assert 0 < len(heldout) <= 8
    fresh = [e["id"] for e in manifest if not e["replay"]]
    general = {e["id"] for e in manifest if e["general"]}
    assert summary["general_pool"] == len(general) >= 6        # whole documents until the pool is full
    assert sorted(fresh) == sorted(s["id"] for s in samples if s["id"] not in heldout | general)   # each once
    by_id = {s["id"]: s for s in samples}
    assert {by_id[i]["task"] for i in general} == {"document"} and not general & heldout
    # natural text in every region: the first cluster's core too, not only the transitions
    regions = Counter(e["region_index"] for e in manifest)
    general_in = Counter(e["region_index"] for e in manifest if e["general"])
    assert all(general_in[r] >= round(0.2 * n) - 1 for r, n in regions.items() if n >= 5)
    assert general_in[0] > 0 and summary["general_entries"] == sum(general_in.values())
    # held out per data kind: each kind present in the corpus has held-out samples
    assert set(summary["heldout_by_kind"]) == {"kg_qa", "caption", "corpus_text"}
    assert [e["position"] for e in manifest] == list(range(len(manifest)))
    seen = set()
    for e in manifest:
        assert not e["replay"] or e["general"] or e["id"] in seen, "replays only of samples already trained"
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
    assert "seconds" not in summary["warmup"] and "timings" not in summary      # wall clock: MLflow only
    # rejections, one way: rejected/part-*.jsonl, one entry per sample with its reason
    assert not (out / "rejected.jsonl").exists()
    rejected = rejected_entries(out)
    assert len(rejected) == summary["rejected"] == len(BAD_REASONS)
    assert {r["id"]: r["reason"] for r in rejected} == BAD_REASONS
    assert summary["rejected_by_reason"] == {"bad_json": 1, "empty_text": 1, "image_missing": 1}
    [broken] = [r for r in rejected if r["reason"] == "bad_json"]
    assert broken["locator"] == f"data/cpt_data/samples/part-00000.jsonl:{len(samples) + len(BAD_REASONS)}"
    assert_no_absolute_paths(out, ordered_project)


@pytest.fixture
def project(ordered_project, tmp_path):
    """A private copy of the ordered project (each test trains into its own data/cpt)."""
    root = tmp_path / "project"
    shutil.copytree(ordered_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    return root


def test_cpt_trains_in_manifest_order_and_registers_the_model(project):
    import tasks.cpt

    with in_project(project):
        summary = main(tasks.cpt.STAGE, [])
    out = project / "data" / "cpt"
    manifest = rows(project / "data" / "cpt_order" / "manifest.jsonl")
    trace = rows(out / "order_trace.jsonl")
    assert [i for r in trace for i in r["ids"]] == [e["id"] for e in manifest]
    assert summary["global_step"] == len(trace) == -(-len(manifest) // 4)
    # one pass over the schedule: every cluster reached, in curriculum order, general text throughout
    reached = summary["entries_trained"]
    assert reached["clusters_reached"] == reached["clusters_in_schedule"] >= 2 and reached["in_curriculum_order"]
    assert reached["general"] == sum(e["general"] for e in manifest) > 0 and not summary["partial"]
    # held-out perplexity per data kind, before and after, each with its interval
    by_kind = summary["heldout_by_kind"]
    assert set(by_kind) == {"kg_qa", "caption", "corpus_text"}
    for row in by_kind.values():
        assert row["ppl_after_ci"][0] <= row["ppl_after"] <= row["ppl_after_ci"][1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["heldout_ppl_before"]) and np.isfinite(metrics["heldout_ppl_after"])
    assert metrics["heldout_ppl_after"] < metrics["heldout_ppl_before"]
    assert "tokens_per_s" not in summary and "tokens_per_s" not in metrics     # wall clock: MLflow, not DVC outputs
    assert summary["read"] == summary["kept"] + summary["rejected"] and summary["rejected"] == 0
    # nothing left the schedule (cpt_order rejected the bad samples already); the unreadable line of the
    # sample shard is reported again, as a sample, beside the (empty) entry rejections
    assert rejected_entries(out) == [] and (out / "rejected").is_dir()
    [line] = [r for p in shard_paths(out / "rejected_samples") for r in read_jsonl(p)]
    assert line["reason"] == "bad_json" and line["locator"].startswith("data/cpt_data/samples/part-00000.jsonl:")
    assert not (out / "model" / "training_args.bin").exists()    # it pickles the absolute output path
    vlm = load_model(out / "model")                          # the saved layout loads like the base model
    assert json.loads((out / "model" / "medx_model.json").read_text())["order"] == "curriculum"
    assert vlm.factor == 28
    assert not (project / ".cache" / "cpt_checkpoints" / summary["run_key"]).exists()   # cleaned up

    client = mlflow.MlflowClient()
    [run] = client.search_runs(client.get_experiment_by_name("medxiaohe-pipeline").experiment_id,
                               filter_string="tags.stage = 'cpt'")
    for key in ("train.loss", "train.learning_rate", "train.tokens_per_s", "heldout.ppl", "heldout_ppl_after",
                "tokens_per_s", "read", "kept", "rejected", "global_step"):
        assert key in run.data.metrics, key
    assert run.data.metrics["tokens_per_s"] > 0
    assert run.data.tags["model_uri"] and run.data.tags["registered_version"] == "1"
    assert "cpt/metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id, "cpt")}
    assert len(client.get_metric_history(run.info.run_id, "heldout.ppl")) == 2     # before and after
    versions = client.search_model_versions("name = 'tiny-cpt'")
    assert [str(v.version) for v in versions] == ["1"] and versions[0].run_id == run.info.run_id


def test_shuffle_trains_the_same_entries_in_another_order(project):
    import tasks.cpt

    with in_project(project):
        summary = main(tasks.cpt.STAGE, ["order=shuffle", "mlflow.log_model=false"])
    manifest = [e["id"] for e in rows(project / "data" / "cpt_order" / "manifest.jsonl")]
    trained = [i for r in rows(project / "data" / "cpt" / "order_trace.jsonl") for i in r["ids"]]
    assert Counter(trained) == Counter(manifest) and trained != manifest
    assert summary["order"] == "shuffle" and summary["heldout_ppl_after"] is not None


def test_cpt_outputs_are_byte_identical_wherever_the_project_lives(project, tmp_path):
    """The same run in two checkouts at different paths: every output file, trained weights included,
    is the same bytes (so DVC hashes agree), and none names either location."""
    import tasks.cpt

    elsewhere = tmp_path / "another" / "checkout"
    shutil.copytree(project, elsewhere)
    outputs = []
    for root in (project, elsewhere):
        with in_project(root):
            main(tasks.cpt.STAGE, ["mlflow.log_model=false"])
        assert_no_absolute_paths(root / "data" / "cpt", root)
        outputs.append(output_files(root / "data" / "cpt"))
    assert outputs[0].keys() == outputs[1].keys() and "model/model.safetensors" in outputs[0]
    assert [k for k in outputs[0] if outputs[0][k] != outputs[1][k]] == []


def test_cpt_order_rerun_is_byte_identical(ordered_project, tmp_path):
    """cpt_order again on the same corpus, in a copy of the project at another path: the same bytes."""
    import tasks.cpt_order

    copy = tmp_path / "copy"
    shutil.copytree(ordered_project, copy, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    with in_project(copy):
        main(tasks.cpt_order.STAGE, [])
    first, second = output_files(ordered_project / "data" / "cpt_order"), output_files(copy / "data" / "cpt_order")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
