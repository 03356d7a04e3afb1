"""The `entities` stage's config and logic (no DVC, no MLflow: see tasks/entities.py).

`extract_entities` trains the CRF on the gold PubTator train splits, scores it (and, side by side, the
LLM path) on the gold test splits, extracts every corpus document with the chosen extractor into the
stage's sink (documents are the unit: `mentions/` kept, `rejected/`), aggregates the entity table and
filters it (`rejected_entities/`). When the LLM is only the side-by-side comparison (`extractor: local`
with `eval.llm_docs > 0`), its scores, replies and failures come back in `EntitiesResult.comparison`
instead of being written: they depend on the endpoint (llama.cpp answers differently from machine to
machine), so they must not be part of the stage's DVC outputs.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from tasks.common.config import resolve
from tasks.common.io import StageSink, iter_records, shard_paths, write_json, write_jsonl
from tasks.common.records import rejection
from tasks.extraction.entity_table import EntityRejections, EntityTable
from tasks.extraction.gold import load_gold
from tasks.extraction.llm import LLMExtractor, LLMExtractParams
from tasks.extraction.local import CRFExtractor, CRFParams
from tasks.extraction.scoring import flat_metrics, score

MODEL_FILE = "crf_model.crfsuite"
COMPARISON_KEYS = ("llm_sample_doc_ids", "llm", "local_on_llm_sample")


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
    def uses_llm(self) -> bool:
        """The LLM extracts the corpus, or is scored beside the CRF."""
        return self.extractor == "llm" or self.eval.llm_docs > 0

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


@dataclasses.dataclass
class EntitiesResult:
    summary: dict                    # summary.json beside the sink's accounting
    metrics: dict                    # MLflow only: timings, throughput, scores, LLM stats
    comparison: dict | None = None   # the LLM side by side when extractor=local: {report, failures}


def input_shards(cfg: EntitiesConfig) -> list[Path]:
    shards = shard_paths(resolve(cfg.in_dir) / "kept")
    if not shards:
        raise FileNotFoundError(f"no input shards under {resolve(cfg.in_dir) / 'kept'}; run quality first")
    return shards


def process_corpus(cfg: EntitiesConfig, shards: list[Path], extractor, sink: StageSink,
                   rejected_entities: EntityRejections, table: EntityTable, failures: list[dict]) -> dict:
    """Extract every input document into `sink` and `table`; returns document/mention counts."""
    counts: Counter = Counter()
    cap = cfg.corpus_cap
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
                rejected_entities.add({**r, "doc_id": rec["id"], "source": rec["source"]})
        pending.clear()

    for rec, rej in iter_records(shards):
        if cap and sink.read >= cap:
            counts["stopped_at_cap"] = cap
            break
        sink.count_read(1, len((rec or {}).get("text", "").encode("utf-8", "surrogatepass")))
        if rej is not None:
            sink.reject(rej)
            continue
        pending.append(rec)
        if len(pending) >= cfg.doc_chunk:
            flush()
    if pending:
        flush()
    return dict(sorted(counts.items()))


def evaluate(cfg: EntitiesConfig, crf: CRFExtractor, llm: LLMExtractor | None, test_docs: list,
             failures: list[dict]) -> dict:
    """The CRF on the test split; the LLM and the CRF on the LLM's seeded sample (COMPARISON_KEYS)."""
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


def extract_entities(cfg: EntitiesConfig, out: Path, sink: StageSink, client=None,
                     shards: list[Path] | None = None) -> EntitiesResult:
    """Everything the stage writes into `out` (module docstring); `client` is needed when cfg.uses_llm."""
    shards = input_shards(cfg) if shards is None else shards
    if cfg.uses_llm and client is None:
        raise ValueError("entities: extractor=llm or eval.llm_docs > 0 needs an LLM client")
    llm = LLMExtractor(client, cfg.llm_extract, max_sentence_chars=cfg.max_sentence_chars,
                       max_entity_chars=cfg.max_entity_chars) if cfg.uses_llm else None
    side_by_side = llm is not None and cfg.extractor != "llm"
    gold_dir = resolve(cfg.data_root) / cfg.gold.dir
    test_docs, test_stats = load_gold(gold_dir, cfg.gold.test_files)
    train_docs, train_stats = load_gold(gold_dir, cfg.gold.train_files, exclude_pmids={d.pmid for d in test_docs})
    crf = CRFExtractor(out / MODEL_FILE, cfg.crf, max_sentence_chars=cfg.max_sentence_chars,
                       max_entity_chars=cfg.max_entity_chars)
    t0 = time.perf_counter()
    crf_stats = crf.train(train_docs)
    crf_seconds = time.perf_counter() - t0

    eval_failures: list[dict] = []
    t0 = time.perf_counter()
    report = evaluate(cfg, crf, llm, test_docs, eval_failures)
    eval_seconds = time.perf_counter() - t0
    comparison = {k: report.pop(k) for k in COMPARISON_KEYS if k in report} if side_by_side else {}
    report["gold"] = {"train": train_stats, "test": test_stats}
    report["crf_train"] = crf_stats
    write_json(out / "extraction_eval.json", report)

    rejected_entities = EntityRejections(out, cfg.shard_size)
    table = EntityTable()
    failures = [] if side_by_side else eval_failures
    t0 = time.perf_counter()
    counts = process_corpus(cfg, shards, llm if cfg.extractor == "llm" else crf, sink, rejected_entities,
                            table, failures)
    extract_seconds = time.perf_counter() - t0

    rows, rejected_rows = table.filtered(cfg.min_entity_count, cfg.min_type_entities)
    write_jsonl(out / "entities.jsonl", rows)
    for r in rejected_rows:
        rejected_entities.add(r)
    write_jsonl(out / "llm_failures.jsonl", failures)
    entity_counts = rejected_entities.close()

    table_types = Counter(r["type"] for r in rows)
    scores = {**report, **comparison}
    summary = {
        "extractor": cfg.extractor, **counts, **entity_counts,
        "entities_unique": len(table.count), "entities_in_table": len(rows),
        "mentions_in_table": sum(r["count"] for r in rows),
        "table_types": dict(sorted(table_types.items())),
        "llm_failed_sentences": len(failures),      # all in llm_failures.jsonl
        "crf_train": crf_stats,
        "eval_micro_f1": {k: report[k]["micro"]["f1"] for k in ("local", "llm", "local_on_llm_sample")
                          if k in report},
    }
    if cfg.extractor == "llm":
        summary["llm_extract"] = dict(sorted(llm.stats.items()))
    metrics = {"crf.train_seconds": crf_seconds, "crf.train_sentences": crf_stats["sentences"],
               "crf.train_tokens": crf_stats["tokens"], "crf.active_features": crf_stats["active_features"],
               "eval.seconds": eval_seconds, "extract.seconds": extract_seconds,
               "extract.docs_per_s": sink.read / max(extract_seconds, 1e-9),
               **{f"table.type.{t}": n for t, n in table_types.items()},
               **{f"rejected_entities.{k}": v for k, v in entity_counts["entities_rejected_by_reason"].items()}}
    for key in ("local", "llm", "local_on_llm_sample"):
        if key in scores:
            metrics.update(flat_metrics(f"eval.{key}", scores[key]))
    if llm is not None:
        metrics.update({f"llm_extract.{k}": v for k, v in llm.stats.items()})
    if side_by_side:
        metrics["eval.llm.failed_sentences"] = len(eval_failures)
    return EntitiesResult(summary, metrics, {"report": comparison, "failures": eval_failures} if side_by_side
                          else None)


def write_comparison(directory: Path, comparison: dict) -> list[Path]:
    """The side-by-side LLM comparison as files (for MLflow): its scores and its failures with raw replies."""
    report, failures = directory / "extraction_eval_llm.json", directory / "llm_failures.jsonl"
    write_json(report, comparison["report"])
    write_jsonl(failures, comparison["failures"])
    return [report, failures]
