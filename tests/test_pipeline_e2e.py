"""End to end on the tiny profile, for real, with two full pipeline runs in one project copy:

1. the services (`python -m tasks.services start`: embedded PostgreSQL, the MLflow tracking server,
   Airflow's scheduler, DAG processor and API server with a LocalExecutor) and the DAG triggered
   through Airflow's REST API: one task per dvc.yaml stage, each `dvc repro --single-item`, sibling
   stages at the same time, under one MLflow parent run tagged with the DAG run id, read back from
   the tracking server over HTTP. On the way one stage process (`cpt`) is killed mid-run; Airflow's
   retry finishes it;
2. `python -m tasks.pipeline run` again: a DVC no-op that keeps no empty parent run;
3. `python -m tasks.pipeline run --force` in a copy of the project in another folder: every stage
   re-runs and every output hash equals the scheduler run's (determinism, the killed-and-retried stage
   included, and no output depends on where the checkout lives); no output holds either folder's
   absolute path;
4. `dvc status` after an edit of one KG module names `kg`, not the entity stages upstream of it;
5. last, a stage that fails (its source data gone) leaves the DAG run failed and the MLflow parent
   FAILED; the services are stopped at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from project_copy import PROJECT, make_project_copy, project_env, run_in
from scheduler import DAG_ID, Services, overlapping_pairs, wait_killing

from tasks.common.tracking import latest_attempts
from tasks.pipeline import expand_stages, read_stage_graph, task_id

# the whole tiny pipeline runs in the first test's setup and again in the forced re-run: more than the
# suite-wide per-test limit on a loaded 2-core machine
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

STAGES = list(read_stage_graph(PROJECT / "dvc.yaml"))
OUT_DIRS = {name: spec["outs"][0] for name, spec in expand_stages(PROJECT / "dvc.yaml").items()}
KILLED_STAGE = "cpt"      # a training stage: killed 5 s into its run, retried from scratch


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    root = make_project_copy(base / "project")
    svc = Services(root, base / "services", stage_retries=1, retry_delay_s=5, parallelism=2)
    info = svc.start()
    assert all(info["running"].values()), info
    yield svc
    stopped = svc.stop()
    assert all(stopped.values()), stopped


@pytest.fixture(scope="module")
def dag_run(services) -> tuple[Path, dict]:
    api = services.api()
    api.wait_for_dag(DAG_ID, timeout_s=300)
    run_id = api.trigger(DAG_ID)
    run, killed_at = wait_killing(api, run_id, services.root, KILLED_STAGE, after_s=5, timeout_s=3000)
    tis = api.task_instances(DAG_ID, run_id)
    return services.root, {"state": run["state"], "run_id": run_id, "killed_at": killed_at,
                           "tasks": {ti["task_id"]: ti["state"] for ti in tis}, "task_instances": tis,
                           "tries": api.task_tries(DAG_ID, run_id, task_id(KILLED_STAGE))}


@pytest.fixture(scope="module")
def tiny_project(dag_run) -> Path:
    return dag_run[0]


def out_hashes(root: Path) -> dict:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {s: [o["md5"] for o in lock[s]["outs"]] for s in lock}


def mlflow_runs(tracking_uri: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("medxiaohe-pipeline")
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def sqlite_store(root: Path) -> str:
    """The store the project's CLI runs log to (project_env): the copy's own mlflow.db."""
    return f"sqlite:///{root / 'mlflow.db'}"


def parent_runs(runs) -> list:
    return [r for r in runs if r.data.tags.get("kind") == "pipeline"]


def test_the_scheduler_ran_every_stage_with_siblings_at_once(dag_run):
    root, result = dag_run
    assert result["state"] == "success", result["tasks"]
    assert all(s == "success" for s in result["tasks"].values()), result["tasks"]
    assert sorted(t for t in result["tasks"] if not t.endswith("_parent_run")) == sorted(map(task_id, STAGES))
    assert sorted(out_hashes(root)) == sorted(STAGES)  # DVC stayed authoritative: it wrote the lock
    # the LocalExecutor ran independent stages side by side (e.g. base_model beside the entity stages)
    graph = read_stage_graph(PROJECT / "dvc.yaml")
    upstream_of = {task_id(s): {task_id(u) for u in ups} for s, ups in graph.items()}
    siblings = [(a, b) for a, b in overlapping_pairs(result["task_instances"])
                if a not in upstream_of.get(b, ()) and b not in upstream_of.get(a, ())]
    assert siblings, "no two stage tasks overlapped in time"


def test_a_killed_stage_is_retried_by_the_scheduler(dag_run):
    _, result = dag_run
    assert result["killed_at"] is not None, f"{KILLED_STAGE} was never seen running"
    tries = sorted(result["tries"], key=lambda t: t["try_number"])
    assert [t["state"] for t in tries] == ["failed", "success"], tries
    # identical outputs to an uninterrupted run: test_forced_rerun_elsewhere_reproduces_every_output


# Stages that turn records into records account for each one; the model and evaluation stages
# (base_model, eval@*, eval_progression) report parameters and scores instead.
RECORD_STAGES = {"collect", "clean", "quality", "entities", "entity_tree", "entity_map", "kg", "cpt_data",
                 "cpt_order", "cpt", "mid_data", "mid_train", "sft_data", "sft", "rl_data", "rl"}


def test_every_stage_accounts_for_every_record(tiny_project: Path):
    assert RECORD_STAGES <= set(STAGES)
    for stage in RECORD_STAGES:
        summary = json.loads((tiny_project / OUT_DIRS[stage] / "summary.json").read_text())
        assert summary["read"] > 0, stage
        assert summary["read"] == summary["kept"] + summary["rejected"], stage
        assert summary["kept"] > 0, stage
    collect = json.loads((tiny_project / "data/collect/summary.json").read_text())
    assert set(collect["per_source"]) >= {"medquad", "pubtator", "medline", "iu_xray", "vqa_rad",
                                          "pneumoniamnist", "dicom"}
    assert all(c["read"] <= 150 for c in collect["per_source"].values())  # the tiny profile's cap


def test_the_tracking_server_has_one_parent_with_a_child_per_stage(dag_run, services):
    tiny_project, result = dag_run
    assert services.mlflow_url.startswith("http://127.0.0.1:")
    client, runs = mlflow_runs(services.mlflow_url)          # over HTTP, as an analyst's browser reads it
    parents = parent_runs(runs)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    attempts = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    latest = latest_attempts(attempts)
    children = list(latest.values())
    assert sorted(latest) == sorted(STAGES)
    # the killed attempt's run could not close itself; the DAG's closing task marked it KILLED
    earlier = [r for r in attempts if latest[r.data.tags["stage"]] is not r]
    # (5 s into the stage its run exists; a kill before it opened would leave no earlier attempt)
    assert {(r.data.tags["stage"], r.info.status) for r in earlier} <= {(KILLED_STAGE, "KILLED")}, earlier
    assert client.get_run(parent.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    lock = yaml.safe_load((tiny_project / "dvc.lock").read_text())["stages"]
    for r in [*children, parent]:
        assert r.data.tags["airflow_dag_run_id"] == result["run_id"]
    for r in children:
        tags, metrics = r.data.tags, r.data.metrics
        assert tags["profile"] == "tiny" and len(tags["git_commit"]) == 40
        assert len(tags["dvc_lock_hash"]) == 64 and tags["stage"] in lock
        assert r.data.params, "stage params are logged"
        if tags["stage"] not in RECORD_STAGES:
            assert metrics and client.list_artifacts(r.info.run_id), tags["stage"]
            continue
        assert metrics["read"] == metrics["kept"] + metrics["rejected"]
        assert metrics["records_per_s"] > 0
        assert sum(v for k, v in metrics.items() if k.startswith("rejected.")) == metrics["rejected"]
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"summary.json", "kept_sample.jsonl", "rejections.png"} <= names, names
    by_stage = {r.data.tags["stage"]: r for r in children}
    decontam = {a.path for a in client.list_artifacts(by_stage["clean"].info.run_id, "decontamination")}
    assert "decontamination/decontamination_report.jsonl" in decontam, decontam
    history = client.get_metric_history(by_stage["quality"].info.run_id, "accuracy")
    assert len(history) >= 1 and [m.step for m in history] == sorted(m.step for m in history)
    m = by_stage["entity_map"].data.metrics
    assert any(k.startswith("amcs.forward.") for k in m), sorted(m)
    cpt = by_stage["cpt"].data.metrics
    assert cpt["heldout_ppl_after"] < cpt["heldout_ppl_before"], cpt
    assert client.get_registered_model("medxiaohe-cpt").latest_versions, "the CPT model is registered"
    assert client.get_metric_history(by_stage["cpt"].info.run_id, "train.loss"), "a loss curve"
    assert "cpt_order/order_map.png" in {a.path for a in client.list_artifacts(by_stage["cpt_order"].info.run_id,
                                                                              "cpt_order")}
    progression = by_stage["eval_progression"].data.metrics
    assert any(k.startswith("cpt.") for k in progression) and any(k.startswith("base.") for k in progression), \
        sorted(progression)
    assert any(k.startswith("mid.") for k in progression), sorted(progression)
    mid = by_stage["mid_train"]
    assert client.get_registered_model("medxiaohe-mid").latest_versions, "the mid-training model is registered"
    for key in ("train.loss.phase.1", "train.loss.family.cpt_replay"):
        assert client.get_metric_history(mid.info.run_id, key), key
    mid_data = {a.path for a in client.list_artifacts(by_stage["mid_data"].info.run_id, "mid_data")}
    assert "mid_data/decontamination_report.jsonl" in mid_data, mid_data
    assert any(k.startswith("engines.kg_multihop.rejected_by_gate.") for k in by_stage["mid_data"].data.metrics)
    assert any(k.startswith("sft.") for k in progression), sorted(progression)
    assert client.get_registered_model("medxiaohe-sft").latest_versions, "the SFT model is registered"
    sft = by_stage["sft"]
    assert client.get_metric_history(sft.info.run_id, "train.loss.family.mid_data"), sorted(sft.data.metrics)
    sft_data = by_stage["sft_data"]
    names = {a.path for a in client.list_artifacts(sft_data.info.run_id, "sft_data")}
    assert {"sft_data/coverage_grid.png", "sft_data/coverage_grid.csv"} <= names, names
    m = sft_data.data.metrics
    for src in ("mid_data", "instruct", "pubmedqa"):
        assert m[f"sources.{src}.read"] == m[f"sources.{src}.kept"] + m[f"sources.{src}.rejected"], src
    assert any(k.startswith("consensus.") for k in m), sorted(m)
    eval_sft = next(r for r in children if r.data.tags["stage"] == "eval@sft")
    assert "instruct.prompt_strict" in eval_sft.data.metrics, sorted(eval_sft.data.metrics)
    rl_data = by_stage["rl_data"].data.metrics
    for src in ("sft_mid_data", "kg_conflict"):     # MLflow writes the ledger keys sft:mid_data, kg:conflict so
        assert rl_data[f"sources.{src}.read"] == rl_data[f"sources.{src}.kept"] + rl_data[f"sources.{src}.rejected"]
    rl = by_stage["rl"]
    for key in ("rl.rewards.fused.mean", "rl.rewards.rule.mean", "rl.rewards.safety.mean", "rl.entropy",
                "rl.entropy.bonus_active", "rl.hint.density", "rl.rft.sampled", "heldout.final.mean"):
        assert client.get_metric_history(rl.info.run_id, key), (key, sorted(rl.data.metrics))
    densities = [m.value for m in client.get_metric_history(rl.info.run_id, "rl.hint.density")]
    assert densities[0] > densities[-1], densities          # hints decay over the iterations
    assert client.get_registered_model("medxiaohe-rl").latest_versions, "the RL model is registered"
    assert any(k.startswith("rl_it1.") for k in progression) and any(k.startswith("rl.") for k in progression)


def test_second_run_is_a_dvc_noop(tiny_project: Path):
    before = out_hashes(tiny_project)
    proc = run_in(tiny_project, "python", "-m", "tasks.pipeline", "run")
    # no wall-clock limit here: on a loaded machine a no-op run took 45 s; speed belongs in bench/
    assert "Data and pipelines are up to date" in proc.stdout + proc.stderr
    assert out_hashes(tiny_project) == before
    _, runs = mlflow_runs(sqlite_store(tiny_project))
    assert parent_runs(runs) == []  # no empty parent kept


@pytest.fixture(scope="module")
def relocated(tiny_project: Path) -> Path:
    """The project after the DAG run, copied to another folder (as a reviewer's clone would be)."""
    dest = tiny_project.parent.parent / "elsewhere" / "clone"
    shutil.copytree(tiny_project, dest, symlinks=True)
    return dest


def test_forced_rerun_elsewhere_reproduces_every_output(tiny_project: Path, relocated: Path):
    first = out_hashes(tiny_project)
    run_in(relocated, "python", "-m", "tasks.pipeline", "run", "--force", timeout=2400)
    assert out_hashes(relocated) == first
    _, runs = mlflow_runs(sqlite_store(relocated))
    assert len(parent_runs(runs)) == 1  # the forced run has its own parent


def test_no_output_holds_an_absolute_checkout_path(tiny_project: Path, relocated: Path):
    needles = [str(p).encode() for p in (tiny_project, relocated)]
    hits = []
    for root in (tiny_project, relocated):
        for path in (root / "data").rglob("*"):
            if path.is_file() and any(n in path.read_bytes() for n in needles):
                hits.append(str(path.relative_to(root)))
    assert not hits, hits


def test_editing_a_kg_module_reruns_kg_not_the_entity_stages(tiny_project: Path):
    module = tiny_project / "tasks" / "knowledge_graph" / "relations.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# an edit\n")
        out = run_in(tiny_project, "dvc", "status", "--json").stdout
        changed = set(json.loads(out[out.index("{"):]))
    finally:
        module.write_text(original)
    assert "kg" in changed
    assert not changed & {"collect", "clean", "quality", "entities", "entity_tree", "entity_map"}, changed


def test_cpt_model_loads_with_from_pretrained_and_generates(tiny_project: Path):
    """What cpt saved is a plain HF checkpoint: transformers' Auto classes load it and it answers
    an image + text prompt through its chat template."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_project / "data" / "cpt" / "model"
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    image = Image.fromarray((np.random.default_rng(0).random((96, 128)) * 255).astype("uint8")).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the finding."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[image], text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def replay_image_calls(tools, sample: dict) -> None:
    calls = [c["function"] for m in sample["messages"] for c in (m.get("tool_calls") or [])]
    assert calls, sample["id"]
    for i, c in enumerate(calls):
        assert tools.call(c["name"], c["arguments"], sample["images"][: i + 1]).ref == sample["images"][i + 1]


def test_mid_training_data_replays_and_the_checkpoint_thinks(tiny_project: Path, tmp_path: Path):
    """Every tool call of a kept agentic sample re-executes to the result the sample holds (a real search
    over the same index, real ZOOM / ROTATE over the same images), and the mid checkpoint is marked as
    trained with thinking, so the harness evaluates it with the thinking template. The tiny checkpoint
    cannot read a report, so the tool-effectiveness gate keeps no zoom trajectory here (as on the default
    run); the engine's trajectories over the project's own rendered reports, built without that gate,
    replay instead."""
    from training.cpt_project import in_project

    from tasks.common.config import load_stage_config, resolve
    from tasks.common.io import read_jsonl, shard_paths
    from tasks.mid_synthesis.agentic_image import agentic_image, load_ocr_samples
    from tasks.mid_synthesis.agentic_search import replay_tool_calls
    from tasks.mid_synthesis.image_tools import ImageTools
    from tasks.mid_synthesis.run import MidDataConfig
    from tasks.mid_synthesis.search_tool import SearchTool

    samples = [s for p in shard_paths(tiny_project / "data" / "mid_data" / "samples") for s in read_jsonl(p)]
    search = [s for s in samples if s["family"] == "agentic_search"]
    image = [s for s in samples if s["family"] == "agentic_image"]
    assert search, sorted({s["family"] for s in samples})
    with in_project(tiny_project):
        cfg, _ = load_stage_config("mid_data", MidDataConfig, ["profile=tiny"])
        tool = SearchTool.from_corpus(str(resolve(cfg.corpus_dir)), cfg.search)
        for s in search:
            assert all(replay_tool_calls(s, tool)), s["id"]
        tools = ImageTools(tiny_project, tiny_project / "data" / "mid_data" / "images")
        for s in image:
            replay_image_calls(tools, s)
        built_tools = ImageTools(tiny_project, tmp_path / "images")
        ocr = load_ocr_samples(tiny_project / "data" / "cpt_data" / "samples", limit=20)
        built = agentic_image(ocr, built_tools, cfg.agentic_image)          # no probe: effectiveness unchecked
        assert built.kept and built.read == len(built.kept) + len(built.rejected)
        for s in built.kept:
            replay_image_calls(ImageTools(tiny_project, tmp_path / "images"), s)   # a fresh store: recomputed
    meta = json.loads((tiny_project / "data" / "mid_train" / "model" / "medx_model.json").read_text())
    assert meta["thinking_trained"] is True
    summary = json.loads((tiny_project / "data" / "mid_train" / "summary.json").read_text())
    phases = [int(k) for k in summary["schedule"]["by_phase"] if k != "0"]
    assert phases == sorted(phases) and len(phases) >= 3, summary["schedule"]


def test_review_queue_round_trip_through_the_stage(tiny_project: Path, tmp_path: Path):
    """The human queue for real: the escalated samples the DAG run exported as Label Studio tasks get a
    reviewer's verdict in a Label Studio JSON export, and `sft_data` run again with that file (into another
    folder, leaving the DVC outputs alone) keeps the accepted ones as human-verified and rejects the rest
    with the reviewer's reason; nothing escalated is lost either way."""
    from tasks.common.io import read_jsonl, shard_paths

    tasks = json.loads((tiny_project / "data/sft_data/review_queue/tasks.json").read_text())
    assert tasks, "the tiny run escalates some candidates"
    verdicts = {}
    export = []
    for k, t in enumerate(tasks[:4]):
        verdict = "accept" if k % 2 == 0 else "reject"
        verdicts[t["data"]["sample_id"]] = verdict
        result = [{"from_name": "verdict", "to_name": "question", "type": "choices", "value": {"choices": [verdict]}}]
        export.append({**t, "annotations": [{"id": k + 1, "was_cancelled": False, "result": result}]})
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(export))
    out = tmp_path / "sft_data"
    env = project_env(tiny_project)      # the copy's environment, its MLflow store swapped for a scratch one
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               MEDX_MLFLOW_ARTIFACTS=(tmp_path / "artifacts").as_uri())
    run_in(tiny_project, "python", "-m", "tasks.sft_data", "profile=tiny", f"out_dir={out}", f"review_labels={labels}",
           env=env)
    samples = [s for p in shard_paths(out / "samples") for s in read_jsonl(p)]
    rejected = [r for p in shard_paths(out / "rejected") for r in read_jsonl(p)]
    # a rewritten variant of an accepted sample is human-verified too (its answer is the reviewed one)
    human = {s["meta"].get("rewrite_of") or s["id"] for s in samples if s["meta"]["accuracy"] == "human"}
    accepted = {i for i, v in verdicts.items() if v == "accept"}
    # an accepted sample may still be cut by the coverage grid or decontamination, never lost
    dropped_later = {r["item"]["id"] for r in rejected if r["gate"] in ("coverage", "decontamination")}
    assert accepted - dropped_later <= human and human <= accepted
    by_reviewer = {r["item"]["id"] for r in rejected if r["reason"] == "rejected_by_reviewer"}
    assert by_reviewer == {i for i, v in verdicts.items() if v == "reject"}
    before = json.loads((tiny_project / "data/sft_data/summary.json").read_text())["review_queue"]
    after = json.loads((out / "summary.json").read_text())["review_queue"]
    assert after["awaiting_review"] == before["awaiting_review"] - len(verdicts)


def test_a_failed_stage_fails_the_dag_run_and_the_mlflow_parent(dag_run, services, tmp_path: Path):
    """Last in the module (it changes the copy's params, then puts them back): with its source data
    gone, `collect` fails on every try; the DAG run ends failed, the parent run FAILED."""
    root, first = dag_run
    params_path = root / "params.yaml"
    original = params_path.read_text()
    empty = tmp_path / "no_data"
    empty.mkdir()
    try:
        params_path.write_text(yaml.safe_dump({**yaml.safe_load(original), "data_root": str(empty)}, sort_keys=False))
        api = services.api()
        run_id = api.trigger(DAG_ID)
        run = api.wait(DAG_ID, run_id, timeout_s=900)
        states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG_ID, run_id)}
        collect_tries = api.task_tries(DAG_ID, run_id, task_id("collect"))
    finally:
        params_path.write_text(original)
    assert run["state"] == "failed", states
    assert states["collect"] == "failed" and len(collect_tries) == 2, collect_tries   # retried, then failed
    assert states["clean"] == "upstream_failed" and states["close_parent_run"] == "failed", states
    client, runs = mlflow_runs(services.mlflow_url)
    parent = next(r for r in parent_runs(runs) if r.data.tags.get("airflow_dag_run_id") == run_id)
    assert parent.info.status == "FAILED"
    assert first["run_id"] != run_id
