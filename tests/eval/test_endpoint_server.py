"""Endpoint mode against the project's real llama.cpp server with SmolLM2-135M-Instruct: every item
is answered, parsed or counted as a parse failure, and a re-run is served from the response cache
with identical scores. Asserts the protocol's accounting, never the tiny model's medicine."""

from __future__ import annotations

import pytest

from eval.benchmarks import REGISTRY
from eval.models import EndpointModel, local_endpoint_identity
from eval.report import write_report
from eval.runner import RunSettings, evaluate
from tasks.llm.client import LLMConfig


@pytest.mark.llm_server
def test_endpoint_mode_on_the_local_server(local_llm, data_root, tmp_path):
    specs = [REGISTRY["medqa"], REGISTRY["pubmedqa"]]
    settings = RunSettings(modes=("generate", "loglik"), limit=2, max_new_tokens=16, batch_size=2)
    model = EndpointModel(local_llm)
    res = evaluate(model, specs, data_root, tmp_path / "a", settings)
    assert len(res.rows) == 4 and {r["mode"] for r in res.rows} == {"generate"}   # no loglik via chat API
    requests = model.client.stats["requests"]
    assert requests == 4 and model.client.stats["failures"] == 0
    metrics, _ = write_report(res, tmp_path / "report")
    for name in ("medqa", "pubmedqa"):
        g = metrics["benchmarks"][name]["generate"]
        assert g["n"] == 2 and 0 <= g["score"] <= 1 and g["parse_failures"] == sum(g["failure_reasons"].values())
    print("SmolLM2 outputs:", [(r["benchmark"], r["output"][:60], r["parsed"], r["failure"]) for r in res.rows])

    again = EndpointModel(local_llm)
    res2 = evaluate(again, specs, data_root, tmp_path / "b", settings)
    assert again.client.stats["requests"] == 0 and again.client.stats["cache_hits"] == 4
    assert [(r["id"], r["score"], r["output"]) for r in res2.rows] == [(r["id"], r["score"], r["output"])
                                                                      for r in res.rows]


@pytest.mark.llm_server
def test_stage_with_endpoint_local_evaluates_the_server_the_runner_started(data_root, tmp_path):
    """`endpoint=local` through the stage runner: the runner starts the project's server (uses_llm),
    the endpoint adapter talks to it; request counts go to MLflow, never into summary.json, so a re-run
    answered from the response cache writes the same files."""
    import mlflow

    from tasks import eval as eval_stage
    from tasks.common.stage import main
    from tasks.common.tracking import EXPERIMENT

    out = tmp_path / "eval" / "smol"
    args = ["checkpoint=smol", "endpoint=local", "benchmarks=[pubmedqa]", "limit=2", "modes=[generate]",
            "max_new_tokens=16", f"data_root={data_root}", f"out_root={tmp_path / 'eval'}",
            f"work_root={tmp_path / 'work'}", f"llm.cache_dir={tmp_path / 'cache'}",
            f"llm.server.log_file={tmp_path / 'server.log'}", "llm.seed=1234", "instruct.enabled=false"]
    summary = main(eval_stage.STAGE, args)
    # known by the model file the server serves, not by its port (another one at the second run)
    assert summary["model"] == {"adapter": "endpoint", "model": "smollm2-135m-instruct", "vision": False,
                                "endpoint": local_endpoint_identity(LLMConfig()), "revision": ""}
    assert summary["adapter_stats"] == {}
    first = {n: (out / n).read_bytes() for n in ("items.jsonl", "metrics.json", "summary.json", "report.md")}
    main(eval_stage.STAGE, [*args, f"work_root={tmp_path / 'work2'}"])          # not resumed: from the cache
    assert {n: (out / n).read_bytes() for n in first} == first
    newest, oldest = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.stage = 'eval@smol'",
                                        output_format="list")
    assert oldest.data.metrics["endpoint.requests"] == 2 and newest.data.metrics["endpoint.cache_hits"] == 2
    assert newest.data.params["llm.base_url"] == "local"
