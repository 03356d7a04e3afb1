"""The LLM extractor: strict per-sentence parsing of batch replies, the repair turn, failure records,
offset mapping and entity checks -- against a scripted OpenAI-compatible endpoint (stdlib http.server
on 127.0.0.1, no mocks of the client) and, marked llm_server, the real llama.cpp + SmolLM2 server
(accounting only: the 135M model's judgment is not what is tested)."""

from __future__ import annotations

import json

import pytest
from local_server import real_local_server
from scripted_endpoint import ScriptedEndpoint

from tasks.extraction.llm import (
    LLMExtractor,
    LLMExtractParams,
    batch_messages,
    make_batches,
    parse_batch_reply,
    response_format,
)
from tasks.llm.client import LLMClient, LLMConfig

P2 = LLMExtractParams()                       # stage2, typed
P1 = LLMExtractParams(prompt="stage1")


# ----------------------------------------------------------------------------- parsing
def test_parse_json_python_dict_bare_items_and_fences():
    ok, bad, extra = parse_batch_reply('{"Sentence0": ["Disease:type 2 diabetes", "Drug:metformin"], '
                                       '"Sentence1": "None"}', 2, P2)
    assert ok == {0: [("Disease", "type 2 diabetes"), ("Drug", "metformin")], 1: []} and not bad and extra == 0
    # the paper's Stage 1 style: single quotes, comma-joined string, explicit 'None'
    ok, bad, _ = parse_batch_reply("Sure! {'Sentence0': 'aspirin,fever', 'Sentence1': 'None'}", 2, P1)
    assert ok == {0: [("Entity", "aspirin"), ("Entity", "fever")], 1: []} and not bad
    # the paper's Stage 2 style: unquoted list items, Python None, in a ```json fence
    ok, bad, _ = parse_batch_reply("```json\n{'Sentence0': [Disease:Flu, Drug:aspirin], 'Sentence1': None}\n```",
                                   2, P2)
    assert ok == {0: [("Disease", "Flu"), ("Drug", "aspirin")], 1: []} and not bad
    # key variants, swapped "entity:Type", unknown type kept with a capital, "None" inside a list
    ok, bad, extra = parse_batch_reply('{"sentence 0": ["metformin:drug", "Enzyme:kinase", "None"], '
                                       '"Sentence_1": [], "Sentence7": "x", "note": 1}', 2, P2)
    assert ok == {0: [("Drug", "metformin"), ("Enzyme", "kinase")], 1: []} and extra == 2


@pytest.mark.parametrize("reply", ["", "   ", "I could not find any entities.", '{"Sentence0": ["Drug:aspi',
                                   "{'Sentence0': 'a', 'Sentence1': ", "__import__('os').system('echo hi')",
                                   "None", "{Sentence0: aspirin}"])
def test_unparseable_replies_fail_every_sentence(reply):
    ok, bad, _ = parse_batch_reply(reply, 2, P2)
    assert ok == {} and {k for k, _ in bad.values()} == {"unparseable"} and set(bad) == {0, 1}


def test_wrong_shapes_and_missing_sentences():
    ok, bad, _ = parse_batch_reply('[["Drug:aspirin"], "None"]', 2, P2)
    assert ok == {} and {k for k, _ in bad.values()} == {"wrong_shape"}
    ok, bad, _ = parse_batch_reply('{"Sentence0": 5, "Sentence1": {"Drug": "x"}, "Sentence2": ["Drug:a", 3]}', 4, P2)
    assert ok == {} and [bad[i][0] for i in range(4)] == ["wrong_shape", "wrong_shape", "wrong_shape",
                                                           "missing_sentence"]
    ok, bad, _ = parse_batch_reply('{"Sentence1": "None"}', 2, P2)
    assert ok == {1: []} and bad[0][0] == "missing_sentence"
    # the first complete object wins; a truncated second one does not fill the gap
    ok, bad, _ = parse_batch_reply('{"Sentence0": "x"} and {"Sentence1": ', 2, P2)
    assert ok == {0: [("Entity", "x")]} and bad[1][0] == "missing_sentence"


def test_batches_prompt_and_schema():
    assert make_batches([10, 10, 10, 10, 10], 2, 100) == [[0, 1], [2, 3], [4]]
    assert make_batches([60, 60, 500, 10], 8, 100) == [[0], [1], [2], [3]]
    msgs = batch_messages(["Aspirin  relieved\tfever.", "None here."], P2)
    assert "Sentence0: Aspirin relieved fever.\nSentence1: None here." in msgs[1]["content"]
    assert "Sentence0 to Sentence1" in msgs[1]["content"] and "Disease, Symptom" in msgs[1]["content"]
    assert "comma" in batch_messages(["a"], P1)[1]["content"]
    schema = response_format(3, P2)["schema"]
    assert schema["required"] == ["Sentence0", "Sentence1", "Sentence2"]


# ----------------------------------------------------------------------------- scripted endpoint
def run_extractor(tmp_path, reply, docs, params=None, **cfg):
    conf = {"model": "m", "cache_dir": str(tmp_path / "cache"), "max_retries": 0, "timeout_s": 5,
            "backoff_base_s": 0.01, "backoff_max_s": 0.05, **cfg}
    with ScriptedEndpoint(reply) as ep, LLMClient(LLMConfig(**conf), base_url=ep.url) as client:
        ex = LLMExtractor(client, params or LLMExtractParams(constrained_json=False), max_entity_chars=100)
        results = ex.extract(docs)
    return results, ex, ep


DOC = ("d1", "Aspirin relieved the fever. The patient slept well.")


def check_accounting(results, ex):
    s = ex.stats
    failed = sum(len(r.failures) for r in results)
    assert s["sentences"] == sum(r.sentences for r in results)
    assert s["parsed_first"] + s["parsed_after_repair"] + failed == s["sentences"]
    assert s["failed_sentences"] == failed
    for r in results:
        for f in r.failures:
            assert f["kind"] in ("unparseable", "wrong_shape", "missing_sentence", "request_failed")
            assert "raw" in f and f["doc_id"] == r.doc_id


def test_entities_offsets_and_bad_entity_strings(tmp_path):
    huge = "x" * 10_000
    reply = json.dumps({"Sentence0": ["Drug:aspirin", "Symptom:fever", "Disease:", "   ", f"Drug:{huge}",
                                      "Disease:unicorn flu", "Drug:aspirin"], "Sentence1": "None"})
    results, ex, ep = run_extractor(tmp_path, lambda m: (200, reply, 0), [DOC, ("img", "")])
    r, img = results
    assert r.ok and r.sentences == 2 and img.ok and img.sentences == 0 and img.entities == []
    assert [(m["text"], m["type"], m["start"], m["end"]) for m in r.entities] == [
        ("Aspirin", "Drug", 0, 7), ("fever", "Symptom", 21, 26), ("unicorn flu", "Disease", None, None)]
    assert all(m["norm"] == m["text"].casefold() for m in r.entities)
    assert sorted(x["reason"] for x in r.rejected) == ["empty", "empty", "too_long"]
    assert next(x for x in r.rejected if x["reason"] == "too_long")["chars"] == 10_000
    assert len(ep.requests) == 1 and ex.stats["batches"] == 1       # both sentences in one request
    check_accounting(results, ex)


def test_python_dict_reply_through_the_endpoint(tmp_path):
    reply = "Here you go: {'Sentence0': 'Aspirin,fever', 'Sentence1': 'None'}"
    results, ex, _ = run_extractor(tmp_path, lambda m: (200, reply, 0), [DOC], LLMExtractParams(
        prompt="stage1", constrained_json=False))
    assert [(m["text"], m["type"]) for m in results[0].entities] == [("Aspirin", "Entity"), ("fever", "Entity")]
    check_accounting(results, ex)


def test_truncated_reply_is_repaired_once(tmp_path):
    good = '{"Sentence0": ["Drug:aspirin"], "Sentence1": "None"}'

    def reply(messages):
        return (200, good, 0) if len(messages) == 4 else (200, good[:25], 0)

    results, ex, ep = run_extractor(tmp_path, reply, [DOC])
    assert results[0].ok and [m["text"] for m in results[0].entities] == ["Aspirin"]
    assert ex.stats["parsed_after_repair"] == 2 and ex.stats["repairs"] == 1 and len(ep.requests) == 2
    repair = ep.requests[1]["messages"]
    assert repair[2] == {"role": "assistant", "content": good[:25]} and "unparseable" in repair[3]["content"]
    check_accounting(results, ex)


@pytest.mark.parametrize("bad", ["", "Sorry, I cannot do that.", '{"Sentence0": ["Drug:asp'])
def test_unparseable_twice_is_recorded_with_raw_text(tmp_path, bad):
    results, ex, ep = run_extractor(tmp_path, lambda m: (200, bad, 0), [DOC])
    r = results[0]
    assert not r.ok and r.entities == [] and len(r.failures) == 2 and len(ep.requests) == 2
    for f in r.failures:
        assert f["kind"] == "unparseable" and f["raw"] == bad and f["raw_repair"] == bad
    assert [f["sentence"] for f in r.failures] == [0, 1]
    assert r.failures[0]["sentence_head"] == "Aspirin relieved the fever."
    check_accounting(results, ex)


def test_partial_reply_keeps_good_sentences_and_records_the_rest(tmp_path):
    def reply(messages):
        if len(messages) == 2:
            return 200, '{"Sentence0": ["Drug:aspirin"], "Sentence1": 42}', 0
        return 200, '["not", "an", "object"]', 0

    results, ex, _ = run_extractor(tmp_path, reply, [DOC])
    r = results[0]
    assert [m["text"] for m in r.entities] == ["Aspirin"] and len(r.failures) == 1
    f = r.failures[0]
    assert f["sentence"] == 1 and f["kind"] == "wrong_shape" and "wrong_shape" in f["detail"]
    assert f["raw"].endswith("42}") and f["raw_repair"] == '["not", "an", "object"]'
    check_accounting(results, ex)


def test_missing_sentence_key_is_a_failure_after_repair(tmp_path):
    results, ex, _ = run_extractor(tmp_path, lambda m: (200, '{"Sentence0": "None"}', 0), [DOC])
    assert [f["kind"] for f in results[0].failures] == ["missing_sentence"]
    check_accounting(results, ex)


def test_server_error_and_timeout_are_request_failures(tmp_path):
    results, ex, ep = run_extractor(tmp_path / "a", lambda m: (500, "", 0), [DOC], max_retries=1)
    assert [f["kind"] for f in results[0].failures] == ["request_failed"] * 2
    assert len(ep.requests) == 2 and ex.stats["repairs"] == 0          # client retry, no repair turn
    assert "500" in results[0].failures[0]["detail"] or "Internal" in results[0].failures[0]["detail"]
    check_accounting(results, ex)
    results, ex, _ = run_extractor(tmp_path / "b", lambda m: (200, '{"Sentence0": "None"}', 1.5), [DOC],
                                   timeout_s=0.3)
    assert [f["kind"] for f in results[0].failures] == ["request_failed"] * 2
    assert "Timeout" in results[0].failures[0]["detail"]
    check_accounting(results, ex)


def test_constrained_json_sends_the_batch_schema(tmp_path):
    reply = '{"Sentence0": "None", "Sentence1": "None"}'
    results, ex, ep = run_extractor(tmp_path, lambda m: (200, reply, 0), [DOC],
                                    LLMExtractParams(constrained_json=True, max_tokens=77))
    body = ep.requests[0]
    assert body["max_tokens"] == 77
    assert body["response_format"]["schema"]["required"] == ["Sentence0", "Sentence1"]
    assert results[0].ok and results[0].entities == []


# ----------------------------------------------------------------------------- the real server
@pytest.fixture(scope="module")
def local_llm_entities(tmp_path_factory):
    with real_local_server(tmp_path_factory.mktemp("llm_entities"), max_retries=1) as live:
        yield live


@pytest.mark.llm_server
@pytest.mark.parametrize("prompt", ["stage2", "stage1"])
def test_real_local_server_accounts_for_every_sentence(local_llm_entities, prompt):
    docs = [("a", "Naloxone reverses the antihypertensive effect of clonidine. The rats slept."),
            ("b", "Famotidine-associated delirium was reported in six patients.")]
    params = LLMExtractParams(prompt=prompt, batch_sentences=2, max_tokens=96)
    with LLMClient(local_llm_entities) as client:
        ex = LLMExtractor(client, params)
        results = ex.extract(docs)
        check_accounting(results, ex)
        assert ex.stats["sentences"] == 3 and ex.stats["batches"] == 2
        assert client.stats["calls"] == ex.stats["batches"] + ex.stats["repairs"]
        for r, (_, text) in zip(results, docs):
            for m in r.entities:                            # located mentions point into the text
                assert m["start"] is None or text[m["start"]:m["end"]] == m["text"]
        # a re-run is answered from the response cache: same results, no new requests
        requests = client.stats["requests"]
        again = LLMExtractor(client, params).extract(docs)
        assert [(r.entities, r.failures) for r in again] == [(r.entities, r.failures) for r in results]
        assert client.stats["requests"] == requests
