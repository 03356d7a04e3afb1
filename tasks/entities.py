"""Stage `entities`: medical entity extraction and the frequency-filtered entity table
(paper §3.2.1, Stage 1 batch extraction and Stage 2 joint extraction + typing).

Run:   python -m tasks.entities [key=value ...]     (e.g. profile=tiny extractor=llm llm.base_url=local)
DVC:   dvc repro entities

What: reads the quality stage's kept records (`<in_dir>/kept`), splits each text into sentences and
extracts typed entity mentions with one of two extractors behind one interface (param `extractor`):
- `local` (default): a CRF (sklearn-crfsuite, BIO tags, word-shape/affix/neighbour features) trained
  here on the PubTator training splits (BC5CDR train + dev, NCBI-disease train), types Chemical/Disease;
- `llm`: the paper's batch-chunking prompt (many sentences per request, one JSON key per sentence,
  explicit "None"; `llm_extract.prompt: stage2` adds typing) through the project's LLM client, at most
  `llm_extract.max_docs` documents. Unparseable replies get one repair turn, then are recorded.
Mentions are aggregated by normalized text into the entity table, then the paper's filters run:
entities seen < `min_entity_count` times, then types with < `min_type_entities` entities.
Both extractors are scored against the gold PubTator TEST splits (never trained on): the CRF on every
test abstract (or `eval.local_max_docs`), the LLM path on a seeded sample of `eval.llm_docs` abstracts
through the `llm:` endpoint (0 = skip, no server) -- exact-span P/R/F1 per type and micro.

Output (out_dir): mentions/part-*.jsonl ({doc_id, source, entities: [{text, norm, type, start, end}]},
one line per kept document; documents without text are kept with no entities), entities.jsonl (the
table: norm, text, type, count, doc_count; sorted by -count, norm), rejected/part-*.jsonl (documents
that could not be processed, unit=document; filtered entities with reason rare_entity / rare_type /
empty / too_long, unit=entity), extraction_eval.json, llm_failures.jsonl (every LLM sentence failure
with the raw reply, corpus and eval), crf_model.crfsuite, summary.json (read == kept + rejected in
documents, plus entity-level counts).

Why: `local` is the default because the embedded SmolLM2-135M is too small for this prompt (DESIGN.md
"LLM calls"); the eval measures both on the same gold so the choice is visible in MLflow
(eval.local.Disease.f1 next to eval.llm.Disease.f1). The CRF trains in a few minutes on CPU, is
deterministic given the data order, and needs no download. Timings and LLM cache hits go to MLflow
only, so summary.json and the other outputs are identical across re-runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from tasks.common.config import load_stage_config, project_root, resolve
from tasks.common.io import atomic_output_dir, dumps, iter_records, shard_paths, write_json
from tasks.common.records import rejection
from tasks.common.tracking import stage_run
from tasks.llm.client import split_llm_overrides
from tasks.extraction.entity_table import EntitySink, EntityTable
from tasks.extraction.scoring import flat_metrics, score
from tasks.extraction.llm import LLMExtractor, LLMExtractParams
from tasks.extraction.local import CRFExtractor, CRFParams
from tasks.extraction.gold import load_gold

MODEL_FILE = "crf_model.crfsuite"


@dataclasses.dataclass
class GoldConfig:
    dir: str = "corpus/pubtator"     # relative to data_root
    train_files: list[str] = dataclasses.field(default_factory=lambda: [
        "CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt", "NCBItrainset_corpus.txt"])
    test_files: list[str] = dataclasses.field(default_factory=lambda: [
        "CDR_TestSet.PubTator.txt", "NCBItestset_corpus.txt"])


@dataclasses.dataclass
class EvalConfig:
    local_max_docs: int = 0          # gold test abstracts scored for the CRF (0 = all)
    llm_docs: int = 20               # seeded sample of gold test abstracts for the LLM path (0 = skip)


@dataclasses.dataclass
class EntitiesConfig:
    in_dir: str = "data/quality"
    out_dir: str = "data/entities"
    data_root: str = "../shared/data"
    seed: int = 1234
    extractor: Literal["local", "llm"] = "local"
    max_docs: int = 0                # corpus documents read (0 = all; llm also capped by llm_extract.max_docs)
    doc_chunk: int = 64              # documents handed to the extractor at once (LLM batches span them)
    shard_size: int = 50_000
    max_sentence_chars: int = 600
    max_entity_chars: int = 100
    min_entity_count: int = 3        # paper: 10 on a web-scale corpus
    min_type_entities: int = 5       # paper: 5
    gold: GoldConfig = dataclasses.field(default_factory=GoldConfig)
    crf: CRFParams = dataclasses.field(default_factory=CRFParams)
    llm_extract: LLMExtractParams = dataclasses.field(default_factory=LLMExtractParams)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    # canonical gold type: type names an LLM may use for it (case-insensitive), for scoring only
    type_aliases: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.min_entity_count < 1 or self.min_type_entities < 1 or self.max_entity_chars < 1:
            raise ValueError("min_entity_count, min_type_entities and max_entity_chars must be >= 1")
        if self.doc_chunk < 1 or self.max_sentence_chars < 20:
            raise ValueError("doc_chunk must be >= 1 and max_sentence_chars >= 20")

    @property
    def corpus_cap(self) -> int:
        caps = [c for c in (self.max_docs, self.llm_extract.max_docs if self.extractor == "llm" else 0) if c]
        return min(caps) if caps else 0

    def type_map(self) -> dict[str, str]:
        out = {}
        for canon, aliases in self.type_aliases.items():
            for a in [canon, *aliases]:
                out[a.lower()] = canon
        return out


def _relative(rej: dict, root: str) -> dict:
    if isinstance(rej.get("locator"), str):
        rej["locator"] = rej["locator"].replace(root + "/", "")
    return rej


def process_corpus(cfg: EntitiesConfig, shards: list[Path], extractor, sink: EntitySink,
                   table: EntityTable, failures: list[dict]) -> dict:
    """Extract every input document into `sink` and `table`; returns document/mention counts."""
    counts: Counter = Counter()
    cap = cfg.corpus_cap
    root = str(project_root())
    pending: list[dict] = []

    def flush() -> None:
        results = extractor.extract([(r["id"], r["text"]) for r in pending])
        for rec, res in zip(pending, results):
            counts["sentences"] += res.sentences
            if res.failures:
                failures.extend({"phase": "corpus", **f} for f in res.failures)
                rej = rejection("extraction_failed",
                                f"{len(res.failures)} of {res.sentences} sentences failed", record=rec)
                rej["failures"] = res.failures
                sink.reject(rej)
                counts["sentences_failed"] += len(res.failures)
                continue
            sink.keep({"doc_id": rec["id"], "source": rec["source"], "entities": res.entities})
            table.add_document(res.entities)
            counts["mentions"] += len(res.entities)
            counts["mentions_unlocated"] += sum(m["start"] is None for m in res.entities)
            counts["docs_without_text"] += not rec["text"].strip()
            counts["docs_with_entities"] += bool(res.entities)
            for r in res.rejected:
                sink.reject_entity({**r, "doc_id": rec["id"], "source": rec["source"]})
        pending.clear()

    for rec, rej in iter_records(shards):
        if cap and sink.read >= cap:
            counts["stopped_at_cap"] = cap
            break
        sink.count_read(1, len((rec or {}).get("text", "").encode("utf-8", "surrogatepass")))
        if rej is not None:
            sink.reject(_relative(rej, root))
            continue
        pending.append(rec)
        if len(pending) >= cfg.doc_chunk:
            flush()
    if pending:
        flush()
    return dict(sorted(counts.items()))


def evaluate(cfg: EntitiesConfig, crf: CRFExtractor, llm: LLMExtractor | None, test_docs: list,
             failures: list[dict]) -> dict:
    """extraction_eval.json: the CRF on the test split, the LLM and the CRF on the LLM's sample."""
    local_docs = test_docs[:cfg.eval.local_max_docs] if cfg.eval.local_max_docs else test_docs
    pairs = lambda docs: [(d.doc_id, d.text) for d in docs]  # noqa: E731
    out = {"match": "exact span and type", "test_files": cfg.gold.test_files,
           "local": score(local_docs, crf.extract(pairs(local_docs)))}
    if llm is not None and cfg.eval.llm_docs:
        n = min(cfg.eval.llm_docs, len(test_docs))
        idx = sorted(random.Random(cfg.seed).sample(range(len(test_docs)), n))
        sample = [test_docs[i] for i in idx]
        results = llm.extract(pairs(sample))
        for r in results:
            failures.extend({"phase": "eval", **f} for f in r.failures)
        out["llm_sample_doc_ids"] = [d.doc_id for d in sample]
        out["llm"] = score(sample, results, cfg.type_map())
        out["llm"]["failed_sentences"] = sum(len(r.failures) for r in results)
        out["llm"]["sentences"] = sum(r.sentences for r in results)
        out["local_on_llm_sample"] = score(sample, crf.extract(pairs(sample)))
    return out


def main(argv: list[str]) -> dict:
    stage_argv, _ = split_llm_overrides(argv)
    cfg, profile = load_stage_config("entities", EntitiesConfig, stage_argv)
    shards = shard_paths(resolve(cfg.in_dir) / "kept")
    if not shards:
        raise SystemExit(f"entities: no input shards under {resolve(cfg.in_dir) / 'kept'}; run quality first")
    gold_dir = resolve(cfg.data_root) / cfg.gold.dir
    need_llm = cfg.extractor == "llm" or cfg.eval.llm_docs > 0
    with contextlib.ExitStack() as stack:
        llm = client = None
        llm_params: dict = {}
        if need_llm:
            from tasks.llm.server import open_stage_client
            client, llm_params = open_stage_client(stack, argv)
            llm = LLMExtractor(client, cfg.llm_extract, max_sentence_chars=cfg.max_sentence_chars,
                               max_entity_chars=cfg.max_entity_chars)

        with stage_run("entities", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out_dir)) as out:
            if llm_params:
                tracker.mlflow.log_params(llm_params)
            test_docs, test_stats = load_gold(gold_dir, cfg.gold.test_files)
            train_docs, train_stats = load_gold(gold_dir, cfg.gold.train_files,
                                                exclude_pmids={d.pmid for d in test_docs})
            crf = CRFExtractor(out / MODEL_FILE, cfg.crf, max_sentence_chars=cfg.max_sentence_chars,
                               max_entity_chars=cfg.max_entity_chars)
            t0 = time.perf_counter()
            crf_stats = crf.train(train_docs)
            crf_seconds = time.perf_counter() - t0

            failures: list[dict] = []
            t0 = time.perf_counter()
            report = evaluate(cfg, crf, llm, test_docs, failures)
            eval_seconds = time.perf_counter() - t0
            report["gold"] = {"train": train_stats, "test": test_stats}
            report["crf_train"] = crf_stats
            write_json(out / "extraction_eval.json", report)

            sink = EntitySink(out, shard_size=cfg.shard_size)
            table = EntityTable()
            extractor = llm if cfg.extractor == "llm" else crf
            t0 = time.perf_counter()
            counts = process_corpus(cfg, shards, extractor, sink, table, failures)
            extract_seconds = time.perf_counter() - t0

            rows, rejected_rows = table.filtered(cfg.min_entity_count, cfg.min_type_entities)
            with open(out / "entities.jsonl", "w", encoding="utf-8") as f:
                f.writelines(dumps(r) + "\n" for r in rows)
            for r in rejected_rows:
                sink.reject_entity(r)
            with open(out / "llm_failures.jsonl", "w", encoding="utf-8") as f:
                f.writelines(dumps(r) + "\n" for r in failures)

            table_types = Counter(r["type"] for r in rows)
            extra = {
                "extractor": cfg.extractor, **counts,
                "entities_unique": len(table.count), "entities_in_table": len(rows),
                "mentions_in_table": sum(r["count"] for r in rows),
                "table_types": dict(sorted(table_types.items())),
                "llm_failed_sentences": len(failures),      # all in llm_failures.jsonl
                "crf_train": crf_stats,
                "eval_micro_f1": {k: report[k]["micro"]["f1"] for k in ("local", "llm", "local_on_llm_sample")
                                  if k in report},
            }
            if llm is not None:
                extra["llm_extract"] = dict(sorted(llm.stats.items()))
            summary = sink.close(**extra)
            tracker.log_sink(sink, summary)

            metrics = {"crf.train_seconds": crf_seconds, "crf.train_sentences": crf_stats["sentences"],
                       "crf.train_tokens": crf_stats["tokens"], "crf.active_features": crf_stats["active_features"],
                       "eval.seconds": eval_seconds, "extract.seconds": extract_seconds,
                       "extract.docs_per_s": sink.read / max(extract_seconds, 1e-9),
                       **{f"table.type.{t}": n for t, n in table_types.items()},
                       **{f"rejected_entities.{k}": v for k, v in summary["entities_rejected_by_reason"].items()}}
            for key in ("local", "llm", "local_on_llm_sample"):
                if key in report:
                    metrics.update(flat_metrics(f"eval.{key}", report[key]))
            if llm is not None:
                metrics.update({f"llm_extract.{k}": v for k, v in llm.stats.items()})
                metrics.update({f"llm_{k}": v for k, v in client.stats.items()})
            tracker.log_metrics(metrics)
            for name in ("extraction_eval.json", "entities.jsonl", "llm_failures.jsonl", MODEL_FILE):
                tracker.log_artifact(out / name)
    print(f"entities: read={summary['read']} kept={summary['kept']} rejected={summary['rejected']} "
          f"table={summary['entities_in_table']} entities_rejected={summary['entities_rejected']} "
          f"crf_train_s={crf_seconds:.1f} extract_s={extract_seconds:.1f} "
          f"eval_f1={summary['eval_micro_f1']}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
