"""Rubric judges for long-form answers: the local lexical judge, the LLM judge through the project's
client against a scripted endpoint (good, malformed and failing replies) and against the real
llama.cpp + SmolLM2 server (accounting only: a 135M model is no grader)."""

from __future__ import annotations

import json

import pytest
from scripted_endpoint import ScriptedEndpoint, scripted

from eval.benchmarks import Item, byo_spec
from eval.judge import LLMRubricJudge, LocalRubricJudge, key_points_of, rubric_score
from eval.models import PredictionsModel
from eval.runner import RunInterrupted, RunSettings, evaluate
from tasks.llm.client import LLMClient, LLMConfig, LLMError

REPORT = Item("iu", "r1", "longform", "longform", "Write the findings.",
              ("The heart size is normal. The lungs are clear. No pleural effusion.",))


def test_rubric_arithmetic_and_default_key_points():
    assert rubric_score(2, 1, 3, 0.5) == pytest.approx(0.5)
    assert rubric_score(0, 3, 3, 0.5) == 0.0 and rubric_score(5, 0, 3, 0.5) == 1.0
    assert key_points_of(REPORT) == ["The heart size is normal.", "The lungs are clear.", "No pleural effusion."]


def test_local_judge_rewards_coverage_and_penalizes_unsupported_statements():
    judge = LocalRubricJudge()
    full = judge.judge(REPORT, "Normal heart size. Lungs clear. There is no pleural effusion.")
    assert (full.covered, full.unsupported, full.score) == (3, 0, 1.0)
    hallucinated = judge.judge(REPORT, "Normal heart size. Large right hilar mass with rib destruction.")
    assert hallucinated.covered == 1 and hallucinated.unsupported == 1
    assert hallucinated.score == pytest.approx((1 - 0.5) / 3)


def test_llm_judge_parses_verdicts_and_counts_bad_replies(tmp_path):
    replies = iter(['{"covered": [1, 3], "unsupported": ["a mass"]}',
                    'Sure! Here is my grading: covered 1 and 2',               # no JSON
                    '{"covered": [7], "unsupported": []}',                    # key point out of range
                    '```json\n{"covered": ["2"], "unsupported": []}\n```'])
    with scripted(lambda m: (200, next(replies)), tmp_path) as (client, requests):
        judge = LLMRubricJudge(client, penalty=0.5)
        verdicts = [judge.judge(REPORT, f"candidate text {i}") for i in range(4)]   # distinct: no cache hits
    assert [(v.score, v.failure) for v in verdicts] == [
        (pytest.approx((2 - 0.5) / 3), None), (0.0, "judge_unparsed"), (0.0, "judge_unparsed"),
        (pytest.approx(1 / 3), None)]
    body = requests[0]
    assert body["response_format"]["type"] == "json_object"
    prompt = body["messages"][-1]["content"]
    assert "1. The heart size is normal." in prompt and "candidate text 0" in prompt


def test_longform_benchmark_with_llm_judge_resumes_after_judge_failure(tmp_path, data_root):
    rows = [{"id": i, "question": "Write the findings.", "reference": "No acute disease. Heart normal."}
            for i in range(4)]
    bench = tmp_path / "reports.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"benchmark": "reports", "id": str(i), "output": "No acute disease."}) + "\n"
                             for i in range(4)))
    spec = byo_spec("reports", str(bench), "longform")
    state = {"ok": 2}

    def reply(messages):
        state["ok"] -= 1
        return (200, '{"covered": [1], "unsupported": []}') if state["ok"] >= 0 else (503, "")

    with ScriptedEndpoint(reply) as ep, LLMClient(LLMConfig(model="m", cache_dir=None, max_retries=0),
                                                  base_url=ep.url) as client:
        judge = LLMRubricJudge(client)
        settings = RunSettings(batch_size=2)
        with pytest.raises(RunInterrupted, match="judge"):
            evaluate(PredictionsModel(preds), [spec], data_root, tmp_path / "w", settings, judge=judge)
        state["ok"] = 100
        res = evaluate(PredictionsModel(preds), [spec], data_root, tmp_path / "w", settings, judge=judge)
    assert len(res.rows) == 4 and {r["score"] for r in res.rows} == {0.5}
    assert all(r["metrics"]["key_point_recall"] == 0.5 for r in res.rows)
    assert len(ep.requests) == 3 + 2           # 2 judged, 1 failed; then only the 2 left


def test_llm_judge_errors_propagate(tmp_path):
    with scripted(lambda m: (500, ""), tmp_path) as (client, _), pytest.raises(LLMError):
        LLMRubricJudge(client).judge(REPORT, "x")


@pytest.mark.llm_server
def test_llm_judge_on_the_local_server(local_llm):
    with LLMClient(local_llm) as client:
        judge = LLMRubricJudge(client, max_tokens=96)
        verdicts = [judge.judge(REPORT, c) for c in ("The heart is normal and the lungs are clear.",
                                                    "Large mass in the right lung.")]
        first = client.stats["requests"]
        again = judge.judge(REPORT, "Large mass in the right lung.")
        assert client.stats["requests"] == first                    # served from the response cache
    print("SmolLM2 judge verdicts:", [(v.score, v.failure, v.raw[:120]) for v in verdicts])
    for v in verdicts:
        assert 0.0 <= v.score <= 1.0 and v.method == "llm" and v.key_points == 3
        assert v.failure in (None, "judge_unparsed") and (v.failure is None or v.score == 0.0)
    assert (again.score, again.failure) == (verdicts[1].score, verdicts[1].failure)


def test_stage_llm_judge_uses_the_runners_client(tmp_path, data_root):
    """judge.method=llm through the `eval` stage: the runner opens the `llm:` client (here a scripted
    endpoint as llm.base_url), the judge grades with it, and its request counts reach MLflow only."""
    import mlflow

    from tasks import eval as eval_stage
    from tasks.common.stage import main
    from tasks.common.tracking import EXPERIMENT

    bench = tmp_path / "reports.jsonl"
    bench.write_text("".join(json.dumps({"id": i, "question": "Write the findings.",
                                         "reference": "No acute disease. Heart normal."}) + "\n" for i in range(3)))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"benchmark": "reports", "id": str(i), "output": f"No acute disease {i}."})
                             + "\n" for i in range(3)))
    with ScriptedEndpoint(lambda m: (200, '{"covered": [1], "unsupported": []}')) as ep:
        summary = main(eval_stage.STAGE, [
            "checkpoint=judged", f"predictions={preds}", "benchmarks=[]", "judge.method=llm",
            f"byo.reports={{path: {bench}, family: longform, category: medical_report}}",
            f"out_root={tmp_path / 'eval'}", f"work_root={tmp_path / 'work'}", f"data_root={data_root}",
            f"llm.base_url={ep.url}", "llm.model=m", "llm.cache_dir=", "llm.max_retries=0"])
    assert len(ep.requests) == 3 and summary["benchmarks"]["reports"]["family"] == "longform"
    metrics = json.loads((tmp_path / "eval" / "judged" / "metrics.json").read_text())
    assert metrics["benchmarks"]["reports"]["generate"]["score"] == pytest.approx(0.5)
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.stage = 'eval@judged'",
                                output_format="list")
    assert run.data.metrics["llm_requests"] == 3 and run.data.params["llm.base_url"] == ep.url
