"""mid_train on a tiny project: the four phases in order, the CPT replay warm-up, assistant-only loss
per family and phase, the thinking-trained checkpoint, and the schedule on its own."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import mlflow
import pytest
from training.cpt_project import in_project
from vlm_fixtures import save_png, topic_sentence, write_jsonl

from tasks.common.io import read_jsonl
from tasks.common.stage import main
from tasks.mid_synthesis.samples import image_part, mid_sample, text_part, tool_call
from tasks.mid_training.config import CurriculumParams
from tasks.mid_training.schedule import build_schedule

SEARCH = {"type": "function", "function": {"name": "search", "description": "search the corpus",
                                           "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}


def mid_samples(root, n: int = 6) -> list[dict]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        q, a = topic_sentence(rng, "cardio", 6) + "?", topic_sentence(rng, "cardio", 3)
        chain = " ".join(topic_sentence(rng, "cardio", 8) for _ in range(2))
        out.append(mid_sample("kg_paths", 1, [f"kg-{i}"], [{"role": "user", "content": q},
                   {"role": "assistant", "reasoning_content": chain, "content": a}], answer=a, answer_kind="fill"))
        out.append(mid_sample("kg_multihop", 2, [f"hop-{i}"], [{"role": "user", "content": q + " (multi-hop)"},
                   {"role": "assistant", "reasoning_content": chain + " then more.", "content": a}],
                   answer=a, answer_kind="fill"))
        ref = save_png(root / "images" / f"mid-{i}.png", (56, 56), (30, 30, 200))
        ref["path"] = str(Path(ref["path"]).relative_to(root))
        out.append(mid_sample("visual_cot", 3, [f"img-{i}"], [
            {"role": "user", "content": [image_part(), text_part("Which modality is this?")]},
            {"role": "assistant", "reasoning_content": "A grey cross-section: computed tomography.", "content": "CT"}],
            answer="CT", answer_kind="fill", images=[ref]))
        out.append(mid_sample("agentic_search", 4, [f"doc-{i}"], [
            {"role": "user", "content": q},
            {"role": "assistant", "reasoning_content": "Search first.", "content": "",
             "tool_calls": [tool_call("search", {"query": q[:30]})]},
            {"role": "tool", "name": "search", "content": "[1] " + chain},
            {"role": "assistant", "reasoning_content": "The passage answers it.", "content": a}],
            answer=a, answer_kind="fill", tools=[SEARCH]))
    return out


@pytest.fixture
def mid_project(ordered_project, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ordered_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    write_jsonl(root / "data" / "mid_data" / "samples" / "part-00000.jsonl", mid_samples(root))
    return root


def test_mid_train_runs_the_phases_in_order_with_replay_and_marks_thinking(mid_project):
    import tasks.mid_train

    overrides = ["base_model_dir=data/base_model/model", "encode.max_tokens=160", "train.batch_size=4",
                 "train.threads=1", "train.logging_steps=2", "train.save_steps=0", "curriculum.heldout_per_family=1",
                 "mlflow.registered_name=tiny-mid", "eval_batch_size=4"]
    with in_project(mid_project):
        summary = main(tasks.mid_train.STAGE, overrides)
    out = mid_project / "data" / "mid_train"
    schedule = read_jsonl(out / "schedule.jsonl")
    phases = [e["phase"] for e in schedule if not e["replay"]]
    assert phases == sorted(phases) and set(phases) == {1, 2, 3, 4}          # the curriculum's order
    assert summary["schedule"]["cpt_replay"] > 0
    assert summary["schedule"]["reasoning_share_first_quarter"] < summary["schedule"]["reasoning_share_last_quarter"]
    assert summary["read"] == summary["kept"] + summary["rejected"] and summary["heldout"] == 4
    trace = read_jsonl(out / "order_trace.jsonl")
    assert [i for r in trace for i in r["ids"]] == [e["id"] for e in schedule]
    losses = summary["train_loss_by_group"]
    assert {f"family.{f}" for f in ("kg_paths", "kg_multihop", "visual_cot", "agentic_search", "cpt_replay")} <= set(losses)
    assert {"phase.1", "phase.2", "phase.3", "phase.4"} <= set(losses)
    assert set(summary["heldout_loss_by_family"]) == {"kg_paths", "kg_multihop", "visual_cot", "agentic_search"}
    meta = json.loads((out / "model" / "medx_model.json").read_text())
    assert meta["thinking_trained"] is True and meta["stage"] == "mid_train"

    client = mlflow.MlflowClient()
    [run] = client.search_runs(client.get_experiment_by_name("medxiaohe-pipeline").experiment_id,
                               filter_string="tags.stage = 'mid_train'")
    assert client.get_metric_history(run.info.run_id, "train.loss.phase.1")
    assert client.get_metric_history(run.info.run_id, "train.loss.family.agentic_search")
    assert run.data.tags["registered_version"] == "1"


def test_assistant_only_loss_ignores_tool_output(mid_project):
    """The tool turn's tokens carry no loss: the model learns to call the tool, not to predict its output."""
    from models.chat_template import build_chat_template
    from models.config import SpecialTokens
    from tasks.common.config import project_root
    from tasks.training.encode import EncodeParams, SampleEncoder
    from tasks.training.model_io import load_model

    with in_project(mid_project):
        vlm = load_model(mid_project / "data" / "base_model" / "model")
        # the project's template (models/chat_template.py): reasoning, tool calls and generation marks
        vlm.processor.tokenizer.chat_template = build_chat_template(SpecialTokens())
        enc = SampleEncoder(vlm.processor, EncodeParams(max_tokens=4096), project_root(), require_assistant_mask=True)
        sample = next(s for s in mid_samples(mid_project, 1) if s["family"] == "agentic_search")
        e = enc.encode(sample)
    tok = vlm.processor.tokenizer
    learned = tok.decode(e.input_ids[e.assistant_mask])
    assert "search" in learned and "Search first." in learned            # the call and the reasoning
    assert "[1]" not in learned                                          # the tool's output is context
    assert "<tools>" in tok.decode(e.input_ids)                          # the schemas reach the template


def test_schedule_warm_up_share_rises_and_replay_fills_the_rest():
    samples = [{"id": f"s{i:03d}", "phase": 1 + i % 4, "family": "abcd"[i % 4]} for i in range(200)]
    p = CurriculumParams(start_share=0.5, end_share=0.9, heldout_per_family=2, fusion_replay=0.0)
    entries, heldout = build_schedule(samples, [f"r{i}" for i in range(500)], p, seed=7)
    assert len(heldout) == 8 and not {h["id"] for h in heldout} & {e["id"] for e in entries}
    reasoning = [e for e in entries if not e["replay"]]
    assert len(reasoning) == 192
    # mean share (0.5 + 0.9) / 2 = 0.7: 192 / 0.7 = 274.3 entries, so 82 replay entries
    assert len(entries) - len(reasoning) == 82
    n = len(entries)
    first = sum(not e["replay"] for e in entries[: n // 4]) / (n // 4)
    last = sum(not e["replay"] for e in entries[-(n // 4):]) / (n // 4)
    assert 0.5 <= first < 0.65 and 0.8 < last <= 0.95
    assert [e["position"] for e in entries] == list(range(n))
    assert build_schedule(samples, [f"r{i}" for i in range(500)], p, seed=7)[0] == entries
