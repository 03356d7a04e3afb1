"""The five sharded data stages (collect, clean, quality, entities, entity_map) on the tiny profile
give byte-identical outputs with 1, 2 and 4 Ray workers, and account for every input per shard.

    .venv/bin/python -m pytest -q tests/corpus/test_sharded_stages.py

One Ray instance (4 CPUs) serves every run, so the test pays Ray's start-up once; each stage runs
three times into the same path (collect's image paths name their folder), its files hashed after
each run. Sizes are cut below the tiny profile's (fewer records, a short CRF fit) to keep the test
near a minute and a half on two cores.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from pathlib import Path

import pytest
from mapping.test_map_fixtures import write_tree

from tasks.common.engine import runtime_env
from tasks.common.stage import main

SHARD = "engine.shard_records=60"
STAGES = [   # (stage, overrides beyond profile/out_dir/engine, upstream stage)
    ("collect", ["max_records_per_source=60"], None),
    ("clean", [], "collect"),
    ("quality", [], "clean"),
    ("entities", ["eval.llm_docs=0", "eval.local_max_docs=20", "crf.max_iterations=5", "crf.max_train_docs=40",
                  "weak.max_docs=20", "weak.max_sentences=40", "weak.eval_docs=10", "weak.max_eval_sentences=10"],
     "quality"),
    ("entity_map", ["amcs.enabled=false"], "quality"),
]


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=128 << 20,
             runtime_env=runtime_env())
    yield
    ray.shutdown()


def logged_shards() -> list[dict]:
    """shards.json of the newest stage run in the test's MLflow store."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("medxiaohe-pipeline")
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    return json.loads(Path(client.download_artifacts(run.info.run_id, "shards.json")).read_text())


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def stage_args(stage: str, work: Path, upstream: str | None) -> list[str]:
    if stage == "entity_map":
        return [f"in_dir={work / upstream / 'kept'}", f"tree={write_tree(work / 'tree.json')}"]
    return [f"in_dir={work / upstream}"] if upstream else []


def test_outputs_identical_for_1_2_4_workers(tmp_path, ray_session):
    work = tmp_path
    for stage, extra, upstream in STAGES:
        out = work / stage
        runs = {}
        for workers, split in ((1, SHARD), (2, SHARD), (4, SHARD), ("whole", "engine.shard_records=100000")):
            if out.exists():
                shutil.rmtree(out)
            argv = ["profile=tiny", f"out_dir={out}", f"engine.workers={1 if workers == 'whole' else workers}", split,
                    *stage_args(stage, work, upstream), *extra]
            summary = main(importlib.import_module(f"tasks.{stage}").STAGE, argv)
            runs[workers] = tree_hashes(out)
            # the split is MLflow's (shards.json), not the outputs': they do not depend on it
            assert "shards" not in json.loads((out / "summary.json").read_text())
            shards = logged_shards()
            for row in shards:
                assert row["read"] == row["kept"] + row["rejected"], (stage, row)
            for key in ("read", "kept", "rejected"):
                assert sum(r[key] for r in shards) == summary[key], (stage, key)
            if stage == "collect":   # one shard per source, in name order
                assert [r["source"] for r in shards] == sorted(r["source"] for r in shards)
                assert len(shards) == len(summary["per_source"]) > 1
            elif workers == "whole":   # one shard: the in-process path
                assert len(shards) == 1
            else:                    # 60 input records a shard
                assert [r["shard"] for r in shards] == list(range(len(shards))) and len(shards) > 2
                assert all(r["read"] == 60 for r in shards[:-1]) and 0 < shards[-1]["read"] <= 60
        assert runs[1] == runs[2] == runs[4] == runs["whole"], stage   # nor on the split
        assert len(runs[1]) > 3
