"""LLMClient against a real local HTTP endpoint (stdlib stand-in, see conftest): retries and
backoff, bounded concurrency, the response cache, accounting. No mocks of the client or openai."""

from __future__ import annotations

import json
import time

import pytest

from tasks.llm.client import LLMClient, LLMConfig, LLMError, split_llm_overrides


def msgs(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def make(url: str, tmp_path, **kw) -> LLMClient:
    cfg = LLMConfig(**{"model": "stub", "backoff_base_s": 0.02, "backoff_max_s": 0.2,
                       "timeout_s": 5, "seed": 7, "cache_dir": str(tmp_path / "cache"), **kw})
    return LLMClient(cfg, base_url=url)


def recording(client: LLMClient) -> list[float]:
    delays: list[float] = []

    def sleep(d: float) -> None:
        delays.append(d)
        time.sleep(d)
    client.sleep = sleep
    return delays


def test_retries_429_then_500_then_succeeds(stub_server, tmp_path):
    with stub_server(script=[(429, 0), (500, 0)]) as srv:
        client = make(srv.base_url, tmp_path)
        delays = recording(client)
        assert client.complete(msgs("hello")) == "hello"
    assert len(srv.requests) == 3
    assert client.stats | {} == {"calls": 1, "cache_hits": 0, "requests": 3, "retries": 2,
                                 "failures": 0, "prompt_tokens": 3, "completion_tokens": 2}
    # exponential with equal jitter: attempt k waits in [cap/2, cap], cap = base * 2^k
    assert 0.01 <= delays[0] <= 0.02 and 0.02 <= delays[1] <= 0.04
    # the openai client's own retries are off: every retry above is ours
    assert client._openai.max_retries == 0


def test_backoff_jitter_is_seeded_and_reproducible(stub_server, tmp_path):
    runs = []
    for i in range(2):
        with stub_server(script=[(503, 0), (502, 0), (429, 0)]) as srv:
            client = make(srv.base_url, tmp_path / str(i))
            delays = recording(client)
            client.complete(msgs("same request"))
            runs.append(delays)
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_timeout_is_retried(stub_server, tmp_path):
    with stub_server(script=[(200, 1.5)]) as srv:   # first answer comes after the client timeout
        client = make(srv.base_url, tmp_path, timeout_s=0.5)
        assert client.complete(msgs("slow")) == "slow"
    assert client.stats["retries"] == 1 and client.stats["requests"] == 2


def test_connection_error_retried_then_fails(tmp_path):
    from tasks.llm.server import free_port
    client = make(f"http://127.0.0.1:{free_port()}/v1", tmp_path, max_retries=2)
    with pytest.raises(LLMError, match="3 attempt"):
        client.complete(msgs("nobody home"))
    assert client.stats["requests"] == 3 and client.stats["failures"] == 1


def test_retries_exhausted_on_persistent_5xx(stub_server, tmp_path):
    with stub_server(script=[(500, 0)] * 10) as srv:
        client = make(srv.base_url, tmp_path, max_retries=3)
        with pytest.raises(LLMError):
            client.complete(msgs("x"))
    assert len(srv.requests) == 4
    assert client.stats["retries"] == 3 and client.stats["failures"] == 1


def test_client_error_is_not_retried(stub_server, tmp_path):
    with stub_server(script=[(400, 0)]) as srv:
        client = make(srv.base_url, tmp_path)
        with pytest.raises(LLMError, match="BadRequest"):
            client.complete(msgs("bad"))
    assert len(srv.requests) == 1 and client.stats["retries"] == 0


def test_bounded_concurrency_and_input_order(stub_server, tmp_path):
    with stub_server(delay_s=0.15) as srv:
        client = make(srv.base_url, tmp_path, max_concurrency=3)
        prompts = [f"prompt {i}" for i in range(12)]
        out = client.complete_many([msgs(p) for p in prompts])
    assert out == prompts
    assert srv.max_in_flight == 3
    assert len(srv.requests) == 12


def test_cache_hit_across_clients_and_key_never_stored(stub_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDX_TEST_KEY", "sk-secret-123")
    with stub_server() as srv:
        first = make(srv.base_url, tmp_path, api_key_env="MEDX_TEST_KEY")
        assert first.complete(msgs("cached?")) == "cached?"
        second = make(srv.base_url, tmp_path, api_key_env="MEDX_TEST_KEY")
        assert second.complete(msgs("cached?")) == "cached?"
        assert second.stats["cache_hits"] == 1 and second.stats["requests"] == 0
        # a different sampling parameter is a different request
        assert second.complete(msgs("cached?"), max_tokens=5) == "cached?"
        assert second.stats["requests"] == 1
    assert len(srv.requests) == 2
    headers = {k.lower(): v for k, v in srv.headers[0].items()}
    assert headers["authorization"] == "Bearer sk-secret-123"        # the key was used...
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 2
    for f in files:                                                   # ...but never stored
        text = f.read_text()
        assert "sk-secret" not in text
        assert json.loads(text)["request"]["model"] == "stub"


def test_duplicates_in_a_batch_are_sent_once(stub_server, tmp_path):
    with stub_server() as srv:
        client = make(srv.base_url, tmp_path, cache_dir=None)
        out = client.complete_many([msgs("a"), msgs("b"), msgs("a"), msgs("a")])
    assert out == ["a", "b", "a", "a"]
    assert len(srv.requests) == 2


def test_return_exceptions_keeps_slots(stub_server, tmp_path):
    with stub_server(script=[(400, 0)]) as srv:
        client = make(srv.base_url, tmp_path, max_concurrency=1)
        out = client.complete_many([msgs("first fails"), msgs("second ok")], return_exceptions=True)
    assert isinstance(out[0], LLMError) and out[1] == "second ok"


def test_config_validation_and_overrides():
    with pytest.raises(ValueError):
        LLMConfig(max_concurrency=0)
    with pytest.raises(LLMError, match="local"):
        LLMClient(LLMConfig(base_url="local"))
    assert split_llm_overrides(["a=1", "llm.model=x", "profile=tiny"]) == \
        (["a=1", "profile=tiny"], ["model=x", "profile=tiny"])
    with pytest.raises(ValueError):
        LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1")).complete([{"role": "user"}])
