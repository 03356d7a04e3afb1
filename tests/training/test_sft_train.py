"""sft on a tiny project: loss per source, coverage repeats trained as repeats, held-out groups that keep a
question and its rewritten copy on one side, the thinking-trained checkpoint; and the schedule on its own."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import mlflow
import pytest
from training.cpt_project import in_project
from vlm_fixtures import topic_sentence, write_jsonl

from tasks.common.io import read_jsonl
from tasks.common.stage import main
from tasks.sft_synthesis.samples import sft_sample, with_messages
from tasks.sft_training.config import SFTScheduleParams
from tasks.sft_training.schedule import build_schedule


def sft_samples(n: int = 5) -> list[dict]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        q, a = topic_sentence(rng, "cardio", 6) + "?", topic_sentence(rng, "cardio", 4)
        kg = sft_sample("kg_qa", [f"kg-{i}"], [{"role": "user", "content": q},
                                              {"role": "assistant", "content": a}],
                        answer=a, answer_kind="fill", accuracy="consensus")
        inst = sft_sample("instruct", [f"mq-{i}"], [
            {"role": "user", "content": q + " Answer in at most 20 words."},
            {"role": "assistant", "reasoning_content": "Constraint: at most 20 words. The reply has 4.", "content": a}],
            answer=a, answer_kind="open", accuracy="code", coverage_repeats=2 if i == 0 else 0)
        out += [kg, inst]
        if i < 2:    # a rewritten prompt: one group with its original
            out.append(with_messages(kg, [{"role": "user", "content": "Could you say: " + q},
                                          kg["messages"][1]], rewrite_of=kg["id"], rewriter="local"))
    return out


def test_schedule_holds_out_whole_groups_and_repeats_coverage_samples():
    samples = sft_samples()
    entries, heldout, shadowed = build_schedule(samples, SFTScheduleParams(heldout_per_source=2, epochs=2), seed=7)
    held = {s["id"] for s in heldout}
    trained = {e["id"] for e in entries}
    assert not held & trained
    # kg-i and its instruction twin share no source here: nothing is shadowed; a shared source is, below
    assert shadowed == []
    # a held-out kg question's rewritten copy is not trained either
    variants = {s["id"]: s["meta"]["rewrite_of"] for s in samples if s["meta"].get("rewrite_of")}
    assert all(v not in trained for v, orig in variants.items() if orig in held)
    assert all(s["meta"].get("rewrite_of") is None for s in heldout)          # only originals are measured
    assert Counter(s["family"] for s in heldout) == {"kg_qa": 2, "instruct": 2}
    # per epoch: every trained sample once, plus its coverage repeats
    repeats = {s["id"]: s["meta"].get("coverage_repeats", 0) for s in samples}
    per_epoch = Counter(e["id"] for e in entries if e["epoch"] == 0)
    assert per_epoch == {i: 1 + repeats[i] for i in trained}
    assert [e["position"] for e in entries] == list(range(len(entries)))
    assert build_schedule(samples, SFTScheduleParams(heldout_per_source=2, epochs=2), seed=7)[0] == entries
    assert build_schedule(samples, SFTScheduleParams(heldout_per_source=2, epochs=2), seed=8)[0] != entries


def test_a_sample_built_on_a_held_out_source_is_not_trained():
    """The instruction twin of a held-out KG question (same source id, another pool) is set aside."""
    samples = sft_samples()
    twins = []
    for s in samples:
        if s["family"] == "kg_qa" and not s["meta"].get("rewrite_of"):
            twins.append(sft_sample("instruct", list(s["source_ids"]), [
                {"role": "user", "content": s["messages"][0]["content"] + " Use at most 30 words."},
                s["messages"][1]], answer=s["meta"]["answer"], answer_kind="open", accuracy="code"))
    entries, heldout, shadowed = build_schedule(samples + twins, SFTScheduleParams(heldout_per_source=2), seed=7)
    held_sources = {x for s in heldout for x in s["source_ids"]}
    trained = {e["id"] for e in entries}
    by_id = {s["id"]: s for s in samples + twins}
    assert not any(held_sources & set(by_id[i]["source_ids"]) for i in trained)
    assert shadowed and all(held_sources & set(s["source_ids"]) for s in shadowed)
    assert len(shadowed) == 2 and {s["family"] for s in shadowed} == {"instruct"}    # the two held-out kg twins


@pytest.fixture
def sft_project(ordered_project, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ordered_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    write_jsonl(root / "data" / "sft_data" / "samples" / "part-00000.jsonl", sft_samples())
    return root


def test_sft_trains_every_source_and_marks_thinking(sft_project):
    import tasks.sft

    overrides = ["base_model_dir=data/base_model/model", "encode.max_tokens=96", "train.batch_size=4",
                 "train.threads=1", "train.logging_steps=1", "train.save_steps=0", "schedule.heldout_per_source=1",
                 "mlflow.registered_name=tiny-sft", "eval_batch_size=4"]
    with in_project(sft_project):
        summary = main(tasks.sft.STAGE, overrides)
    out = sft_project / "data" / "sft"
    schedule = read_jsonl(out / "schedule.jsonl")
    assert summary["read"] == summary["kept"] + summary["rejected"] == len(schedule)
    assert summary["heldout"] == 2 and set(summary["heldout_loss_by_source"]) == {"kg_qa", "instruct"}
    assert summary["samples_read"] == len(sft_samples()) and summary["shadowed_by_heldout"] == 0
    assert summary["schedule"]["by_source"] == dict(Counter(e["family"] for e in schedule))
    trace = read_jsonl(out / "order_trace.jsonl")
    assert [i for r in trace for i in r["ids"]] == [e["id"] for e in schedule]     # the order trained is the schedule
    assert {"family.kg_qa", "family.instruct"} <= set(summary["train_loss_by_group"])
    meta = json.loads((out / "model" / "medx_model.json").read_text())
    assert meta["thinking_trained"] is True and meta["stage"] == "sft"
    client = mlflow.MlflowClient()
    [run] = client.search_runs(client.get_experiment_by_name("medxiaohe-pipeline").experiment_id,
                               filter_string="tags.stage = 'sft'")
    assert client.get_metric_history(run.info.run_id, "train.loss.family.instruct")
