"""The embedded endpoint: llama.cpp server + SmolLM2-135M-Instruct from PyPI, on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tasks.common.gguf import GGUFError
from tasks.llm.client import LLMClient, LocalServerConfig
from tasks.llm.server import ServerError, find_gguf, local_server


def test_find_gguf_in_installed_package():
    path = find_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_missing_model_package_or_file_is_a_clear_error(tmp_path):
    with pytest.raises(GGUFError, match="not installed"):
        find_gguf("no_such_model_package_xyz")
    with pytest.raises(ServerError, match="does not exist"):
        with local_server(LocalServerConfig(gguf=str(tmp_path / "missing.gguf"))):
            pass


@pytest.mark.llm_server
def test_real_server_completion_through_client(local_llm):
    assert local_llm.base_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{local_llm.base_url}/models", timeout=5) as r:
        assert json.loads(r.read())["data"][0]["id"] == local_llm.model
    with LLMClient(local_llm) as client:
        messages = [{"role": "user", "content": "What organ pumps blood? Answer in one word."}]
        first = client.complete(messages)
        assert isinstance(first, str) and first.strip()
        batch = client.complete_many([messages, [{"role": "user", "content": "Name one vitamin."}]])
        assert batch[0] == first                       # served from the cache, same text
        assert client.stats["cache_hits"] == 1 and client.stats["requests"] - client.stats["retries"] == 2
        assert client.stats["failures"] == 0 and client.stats["completion_tokens"] > 0


@pytest.mark.llm_server
def test_server_is_stopped_after_the_block(tmp_path):
    cfg = LocalServerConfig(log_file=str(tmp_path / "server.log"))
    with local_server(cfg) as url:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
            assert r.status == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=2)
    assert (tmp_path / "server.log").stat().st_size > 0


@pytest.mark.llm_server
def test_server_stopped_on_error_inside_block(tmp_path):
    cfg = LocalServerConfig(log_file=str(tmp_path / "server.log"))
    with pytest.raises(RuntimeError, match="boom"):
        with local_server(cfg) as url:
            raise RuntimeError("boom")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=2)
