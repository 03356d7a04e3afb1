"""The quality stage on a real clean-stage-shaped input: accounting, pass-through, determinism,
MLflow per-round metrics, and the stage on the runner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tasks.common.config import ConfigError, build
from tasks.common.io import StageSink, iter_jsonl, shard_paths
from tasks.common.stage import main
from tasks.corpus.quality.run import QualityConfig, quality_filter

SMALL = dict(seed_size=300, pool_sample_per_round=150, holdout_size=100, max_rounds=2, seed=1234,
             target_accuracy=0.999)   # unreachable here: both rounds always run


def run_stage(clean_dir: Path, out: Path, **over) -> dict:
    cfg = QualityConfig(**{**SMALL, "in_dir": str(clean_dir), **over})
    sink = StageSink(out, shard_size=cfg.shard_size)
    return sink.close(**quality_filter(cfg, sink))


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read(path_glob: list[Path]) -> list[dict]:
    return [obj for p in path_glob for obj, _ in iter_jsonl(p)]


def test_stage_outputs_accounting_and_determinism(clean_dir, tmp_path):
    s1 = run_stage(clean_dir, tmp_path / "a")
    s2 = run_stage(clean_dir, tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")      # incl. quality_model.bin
    assert s1 == s2

    assert s1["read"] == 705 == s1["kept"] + s1["rejected"]
    assert s1["passthrough_images"] == 5 and s1["scored"] == 700
    entries = read(sorted((clean_dir / "rejected").glob("part-*.jsonl")))
    n_rule = sum(e["reason"] == "dup_ngram_ratio" for e in entries)
    assert 0 < n_rule < len(entries)
    assert s1["seed_rejected_pool"] == n_rule     # not too_short, not near_duplicate (good text)
    assert set(s1["rejected_by_reason"]) <= {"low_quality"}

    kept = read(shard_paths(tmp_path / "a" / "kept"))
    rejected = read(sorted((tmp_path / "a" / "rejected").glob("part-*.jsonl")))
    assert len(kept) == s1["kept"] and len(rejected) == s1["rejected"]
    images = [r for r in kept if r["images"]]
    assert len(images) == 5 and all(r["meta"]["quality_score"] is None for r in images)
    for r in kept:
        q = r["meta"]["quality_score"]
        assert q is None or (q >= 0.5 and q == round(q, 4))
        assert r["meta"].get("license") or r["source"] == "vqa_rad"   # meta kept intact
    for e in rejected:
        assert e["reason"] == "low_quality" and "quality_score=" in e["detail"]
        assert e["record"]["source"] == "medquad"
    # real, already-clean MedQuAD: the classifier keeps most of it
    assert s1["kept"] / s1["read"] > 0.8

    rounds = json.loads((tmp_path / "a" / "rounds.json").read_text())
    assert [r["round"] for r in rounds["rounds"]] == [0, 1, 2]
    assert rounds["verifier"] == "local" and rounds["holdout"]["size"] == 100
    assert s1["final_accuracy"] == round(rounds["rounds"][-1]["accuracy"], 4)
    assert json.loads((tmp_path / "a" / "verifier_failures.json").read_text()) == []


def test_config_is_validated():
    with pytest.raises(ConfigError, match="degraders"):
        build(QualityConfig, {"degraders": ["nope"]}, "quality")
    with pytest.raises(ConfigError, match="verifier"):
        build(QualityConfig, {"verifier": "gpt"}, "quality")
    with pytest.raises(ConfigError, match="unknown key"):
        build(QualityConfig, {"fasttext": {"epochs": 3}}, "quality")


def test_stage_logs_round_metrics_to_mlflow(clean_dir, tmp_path, monkeypatch, isolated_mlflow):
    import mlflow

    import tasks.quality as stage

    out = tmp_path / "quality"
    summary = main(stage.STAGE, [f"in_dir={clean_dir}", f"out_dir={out}", "seed_size=300",
                          "pool_sample_per_round=150", "holdout_size=100", "max_rounds=2",
                          "target_accuracy=0.999"])
    assert (out / "summary.json").exists() and (out / "quality_model.bin").exists()
    assert summary["read"] == 705
    client = mlflow.MlflowClient()
    run = client.search_runs([mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, "accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert {m.step for m in client.get_metric_history(run.info.run_id, "agreement")} == {1, 2}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"rounds.json", "quality_model.bin", "summary.json"} <= artifacts


def test_llm_verifier_needs_the_runner_client():
    import tasks.quality as stage
    from tasks.corpus.quality.run import make_verifier

    assert stage.STAGE.uses_llm(QualityConfig(verifier="llm")) and not stage.STAGE.uses_llm(QualityConfig())
    with pytest.raises(ValueError, match="LLM client"):
        make_verifier(QualityConfig(verifier="llm"), ["a text"])
    assert make_verifier(QualityConfig(), ["a text"]).name == "local"
