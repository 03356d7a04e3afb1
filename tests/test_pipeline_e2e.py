"""End to end on the tiny profile, for real: `dvc repro` under an MLflow parent run, then the
no-op re-run, then `dvc repro --force` twice with identical output hashes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from project_copy import PROJECT, make_project_copy, project_env, run_in
from tasks.pipeline import read_stage_graph

pytestmark = pytest.mark.e2e

STAGES = list(read_stage_graph(PROJECT / "dvc.yaml"))


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    root = make_project_copy(tmp_path_factory.mktemp("e2e") / "project")
    run_in(root, "python", "-m", "tasks.pipeline", "run")
    return root


def out_hashes(root: Path) -> dict:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {s: [o["md5"] for o in lock[s]["outs"]] for s in lock}


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("medxiaohe-pipeline")
    return client, client.search_runs([exp.experiment_id])


def test_every_stage_accounts_for_every_record(tiny_project: Path):
    for stage in STAGES:
        summary = json.loads((tiny_project / "data" / stage / "summary.json").read_text())
        assert summary["read"] > 0, stage
        assert summary["read"] == summary["kept"] + summary["rejected"], stage
        assert summary["kept"] > 0, stage
    collect = json.loads((tiny_project / "data/collect/summary.json").read_text())
    assert set(collect["per_source"]) >= {"medquad", "pubtator", "medline", "iu_xray", "vqa_rad",
                                          "pneumoniamnist", "dicom"}
    assert all(c["read"] <= 150 for c in collect["per_source"].values())  # the tiny profile's cap


def test_mlflow_has_one_parent_with_a_child_per_stage(tiny_project: Path):
    client, runs = mlflow_runs(tiny_project)
    parents = [r for r in runs if r.data.tags.get("kind") == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["stage"] for r in children) == sorted(STAGES)
    lock = yaml.safe_load((tiny_project / "dvc.lock").read_text())["stages"]
    for r in children:
        tags, metrics = r.data.tags, r.data.metrics
        assert tags["profile"] == "tiny" and len(tags["git_commit"]) == 40
        assert len(tags["dvc_lock_hash"]) == 64 and tags["stage"] in lock
        assert metrics["read"] == metrics["kept"] + metrics["rejected"]
        assert metrics["records_per_s"] > 0
        assert sum(v for k, v in metrics.items() if k.startswith("rejected.")) == metrics["rejected"]
        assert r.data.params, "stage params are logged"
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"summary.json", "kept_sample.jsonl", "rejections.png"} <= names, names
    clean = next(r for r in children if r.data.tags["stage"] == "clean")
    decontam = {a.path for a in client.list_artifacts(clean.info.run_id, "decontamination")}
    assert "decontamination/decontamination_report.jsonl" in decontam, decontam
    quality = next(r for r in children if r.data.tags["stage"] == "quality")
    history = client.get_metric_history(quality.info.run_id, "accuracy")
    assert len(history) >= 1 and [m.step for m in history] == sorted(m.step for m in history)


def test_second_run_is_a_dvc_noop(tiny_project: Path):
    before = out_hashes(tiny_project)
    t0 = time.perf_counter()
    proc = run_in(tiny_project, "python", "-m", "tasks.pipeline", "run")
    elapsed = time.perf_counter() - t0
    assert "Data and pipelines are up to date" in proc.stdout + proc.stderr
    assert out_hashes(tiny_project) == before
    assert elapsed < 30  # the issue asks < 10 s on an idle machine; leave room for a loaded CI box
    _, runs = mlflow_runs(tiny_project)
    assert len([r for r in runs if r.data.tags.get("kind") == "pipeline"]) == 1  # no empty parent kept


def test_forced_repro_is_deterministic(tiny_project: Path):
    env = project_env(tiny_project)
    run_in(tiny_project, "dvc", "repro", "--force", env=env)
    first = out_hashes(tiny_project)
    run_in(tiny_project, "dvc", "repro", "--force", env=env)
    assert out_hashes(tiny_project) == first
