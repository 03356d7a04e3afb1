"""The `entities` stage end to end on a small synthetic quality output (records in the record
schema, written with ShardedJsonlWriter, plus a bad line and a record missing a field): outputs,
read == kept + rejected, documents and entities rejected apart, re-run identity, MLflow; the LLM side by
side (MLflow only: outputs do not depend on what the endpoint answers); and the llm extractor against a
scripted endpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from scripted_endpoint import ScriptedEndpoint

from tasks import entities
from tasks.common.io import ShardedJsonlWriter, shard_paths
from tasks.common.records import make_record
from tasks.common.stage import main
from tasks.extraction.gold import read_pubtator_file

FAST = ["profile=tiny", "crf.max_train_docs=60", "crf.max_iterations=20", "eval.local_max_docs=30",
        "min_entity_count=2", "min_type_entities=1", "shard_size=4"]


@pytest.fixture(scope="module")
def kept_dir(tmp_path_factory, data_root) -> Path:
    """A quality-stage output: 8 real NCBI-disease abstracts (each twice, so entities repeat), one
    image-only record, one record missing `images`, one line that is not JSON."""
    root = tmp_path_factory.mktemp("quality")
    docs, _ = read_pubtator_file(data_root / "corpus" / "pubtator" / "NCBItrainset_corpus.txt")
    w = ShardedJsonlWriter(root / "kept", shard_size=7)
    for i, d in enumerate(docs[:8] * 2):
        w.write(make_record("pubtator", f"{d.pmid}:{i}", d.text, meta={"quality_score": 0.9}))
    w.write(make_record("vqa_rad", "img1", "", images=[{"path": "data/collect/images/ab/ab.jpg",
                                                          "sha256": "ab" * 32}]))
    bad = make_record("medquad", "q1", "Aspirin helps.")
    del bad["images"]
    w.write(bad)
    w.close()
    with open(shard_paths(root / "kept")[-1], "a", encoding="utf-8") as f:
        f.write("{not json\n")
    return root


def read_jsonl(paths) -> list[dict]:
    return [json.loads(x) for p in paths for x in open(p, encoding="utf-8")]


def outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_stage_local_end_to_end(kept_dir, tmp_path):
    import mlflow

    out = tmp_path / "entities"
    summary = main(entities.STAGE, [f"in_dir={kept_dir}", f"out_dir={out}", "eval.llm_docs=0", *FAST])
    assert (summary["read"], summary["kept"], summary["rejected"]) == (19, 17, 2)
    assert summary["read"] == summary["kept"] + summary["rejected"]
    assert summary["rejected_by_reason"] == {"bad_json": 1, "missing_field": 1}
    assert summary["docs_without_text"] == 1 and summary["extractor"] == "local"

    lines = [x for p in shard_paths(kept_dir / "kept") for x in open(p, encoding="utf-8")]
    records = {r["id"]: r for r in map(json.loads, lines[:17])}
    mentions = read_jsonl(shard_paths(out / "mentions"))
    assert len(shard_paths(out / "mentions")) == 5 and len(mentions) == 17
    assert [m["doc_id"] for m in mentions] == list(records)
    for line in mentions:
        assert set(line) == {"doc_id", "source", "entities"}
        text = records[line["doc_id"]]["text"]
        for e in line["entities"]:
            assert set(e) == {"text", "norm", "type", "start", "end"}
            assert text[e["start"]:e["end"]] == e["text"] and e["norm"] == e["text"].casefold()
    assert next(m for m in mentions if m["source"] == "vqa_rad")["entities"] == []
    assert sum(len(m["entities"]) for m in mentions) == summary["mentions"] > 0

    table = read_jsonl([out / "entities.jsonl"])
    assert table and table == sorted(table, key=lambda r: (-r["count"], r["norm"]))
    counts: dict[str, int] = {}
    for m in mentions:
        for e in m["entities"]:
            counts[e["norm"]] = counts.get(e["norm"], 0) + 1
    for r in table:
        assert set(r) == {"norm", "text", "type", "types", "alt_types", "count", "doc_count"}
        assert r["count"] == counts[r["norm"]] == sum(r["types"].values()) >= 2 and r["doc_count"] >= 1
        assert r["type"] in r["types"] and r["type"] not in r["alt_types"]
    # open typing: the eight vocabulary types are what the CRF learned
    assert set(summary["crf_train"]["labels"]) >= {f"B-{t}" for t in ("Anatomy", "Disease", "Chemical", "Symptom")}
    assert sum(summary["review_sample"].values()) == len(read_jsonl([out / "type_review_sample.jsonl"])) > 0
    docs_rej = read_jsonl(shard_paths(out / "rejected"))            # documents only
    ents_rej = read_jsonl(shard_paths(out / "rejected_entities"))   # the second unit, apart
    assert sorted(r["reason"] for r in docs_rej) == ["bad_json", "missing_field"]
    assert next(r for r in docs_rej if r["reason"] == "bad_json")["locator"].endswith("part-00002.jsonl:5")
    assert {r["reason"] for r in ents_rej} <= {"rare_entity", "rare_type", "empty", "too_long"}
    assert len(ents_rej) == summary["entities_rejected"]
    assert all(set(r) >= {"reason", "detail", "record"} and "norm" in r["record"] for r in ents_rej
               if r["reason"].startswith("rare_"))
    assert len(table) + sum(r["reason"] in ("rare_entity", "rare_type") for r in ents_rej) == \
        summary["entities_unique"]

    ev = json.loads((out / "extraction_eval.json").read_text())
    assert set(ev["local"]["per_type"]) == {"Chemical", "Disease"} and ev["local"]["docs"] == 30
    assert set(ev["dictionary"]["per_type"]) == {"Chemical", "Disease"}
    # the fixture corpus is PubTator only, never weakly labelled: the gold augmentation taught the types
    assert ev["typing"]["weak"]["train_sentences"] == 0 and ev["typing"]["gold_augmentation"]["added_by_type"]
    assert "llm" not in ev and ev["gold"]["train"]["excluded_test_pmids"] == 0
    assert (out / "crf_model.crfsuite").stat().st_size > 0 and (out / "llm_failures.jsonl").read_text() == ""
    assert json.loads((out / "summary.json").read_text()) == summary

    run = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id])[0]
    assert run.data.tags["stage"] == "entities"
    assert run.data.metrics["eval.local.Disease.f1"] == ev["local"]["per_type"]["Disease"]["f1"]
    assert run.data.metrics["read"] == 19 and "crf.train_seconds" in run.data.metrics
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"extraction_eval.json", "entities.jsonl", "crf_model.crfsuite", "summary.json"} <= arts

    # a re-run gives byte-identical outputs (model file included)
    again = tmp_path / "again"
    main(entities.STAGE, [f"in_dir={kept_dir}", f"out_dir={again}", "eval.llm_docs=0", *FAST])
    assert outputs(again) == outputs(out)


def test_side_by_side_llm_goes_to_mlflow_not_to_the_outputs(kept_dir, tmp_path):
    """extractor=local with eval.llm_docs > 0: two endpoints answering differently (two machines) give
    byte-identical data/entities; the LLM's scores and failures are MLflow metrics and artifacts."""
    import mlflow

    def garbled(messages):
        return 200, "I am sorry, I cannot help with that."

    runs = {}
    for name, reply in (("a", first_word_as_disease), ("b", garbled)):
        out = tmp_path / name
        with ScriptedEndpoint(reply) as ep:
            summary = main(entities.STAGE, [f"in_dir={kept_dir}", f"out_dir={out}", "eval.llm_docs=2",
                                             "llm_extract.constrained_json=false", f"llm.base_url={ep.url}",
                                             f"llm.cache_dir={tmp_path / f'cache-{name}'}",
                                             "llm.max_retries=0", *FAST])
        runs[name] = (out, summary)
    (out_a, sum_a), (out_b, sum_b) = runs["a"], runs["b"]
    assert outputs(out_a) == outputs(out_b) and sum_a == sum_b
    assert "llm_extract" not in sum_a and set(sum_a["eval_micro_f1"]) == {"local", "dictionary"}
    assert sum_a["llm_failed_sentences"] == 0 and (out_a / "llm_failures.jsonl").read_text() == ""
    ev = json.loads((out_a / "extraction_eval.json").read_text())
    assert "llm" not in ev and "local_on_llm_sample" not in ev and "llm_sample_doc_ids" not in ev

    client = mlflow.MlflowClient()
    by_name = {}
    for run in client.search_runs([mlflow.get_experiment_by_name("medxiaohe-pipeline").experiment_id]):
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "llm_comparison")}
        by_name[run.data.metrics["eval.llm.failed_sentences"]] = (run, arts)
    (ok_run, _), (bad_run, bad_arts) = by_name[0], by_name[max(by_name)]
    assert max(by_name) > 0                                     # the garbled endpoint's failures ...
    assert {"llm_comparison/extraction_eval_llm.json", "llm_comparison/llm_failures.jsonl"} <= bad_arts
    path = client.download_artifacts(bad_run.info.run_id, "llm_comparison/llm_failures.jsonl", str(tmp_path))
    fails = read_jsonl([path])                                  # ... with the raw replies, in MLflow
    assert fails and all(f["phase"] == "eval" and f["raw"].startswith("I am sorry") for f in fails)
    m = ok_run.data.metrics
    assert "eval.llm.Disease.f1" in m and "eval.local_on_llm_sample.micro.f1" in m and "llm_extract.batches" in m


def test_stage_refuses_missing_input_and_bad_params(tmp_path):
    from tasks.common.config import ConfigError

    with pytest.raises(SystemExit, match="no input shards"):
        main(entities.STAGE, [f"in_dir={tmp_path}", f"out_dir={tmp_path / 'o'}", "eval.llm_docs=0"])
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "part-00000.jsonl").write_text("")
    with pytest.raises(ConfigError):
        main(entities.STAGE, [f"in_dir={tmp_path}", "extractor=regex"])
    with pytest.raises(ConfigError):
        main(entities.STAGE, [f"in_dir={tmp_path}", "min_entity_count=0"])


def first_word_as_disease(messages: list[dict]) -> tuple[int, str]:
    """For each `SentenceK: text` line of the prompt, the first word of 5+ letters as a Disease; a
    batch containing GARBLE gets prose."""
    user = messages[1]["content"]
    if "GARBLE" in user:
        return 200, "I am sorry, I cannot help with that."
    reply = {}
    for k, sentence in re.findall(r"^Sentence(\d+): (.*)$", user, re.M):
        words = re.findall(r"[A-Za-z]{5,}", sentence)
        reply[f"Sentence{k}"] = [f"Disease:{words[0]}"] if words else "None"
    return 200, json.dumps(reply)


def test_stage_llm_extractor_records_failures_and_caps_documents(tmp_path):
    kept = tmp_path / "quality"
    w = ShardedJsonlWriter(kept / "kept")
    texts = ["Migraine attacks improved. Headache returned later.", "Asthma worsened after exercise.",
             "GARBLE text here. Second sentence.", "GARBLE only, one sentence.", "Migraine again.",
             "Never read: beyond the cap."]
    for i, t in enumerate(texts):
        w.write(make_record("medquad", i, t))
    w.close()
    out = tmp_path / "entities"
    with ScriptedEndpoint(first_word_as_disease) as ep:
        summary = main(entities.STAGE, [f"in_dir={kept}", f"out_dir={out}", "extractor=llm", "llm_extract.max_docs=5",
                              "llm_extract.batch_sentences=1", "llm_extract.constrained_json=false",
                              "eval.llm_docs=2", f"llm.base_url={ep.url}", f"llm.cache_dir={tmp_path / 'c'}",
                              "llm.max_retries=0", *FAST])
    # a document keeps the entities of its parsed sentences; only one with none parsed is rejected
    assert (summary["read"], summary["kept"], summary["rejected"]) == (5, 4, 1)
    assert summary["stopped_at_cap"] == 5 and summary["rejected_by_reason"] == {"extraction_failed": 1}
    assert summary["docs_partially_extracted"] == 1 and summary["sentences_failed"] == 2
    (rej,) = read_jsonl(shard_paths(out / "rejected"))
    # one request per sentence: a GARBLE sentence fails (twice: first reply and repair)
    assert rej["record"]["text"].startswith("GARBLE only") and len(rej["failures"]) == 1
    f = rej["failures"][0]
    assert f["sentence"] == 0 and f["raw"] == f["raw_repair"] == "I am sorry, I cannot help with that."
    assert rej["detail"] == "1 of 1 sentences failed"
    (partial,) = [m for m in read_jsonl(shard_paths(out / "mentions")) if "failed_sentences" in m]
    assert partial["failed_sentences"] == 1
    assert [e["text"] for e in partial["entities"]] == ["Second"]
    fails = read_jsonl([out / "llm_failures.jsonl"])
    assert [f["phase"] for f in fails] == ["corpus", "corpus"] and summary["llm_failed_sentences"] == 2
    table = {r["norm"]: r for r in read_jsonl([out / "entities.jsonl"])}
    assert table["migraine"]["count"] == 2 and table["migraine"]["type"] == "Disease"
    ms = read_jsonl(shard_paths(out / "mentions"))
    assert ms[0]["entities"][0] == {"text": "Migraine", "norm": "migraine", "type": "Disease",
                                    "start": 0, "end": 8}
    ev = json.loads((out / "extraction_eval.json").read_text())
    assert ev["llm"]["docs"] == 2 and len(ev["llm_sample_doc_ids"]) == 2
    assert ev["local_on_llm_sample"]["docs"] == 2 and set(ev["llm"]["per_type"]) == {"Chemical", "Disease"}
    s = summary["llm_extract"]
    assert s["parsed_first"] + s["parsed_after_repair"] + s["failed_sentences"] == s["sentences"]
