"""An endpoint is known by its URL (or, for the project's server, the model file it serves) and a
user-given revision, in the response-cache key and in the resume fingerprint: two models served under
one model name never share answers.

The scripted endpoints stand for two servers of one model name answering differently; the last test
runs the project's real llama.cpp server on two different GGUF files under one model name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scripted_endpoint import ScriptedEndpoint

from eval.benchmarks import REGISTRY
from eval.harness import DecontamConfig, EvalConfig
from eval.harness import run as harness_run
from eval.instruct import InstructParams
from eval.models import EndpointModel, local_endpoint_identity, normalise_url
from eval.runner import ResumeMismatch, RunSettings, evaluate
from tasks.common.gguf import find_gguf
from tasks.llm.client import LLMConfig, LocalServerConfig

MEDQA = [REGISTRY["medqa"]]
SETTINGS = RunSettings(modes=("generate",), limit=3)


def model(url: str, cache: Path, **kw) -> EndpointModel:
    return EndpointModel(LLMConfig(model="m", cache_dir=str(cache), max_retries=0, timeout_s=20), base_url=url, **kw)


def cached_requests(cache: Path) -> list[dict]:
    return [json.loads(p.read_text())["request"] for p in sorted(cache.rglob("*.json"))]


def test_two_urls_serving_one_model_name_do_not_share_cached_answers(data_root, tmp_path):
    cache = tmp_path / "cache"
    with ScriptedEndpoint(lambda m: (200, "Answer: A")) as a, ScriptedEndpoint(lambda m: (200, "Answer: B")) as b:
        ra = evaluate(model(a.url, cache), MEDQA, data_root, tmp_path / "wa", SETTINGS)
        mb = model(b.url + "/", cache)          # a trailing slash is the same endpoint
        rb = evaluate(mb, MEDQA, data_root, tmp_path / "wb", SETTINGS)
        assert {r["parsed"] for r in ra.rows} == {"A"} and {r["parsed"] for r in rb.rows} == {"B"}
        assert len(a.requests) == len(b.requests) == 3 and mb.client.stats["cache_hits"] == 0
        assert ra.fingerprint != rb.fingerprint and mb.describe()["endpoint"] == b.url
        # the request the endpoint gets is unchanged: the scope is in the cache key only
        assert all("endpoint" not in body for body in a.requests + b.requests)
        again = model(a.url + "/", cache)
        ra2 = evaluate(again, MEDQA, data_root, tmp_path / "wa2", SETTINGS)
        assert again.client.stats["cache_hits"] == 3 and len(a.requests) == 3
        assert [r["output"] for r in ra2.rows] == [r["output"] for r in ra.rows]
    # each stored entry says which endpoint answered it
    assert sorted({r["endpoint"]["id"] for r in cached_requests(cache)}) == sorted([a.url, b.url])


def test_the_revision_scopes_cache_and_resume_at_one_url(data_root, tmp_path):
    """One URL and model name whose weights were swapped: the revision the user gives keeps them apart."""
    cache, work = tmp_path / "cache", tmp_path / "work"
    answer = {"text": "Answer: A"}
    with ScriptedEndpoint(lambda m: (200, answer["text"])) as ep:
        r1 = evaluate(model(ep.url, cache, revision="ckpt-1"), MEDQA, data_root, work, SETTINGS)
        answer["text"] = "Answer: C"                      # the checkpoint behind the URL changes
        with pytest.raises(ResumeMismatch):               # its results are not resumed as ckpt-2's
            evaluate(model(ep.url, cache, revision="ckpt-2"), MEDQA, data_root, work, SETTINGS)
        r2 = evaluate(model(ep.url, cache, revision="ckpt-2"), MEDQA, data_root, work, SETTINGS, fresh=True)
        assert len(ep.requests) == 6
        assert {r["parsed"] for r in r1.rows} == {"A"} and {r["parsed"] for r in r2.rows} == {"C"}
        back = model(ep.url, cache, revision="ckpt-1")
        r3 = evaluate(back, MEDQA, data_root, tmp_path / "other", SETTINGS)
        assert len(ep.requests) == 6 and back.client.stats["cache_hits"] == 3
        assert [r["output"] for r in r3.rows] == [r["output"] for r in r1.rows]
    assert back.describe()["revision"] == "ckpt-1" and r1.fingerprint == r3.fingerprint != r2.fingerprint


def test_url_normalisation():
    assert normalise_url("HTTP://User:secret@Host:8000/v1/") == "http://host:8000/v1"
    assert normalise_url("http://host/v1") == normalise_url("http://host/v1/")
    assert normalise_url("http://host:8000/v1") != normalise_url("http://host:8001/v1")


def altered_gguf(where: Path) -> Path:
    """A copy of the project's SmolLM2 GGUF, same file name, with the final norm's weights negated:
    every logit changes sign, so greedy decoding picks other tokens; the architecture is unchanged."""
    from gguf import GGUFReader

    where.mkdir(parents=True)
    path = Path(shutil.copyfile(find_gguf(), where / find_gguf().name))
    reader = GGUFReader(path, "r+")
    (norm,) = [t for t in reader.tensors if t.name == "output_norm.weight"]
    assert norm.data.dtype.name == "float32"
    norm.data[:] = -norm.data
    reader.data.flush()
    del reader
    return path


@pytest.mark.llm_server
def test_local_server_on_two_models_under_one_name_gives_two_result_sets(data_root, tmp_path):
    """`endpoint: local` twice with one response cache and one work dir, the server serving the project's
    GGUF and then an altered copy under the same model name: the second run is answered by the second
    model (nothing from the first's cache or results); the first model again is answered from the cache,
    then resumed, though each start of the server has a new port."""
    cache, work = tmp_path / "cache", tmp_path / "work"
    other = altered_gguf(tmp_path / "altered")
    cfg = EvalConfig(checkpoint="smol", endpoint="local", benchmarks=["medqa", "pubmedqa"], limit=2,
                     modes=["generate"], max_new_tokens=12, data_root=str(data_root),
                     decontam=DecontamConfig(report=str(tmp_path / "no_report.jsonl"), kept_dirs=[]),
                     instruct=InstructParams(enabled=False))

    def run(gguf: Path | None, out: str):
        llm = LLMConfig(cache_dir=str(cache), seed=1234, timeout_s=120, max_tokens=48,
                        server=LocalServerConfig(gguf=str(gguf) if gguf else None, log_file=str(tmp_path / "log")))
        _, summary, result = harness_run(cfg, tmp_path / out, work, llm_cfg=llm, restart_on_mismatch=True)
        return summary, result

    s1, first = run(None, "first")
    s2, second = run(other, "second")
    assert s1["model"]["model"] == s2["model"]["model"] == "smollm2-135m-instruct"
    assert s1["model"]["endpoint"] == local_endpoint_identity(LLMConfig())
    assert s1["model"]["endpoint"].startswith("local:SmolLM2") and s1["model"]["endpoint"] != s2["model"]["endpoint"]
    assert first.fingerprint != second.fingerprint
    assert first.client_stats["requests"] == second.client_stats["requests"] == 4
    assert second.client_stats["cache_hits"] == 0
    outputs = [[r["output"] for r in res.rows] for res in (first, second)]
    assert outputs[0] != outputs[1]
    print("first:", outputs[0], "\nsecond:", outputs[1])

    _, again = run(None, "again")            # restarts the work dir (the second model's), from the cache
    assert again.client_stats["requests"] == 0 and again.client_stats["cache_hits"] == 4
    assert [r["output"] for r in again.rows] == outputs[0] and again.fingerprint == first.fingerprint
    _, resumed = run(None, "resumed")        # the same model and work dir: resumed, nothing asked at all
    assert resumed.client_stats["calls"] == 0 and [r["output"] for r in resumed.rows] == outputs[0]
    assert len(list(cache.rglob("*.json"))) == 8
