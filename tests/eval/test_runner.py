"""The runner: per-item results written as they come, resume after an endpoint that fails mid-run
(answered items are not asked again), bad model outputs scored as counted failures, predictions
files, text-only models on image benchmarks, and fingerprint checks on resume."""

from __future__ import annotations

import json
import threading

import pytest
from scripted_endpoint import ScriptedEndpoint

from eval.benchmarks import REGISTRY
from eval.models import EndpointModel, PredictionsModel
from eval.runner import ResumeMismatch, RunInterrupted, RunSettings, evaluate
from tasks.llm.client import LLMConfig

MEDQA = [REGISTRY["medqa"]]


def endpoint_model(url, vision=False):
    cfg = LLMConfig(model="m", cache_dir=None, max_retries=0, timeout_s=20)
    return EndpointModel(cfg, base_url=url, vision=vision, concurrency_batch=4)


def read_rows(path):
    return [json.loads(line) for line in open(path / "items.jsonl")]


def test_predictions_file_with_bad_outputs(data_root, tmp_path):
    settings = RunSettings(modes=("generate",), limit=8, seed=3)
    # which items the slice holds, and their gold letters, from a run with no predictions at all
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    first = evaluate(PredictionsModel(empty), MEDQA, data_root, tmp_path / "w0", settings)
    items = first.selected["medqa"]
    assert {r["failure"] for r in first.rows} == {"missing_prediction"}
    gold = [it.answer for it in items]
    wrong = [next(k for k, _ in it.options if k != it.answer) for it in items]
    outputs = [
        f"Answer: {gold[0]}",                                           # right
        f"<think>Option {wrong[1]} fits... or not</think>Answer: {gold[1]}",   # reasoning stripped
        "",                                                             # empty
        "word " * 300_000 + f"\nAnswer: {gold[3]}",                      # gigantic, answer at the end
        f"Answer: {gold[4]} or {wrong[4]}",                             # several letters
        "<think>Let me weigh each option carefully. A seems",           # only reasoning, cut off
        f"La respuesta correcta es {gold[6]}",                          # another language
        "患者需要进一步检查。",                                            # another language, no answer
    ]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"benchmark": "medqa", "id": it.id, "output": o}) + "\n"
                             for it, o in zip(items, outputs)) + json.dumps({"benchmark": "medqa", "id": "nope",
                                                                             "output": "A"}) + "\n" + "{bad\n")
    model = PredictionsModel(preds)
    res = evaluate(model, MEDQA, data_root, tmp_path / "w1", settings)
    by_id = {r["id"]: r for r in res.rows}
    got = [(by_id[it.id]["score"], by_id[it.id]["failure"]) for it in items]
    assert got == [(1.0, None), (1.0, None), (0.0, "empty"), (1.0, None), (0.0, "multiple_answers"),
                   (0.0, "only_reasoning"), (1.0, None), (0.0, "no_answer")]
    giant = by_id[items[3].id]
    assert giant["output_chars"] > 1_000_000 and len(giant["output"]) < 3000     # stored cut, scored whole
    assert model.unmatched() == 1 and model.bad_lines == 1
    assert len(res.rows) == 8 and all(r["mode"] == "generate" for r in res.rows)


def test_endpoint_failing_mid_run_resumes_without_re_asking(data_root, tmp_path):
    settings = RunSettings(modes=("generate",), limit=10, batch_size=4, seed=5)
    state = {"healthy": 6}
    lock = threading.Lock()

    def reply(messages):
        with lock:
            state["healthy"] -= 1
            ok = state["healthy"] >= 0
        return (200, "Answer: A") if ok else (500, "")

    work = tmp_path / "run"
    with ScriptedEndpoint(reply) as ep:
        with pytest.raises(RunInterrupted, match="run again to resume"):
            evaluate(endpoint_model(ep.url), MEDQA, data_root, work, settings)
        saved = read_rows(work)
        assert len(saved) == 6 and len(ep.requests) == 8       # batch 1: 4 ok; batch 2: 2 ok, 2 failed
        state["healthy"] = 10**6                              # the endpoint recovers
        asked_before = {r["messages"][-1]["content"] for r in ep.requests[:6]}
        res = evaluate(endpoint_model(ep.url), MEDQA, data_root, work, settings)
        resumed = ep.requests[8:]
        assert len(resumed) == 4                               # only the unanswered items
        assert not asked_before & {r["messages"][-1]["content"] for r in resumed}
        assert len(res.rows) == 10 and {r["parsed"] for r in res.rows} == {"A"}
        clean = evaluate(endpoint_model(ep.url), MEDQA, data_root, tmp_path / "clean", settings)
    assert [(r["id"], r["score"]) for r in res.rows] == [(r["id"], r["score"]) for r in clean.rows]


def test_torn_line_is_asked_again_and_fingerprint_is_checked(data_root, tmp_path):
    settings = RunSettings(modes=("generate",), limit=3)
    with ScriptedEndpoint(lambda m: (200, "B")) as ep:
        evaluate(endpoint_model(ep.url), MEDQA, data_root, tmp_path, settings)
        lines = (tmp_path / "items.jsonl").read_text().splitlines()
        (tmp_path / "items.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])   # killed mid-write
        n = len(ep.requests)
        res = evaluate(endpoint_model(ep.url), MEDQA, data_root, tmp_path, settings)
        assert len(ep.requests) == n + 1 and len(res.rows) == 3
        thinking = RunSettings(modes=("generate",), limit=3, style="thinking")
        with pytest.raises(ResumeMismatch, match="another model/settings"):
            evaluate(endpoint_model(ep.url), MEDQA, data_root, tmp_path, thinking)
        res = evaluate(endpoint_model(ep.url), MEDQA, data_root, tmp_path, thinking, fresh=True)
        assert len(res.rows) == 3 and "<think>" in ep.requests[-1]["messages"][-1]["content"]
        # the stage's mode: a checkpoint retrained under the same name starts over by itself
        n = len(ep.requests)
        res = evaluate(endpoint_model(ep.url), MEDQA, data_root, tmp_path, settings, restart_on_mismatch=True)
        assert len(res.rows) == 3 and len(ep.requests) == n + 3


def test_text_only_endpoint_skips_image_items_and_vision_endpoint_sends_them(data_root, tmp_path):
    settings = RunSettings(modes=("generate", "loglik"), limit=3)
    with ScriptedEndpoint(lambda m: (200, "yes")) as ep:
        res = evaluate(endpoint_model(ep.url), [REGISTRY["vqa_rad"]], data_root, tmp_path / "a", settings)
        assert res.rows == [] and [s["reason"] for s in res.skipped] == ["model_lacks_vision"] * 3
        assert ep.requests == []
        res = evaluate(endpoint_model(ep.url, vision=True), [REGISTRY["vqa_rad"]], data_root, tmp_path / "b",
                       settings)
        content = ep.requests[0]["messages"][-1]["content"]
        # sized by models.images.load_image (the training loader), sent lossless
        assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/png;base64,")
        assert content[1]["type"] == "text" and len(res.rows) == 3     # no loglik through a chat endpoint
