"""Endpoint mode against the project's real llama.cpp server with SmolLM2-135M-Instruct: every item
is answered, parsed or counted as a parse failure, and a re-run is served from the response cache
with identical scores. Asserts the protocol's accounting, never the tiny model's medicine."""

from __future__ import annotations

import pytest

from eval.benchmarks import REGISTRY
from eval.models import EndpointModel
from eval.report import write_report
from eval.runner import RunSettings, evaluate


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
