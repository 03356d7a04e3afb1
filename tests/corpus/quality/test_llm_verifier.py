"""LLMVerifier against the real llama.cpp + SmolLM2 server. SmolLM2-135M is too small to judge
quality (ARCHITECTURE.md "LLM roles"), so these tests assert the accounting -- every text gets a
label or a recorded failure -- never the model's judgment."""

from __future__ import annotations

import json
import random

import pytest
from scripted_endpoint import scripted

from tasks.corpus.quality.degrade import DEGRADERS
from tasks.corpus.quality.verifiers import REPAIR, LLMVerifier, LLMVerifierParams
from tasks.llm.client import LLMClient


def texts(medquad) -> list[str]:
    rng = random.Random(0)
    return medquad[:2] + [DEGRADERS["word_shuffle"](medquad[2], rng),
                          DEGRADERS["boilerplate"](medquad[3], rng)]


def check_accounting(v: LLMVerifier, labels: list, n: int) -> None:
    s = v.stats
    assert len(labels) == n and set(labels) <= {"high", "low", None}
    assert s["verified"] == n
    assert s["high"] == labels.count("high") and s["low"] == labels.count("low")
    assert s["failed"] == labels.count(None) == len(v.failures)
    assert s["high"] + s["low"] + s["failed"] == n
    assert s["parsed_first"] + s["parsed_after_repair"] == s["high"] + s["low"]
    assert s["parse_failures"] + s["request_failures"] == s["failed"]
    for f in v.failures:
        assert f["kind"] in ("unparseable", "request_failed") and "raw" in f


@pytest.mark.llm_server
def test_llm_verifier_constrained_json(local_llm_quality, medquad):
    with LLMClient(local_llm_quality) as client:
        v = LLMVerifier(client, LLMVerifierParams(max_chars=300, constrained_json=True))
        batch = texts(medquad)
        labels = v.verify(batch)
        check_accounting(v, labels, len(batch))
        # grammar-constrained decoding: every reply parses on the first try
        assert v.stats["parsed_first"] == len(batch)
        assert client.stats["requests"] - client.stats["retries"] == len(batch)
        again = LLMVerifier(client, LLMVerifierParams(max_chars=300)).verify(batch)
        assert again == labels and client.stats["cache_hits"] == len(batch)   # re-run is free


@pytest.mark.llm_server
def test_llm_verifier_free_text_records_failures(local_llm_quality, medquad):
    with LLMClient(local_llm_quality) as client:
        v = LLMVerifier(client, LLMVerifierParams(max_chars=300, constrained_json=False))
        batch = texts(medquad)
        labels = v.verify(batch)
        check_accounting(v, labels, len(batch))
        repaired = len(batch) - v.stats["parsed_first"]
        # one repair turn per unparseable first reply, never more (transport retries, e.g. a
        # timeout on a loaded machine, are attempts of the same request)
        assert client.stats["requests"] - client.stats["retries"] == len(batch) + repaired
        assert v.stats["parsed_after_repair"] + v.stats["parse_failures"] == repaired


@pytest.mark.llm_server
def test_stage_with_llm_verifier_on_local_server(clean_dir, tmp_path):
    import tasks.quality as stage
    from tasks.common.stage import main

    out = tmp_path / "quality"
    summary = main(stage.STAGE, [f"in_dir={clean_dir}", f"out_dir={out}", "verifier=llm", "seed_size=300",
                          "holdout_size=8", "pool_sample_per_round=4", "max_rounds=1",
                          "llm_verifier.max_chars=300", "llm.base_url=local",
                          f"llm.cache_dir={tmp_path / 'cache'}",
                          f"llm.server.log_file={tmp_path / 'server.log'}"])
    assert summary["read"] == summary["kept"] + summary["rejected"] == 705
    assert summary["verifier"] == "llm"
    import mlflow
    client = mlflow.MlflowClient()
    run = client.search_runs([mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id])[0]
    assert run.data.metrics["llm_failures"] == 0
    assert run.data.metrics["llm_requests"] >= 8  # 4 hold-out texts + 4 in round 1 (+ repairs)
    assert run.data.params["llm.base_url"] == "local" and "llm.api_key_env" in run.data.params
    rounds = json.loads((out / "rounds.json").read_text())
    vs = rounds["verifier_stats"]
    assert vs["verified"] == 8 and vs["high"] + vs["low"] + vs["failed"] == 8
    assert len(json.loads((out / "verifier_failures.json").read_text())) == vs["failed"]


def test_repair_turn_and_failures_are_recorded(tmp_path):
    """Scripted replies from a real HTTP endpoint (stdlib, 127.0.0.1) drive every branch: parsed
    first, parsed after the repair turn, unparseable twice, request failed (first or repair turn)."""
    def reply_for(messages: list[dict]) -> tuple[int, str]:
        text = messages[1]["content"]
        if "TEXT-ERR" in text or ("TEXT-RERR" in text and len(messages) > 2):
            return 400, ""
        if len(messages) == 2:
            return 200, '{"label": "low"}' if "TEXT-OK" in text else "I think it is fine."
        assert messages[-1]["content"] == REPAIR.format()        # the repair turn's text
        return 200, 'Sure: {"label": "high"}' if "TEXT-FIX" in text else "no idea"

    with scripted(reply_for, tmp_path) as (client, _):
        v = LLMVerifier(client, LLMVerifierParams(constrained_json=False))
        labels = v.verify(["TEXT-OK a", "TEXT-FIX b", "TEXT-BAD c", "TEXT-ERR d", "TEXT-RERR e"])
    assert labels == ["low", "high", None, None, None]
    check_accounting(v, labels, 5)
    assert v.stats["parsed_first"] == 1 and v.stats["parsed_after_repair"] == 1
    assert v.stats["parse_failures"] == 1 and v.stats["request_failures"] == 2
    assert [f["kind"] for f in v.failures] == ["request_failed", "unparseable", "request_failed"]
    assert v.failures[1]["raw"] == "no idea" and v.failures[1]["text_head"] == "TEXT-BAD c"
    assert v.failures[2]["text_head"] == "TEXT-RERR e" and v.failures[2]["raw"]
