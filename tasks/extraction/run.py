"""The `entities` stage's config and logic (no DVC, no MLflow: see tasks/entities.py).

`extract_entities` trains the CRF on the gold PubTator train splits, scores it (and, side by side, the
LLM path) on the gold test splits, extracts every corpus document with the chosen extractor into the
stage's sink (documents are the unit: `mentions/` kept, `rejected/`; the CRF's per-document extraction
runs sharded in Ray workers, tasks/common/engine.py, and its results are aggregated here in input
order), aggregates the entity table and filters it (`rejected_entities/`). When the LLM is only the side-by-side comparison (`extractor: local`
with `eval.llm_docs > 0`), its scores, replies and failures come back in `EntitiesResult.comparison`
instead of being written: they depend on the endpoint (llama.cpp answers differently from machine to
machine), so they must not be part of the stage's DVC outputs.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from tasks.common.config import resolve
from tasks.common.engine import (
    EngineConfig,
    Shard,
    check_shard_accounting,
    iter_shard_records,
    map_shards,
    plan_jsonl_shards,
)
from tasks.common.io import StageSink, shard_paths, write_json, write_jsonl
from tasks.common.records import rejection
from tasks.extraction.common import DocResult, mention
from tasks.extraction.entity_table import EntityRejections, EntityTable
from tasks.extraction.gold import load_gold
from tasks.extraction.llm import LLMExtractor, LLMExtractParams
from tasks.extraction.local import CRFExtractor, CRFParams
from tasks.extraction.review import ReviewParams, ReviewSample, precision_by_type
from tasks.extraction.scoring import flat_metrics, recall_on_spans, score
from tasks.extraction.vocabulary import ENTITY_TYPES, GOLD_TYPE_OF, VocabularyParams, load_mesh_vocabulary
from tasks.extraction.weak_labels import WeakLabeller, WeakParams, augment_gold, weak_training_docs

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
    llm_docs: int = 4                # seeded sample of gold test abstracts for the LLM path (0 = skip)


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
    alt_type_min_share: float = 0.2  # a norm's other types seen in >= this share of its mentions: alt_types
    typing: Literal["vocabulary", "gold"] = "vocabulary"   # 8 MeSH-derived types | the gold corpora's 2
    gold: GoldConfig = dataclasses.field(default_factory=GoldConfig)
    crf: CRFParams = dataclasses.field(default_factory=CRFParams)
    vocabulary: VocabularyParams = dataclasses.field(default_factory=VocabularyParams)
    weak: WeakParams = dataclasses.field(default_factory=WeakParams)
    review: ReviewParams = dataclasses.field(default_factory=ReviewParams)
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
        """An LLM's type names (lower-cased) -> the project's types."""
        out = {}
        for canon, aliases in self.type_aliases.items():
            for a in [canon, *aliases]:
                out[a.lower()] = canon
        return out

    def gold_type_map(self) -> dict[str, str]:
        """Predicted type names -> the gold corpora's types (Symptom is scored as Disease)."""
        out = {t.lower(): GOLD_TYPE_OF.get(t, t) for t in ENTITY_TYPES}
        out.update({a: GOLD_TYPE_OF.get(c, c) for a, c in self.type_map().items()})
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


@dataclasses.dataclass(frozen=True)
class CrfShared:
    """What an extraction worker needs: the trained model's bytes (shipped once through the object
    store) and how the extractor was built."""
    model_bytes: bytes
    params: CRFParams
    max_sentence_chars: int
    max_entity_chars: int


_CRFS: dict[str, CRFExtractor] = {}   # per worker process: model sha256 -> loaded extractor


def load_shared_crf(shared: CrfShared) -> CRFExtractor:
    """The CRF from its bytes, loaded once per process; the model file lives in a temporary
    directory removed when the process exits (crfsuite reads its model from a file)."""
    key = hashlib.sha256(shared.model_bytes).hexdigest()
    if key not in _CRFS:
        tmp = Path(tempfile.mkdtemp(prefix="crf-"))
        atexit.register(shutil.rmtree, tmp, True)
        path = tmp / MODEL_FILE
        path.write_bytes(shared.model_bytes)
        _CRFS.clear()
        _CRFS[key] = CRFExtractor.load(path, params=shared.params, max_sentence_chars=shared.max_sentence_chars,
                                       max_entity_chars=shared.max_entity_chars)
    return _CRFS[key]


def extract_shard(shard: Shard, shared: CrfShared) -> list[tuple[dict | None, dict | None, DocResult | None]]:
    """The engine's map function: (record, upstream rejection, the CRF's DocResult) for every input
    of one shard, in order (the CRF extracts each document on its own, so shards change nothing)."""
    items = list(iter_shard_records(shard))
    docs = [rec for rec, rej in items if rej is None]
    results = iter(load_shared_crf(shared).extract([(r["id"], r["text"]) for r in docs]))
    return [(rec, rej, None if rej is not None else next(results)) for rec, rej in items]


def process_corpus(cfg: EntitiesConfig, shards: list[Path], extractor, sink: StageSink,
                   rejected_entities: EntityRejections, table: EntityTable, failures: list[dict],
                   review: ReviewSample | None = None, dictionary: dict[str, str] | None = None,
                   engine: EngineConfig | None = None) -> tuple[dict, list[dict]]:
    """Extract every input document into `sink` and `table`; returns (document/mention counts,
    per-shard accounting).

    The CRF (`extractor.name == "local"`) runs in the engine's workers, one shard of
    `engine.shard_records` documents each, its results taken here in input order. The LLM path
    stays in this process: its requests batch sentences across `doc_chunk` documents, and the
    endpoint is one server.

    A document some of whose sentences failed (LLM path) keeps the entities of the sentences that
    were parsed, with `failed_sentences` on its line; the failures are recorded with their raw
    replies. Only a document none of whose sentences could be done is rejected (extraction_failed).
    `dictionary` (term -> type) counts how many mentions of each type the typed vocabulary holds,
    with the same or another type, and how many it does not (the extractor generalising)."""
    engine = engine or EngineConfig(workers=1)
    counts: Counter = Counter()
    cap = cfg.corpus_cap
    type_map = cfg.type_map() if cfg.extractor == "llm" else {}
    plan = plan_jsonl_shards(shards, engine.shard_records, limit=cap)
    if plan.truncated:
        counts["stopped_at_cap"] = cap
    rows = [{"shard": s.index, "read": 0, "kept": 0, "rejected": 0} for s in plan.shards]

    def record(rec: dict, res: DocResult, row: dict) -> None:
        counts["sentences"] += res.sentences
        if res.failures:
            failures.extend({"phase": "corpus", **f} for f in res.failures)
            counts["sentences_failed"] += len(res.failures)
            if len(res.failures) >= res.sentences:
                rej = rejection("extraction_failed",
                                f"{len(res.failures)} of {res.sentences} sentences failed", record=rec)
                rej["failures"] = res.failures
                sink.reject(rej)
                row["rejected"] += 1
                return
            counts["docs_partially_extracted"] += 1
        if type_map:
            for m in res.entities:
                m["type"] = type_map.get(m["type"].lower(), m["type"])
        line = {"doc_id": rec["id"], "source": rec["source"], "entities": res.entities}
        if res.failures:
            line["failed_sentences"] = len(res.failures)
        sink.keep(line)
        row["kept"] += 1
        table.add_document(res.entities)
        counts["mentions"] += len(res.entities)
        counts["mentions_unlocated"] += sum(m["start"] is None for m in res.entities)
        counts["docs_without_text"] += not rec["text"].strip()
        counts["docs_with_entities"] += bool(res.entities)
        for m in res.entities:
            if review is not None:
                review.add(rec["id"], rec["text"], m)
            if dictionary is not None:
                d = dictionary.get(m["norm"])
                counts[f"vocab.{m['type']}.{'same' if d == m['type'] else 'other' if d else 'absent'}"] += 1
        for r in res.rejected:
            rejected_entities.add({**r, "doc_id": rec["id"], "source": rec["source"]})

    def read(rec: dict | None, rej: dict | None, row: dict) -> bool:
        """Count one input; reject it if it is not a record. True when it is a document."""
        sink.count_read(1, len((rec or {}).get("text", "").encode("utf-8", "surrogatepass")))
        row["read"] += 1
        if rej is not None:
            sink.reject(rej)
            row["rejected"] += 1
        return rej is None

    if isinstance(extractor, CRFExtractor):
        shared = CrfShared(extractor.model_path.read_bytes(), extractor.params, extractor.max_sentence_chars,
                           extractor.max_entity_chars)
        for row, items in zip(rows, map_shards(extract_shard, plan.shards, cfg=engine, shared=shared)):
            for rec, rej, res in items:
                if read(rec, rej, row):
                    record(rec, res, row)
    else:
        pending: list[tuple[dict, dict]] = []

        def flush() -> None:
            results = extractor.extract([(r["id"], r["text"]) for r, _ in pending])
            for (rec, row), res in zip(pending, results):
                record(rec, res, row)
            pending.clear()

        for shard, row in zip(plan.shards, rows):
            for rec, rej in iter_shard_records(shard):
                if read(rec, rej, row):
                    pending.append((rec, row))
                    if len(pending) >= cfg.doc_chunk:
                        flush()
        if pending:
            flush()
    check_shard_accounting(rows, sink.read, sink.kept_inputs, sink.rejected.count)
    return dict(sorted(counts.items())), rows


def evaluate(cfg: EntitiesConfig, crf: CRFExtractor, llm: LLMExtractor | None, test_docs: list,
             failures: list[dict]) -> dict:
    """The CRF on the test split; the LLM and the CRF on the LLM's seeded sample (COMPARISON_KEYS)."""
    local_docs = test_docs[:cfg.eval.local_max_docs] if cfg.eval.local_max_docs else test_docs
    pairs = lambda docs: [(d.doc_id, d.text) for d in docs]  # noqa: E731
    gold_map = cfg.gold_type_map()
    out = {"match": "exact span and type", "test_files": cfg.gold.test_files,
           "gold_type_map": "predicted Symptom counts as the gold corpora's Disease; types the corpora do "
                            "not annotate are ignored (ignored_predictions_by_type)",
           "local": score(local_docs, crf.extract(pairs(local_docs)), gold_map)}
    if llm is not None and cfg.eval.llm_docs:
        n = min(cfg.eval.llm_docs, len(test_docs))
        idx = sorted(random.Random(cfg.seed).sample(range(len(test_docs)), n))
        sample = [test_docs[i] for i in idx]
        results = llm.extract(pairs(sample))
        for r in results:
            failures.extend({"phase": "eval", **f} for f in r.failures)
        out["llm_sample_doc_ids"] = [d.doc_id for d in sample]
        out["llm"] = score(sample, results, gold_map)
        out["llm"]["failed_sentences"] = sum(len(r.failures) for r in results)
        out["llm"]["sentences"] = sum(r.sentences for r in results)
        out["local_on_llm_sample"] = score(sample, crf.extract(pairs(sample)), gold_map)
    return out


def dictionary_results(labeller: WeakLabeller, docs: list) -> list[DocResult]:
    """The typed dictionary alone as an extractor: the baseline the trained CRF is compared with."""
    out = []
    for d in docs:
        res = DocResult(d.doc_id)
        res.entities = [mention(d.text[s:e], t, s, e) for s, e, t in labeller.spans(d.text)]
        out.append(res)
    return out


def training_data(cfg: EntitiesConfig, shards: list[Path], test_docs: list
                  ) -> tuple[list, dict, object, dict]:
    """(CRF training documents, gold stats, typed vocabulary or None, typing report).

    typing=gold: the gold corpora's training splits as they are (Chemical, Disease). typing=vocabulary:
    the same splits with dictionary labels for the types they do not annotate, plus weakly labelled
    corpus sentences (tasks/extraction/weak_labels.py)."""
    gold_dir = resolve(cfg.data_root) / cfg.gold.dir
    train_docs, train_stats = load_gold(gold_dir, cfg.gold.train_files, exclude_pmids={d.pmid for d in test_docs},
                                        max_docs=cfg.crf.max_train_docs)
    if cfg.typing == "gold":
        return train_docs, train_stats, None, {"typing": "gold", "types": sorted(
            {t for d in train_docs for *_, t in d.mentions})}
    vocab = load_mesh_vocabulary(resolve(cfg.data_root) / cfg.vocabulary.path, cfg.vocabulary, cfg.seed)
    gold_aug, aug_stats = augment_gold(train_docs, vocab, cfg.weak.gene_pattern)
    weak = weak_training_docs(shards, vocab, cfg.weak, cfg.seed, cfg.max_sentence_chars)
    report = {"typing": "vocabulary", "types": list(ENTITY_TYPES), "vocabulary": vocab.stats,
              "gold_augmentation": aug_stats, "weak": weak.stats}
    return gold_aug + weak.train, train_stats, (vocab, weak), report


def extract_entities(cfg: EntitiesConfig, out: Path, sink: StageSink, client=None,
                     shards: list[Path] | None = None, engine: EngineConfig | None = None) -> EntitiesResult:
    """Everything the stage writes into `out` (module docstring); `client` is needed when cfg.uses_llm."""
    shards = input_shards(cfg) if shards is None else shards
    if cfg.uses_llm and client is None:
        raise ValueError("entities: extractor=llm or eval.llm_docs > 0 needs an LLM client")
    review_labels = resolve(cfg.review.review_labels) if cfg.review.review_labels else None
    if review_labels is not None and not review_labels.is_file():
        raise FileNotFoundError(f"entities: review.review_labels {review_labels} does not exist")
    llm = LLMExtractor(client, cfg.llm_extract, max_sentence_chars=cfg.max_sentence_chars,
                       max_entity_chars=cfg.max_entity_chars) if cfg.uses_llm else None
    side_by_side = llm is not None and cfg.extractor != "llm"
    gold_dir = resolve(cfg.data_root) / cfg.gold.dir
    test_docs, test_stats = load_gold(gold_dir, cfg.gold.test_files)
    train_docs, train_stats, typed, typing_report = training_data(cfg, shards, test_docs)
    # crf.max_train_docs caps the gold documents (training_data), never the weakly labelled ones
    crf = CRFExtractor(out / MODEL_FILE, dataclasses.replace(cfg.crf, max_train_docs=0),
                       max_sentence_chars=cfg.max_sentence_chars,
                       max_entity_chars=cfg.max_entity_chars)
    t0 = time.perf_counter()
    crf_stats = crf.train(train_docs)
    crf_seconds = time.perf_counter() - t0

    eval_failures: list[dict] = []
    t0 = time.perf_counter()
    report = evaluate(cfg, crf, llm, test_docs, eval_failures)
    dictionary = None
    if typed is not None:
        vocab, weak = typed
        dictionary = vocab.all_terms()
        # the baseline: the whole typed dictionary (held-out terms too) as the extractor, same gold
        report["dictionary"] = score(test_docs, dictionary_results(WeakLabeller(dictionary), test_docs),
                                     cfg.gold_type_map())
        report["heldout_terms"] = {
            "what": "recall on occurrences of dictionary terms never used to label training text; "
                    "the dictionary finds none of them by construction",
            "local": recall_on_spans(weak.heldout_eval, crf.extract([(d.doc_id, d.text) for d in weak.heldout_eval]))}
    eval_seconds = time.perf_counter() - t0
    comparison = {k: report.pop(k) for k in COMPARISON_KEYS if k in report} if side_by_side else {}
    report["gold"] = {"train": train_stats, "test": test_stats}
    report["crf_train"] = crf_stats
    report["typing"] = typing_report

    rejected_entities = EntityRejections(out, cfg.shard_size)
    table = EntityTable()
    failures = [] if side_by_side else eval_failures
    review = ReviewSample(cfg.review, cfg.seed, dictionary or {})
    t0 = time.perf_counter()
    counts, shard_rows = process_corpus(cfg, shards, llm if cfg.extractor == "llm" else crf, sink,
                                        rejected_entities, table, failures, review, dictionary, engine)
    extract_seconds = time.perf_counter() - t0
    sample = review.rows()
    write_jsonl(out / "type_review_sample.jsonl", sample)
    if review_labels is not None:
        report["reviewed"] = precision_by_type(sample, review_labels)
    write_json(out / "extraction_eval.json", report)

    rows, rejected_rows = table.filtered(cfg.min_entity_count, cfg.min_type_entities, cfg.alt_type_min_share)
    write_jsonl(out / "entities.jsonl", rows)
    for r in rejected_rows:
        rejected_entities.add(r)
    write_jsonl(out / "llm_failures.jsonl", failures)
    entity_counts = rejected_entities.close()

    vocab_counts = {k: v for k, v in counts.items() if k.startswith("vocab.")}
    counts = {k: v for k, v in counts.items() if not k.startswith("vocab.")}
    table_types = Counter(r["type"] for r in rows)
    mention_types = Counter()
    for r in rows:
        mention_types.update(r["types"])
    scores = {**report, **comparison}
    summary = {
        "extractor": cfg.extractor, "typing": cfg.typing, **counts, **entity_counts,
        "entities_unique": len(table.count), "entities_in_table": len(rows),
        "mentions_in_table": sum(r["count"] for r in rows),
        "table_types": dict(sorted(table_types.items())),
        "table_mentions_by_type": dict(sorted(mention_types.items())),
        "table_multi_type": sum(bool(r["alt_types"]) for r in rows),
        "llm_failed_sentences": len(failures),      # all in llm_failures.jsonl
        "crf_train": crf_stats,
        "eval_micro_f1": {k: report[k]["micro"]["f1"] for k in ("local", "llm", "local_on_llm_sample", "dictionary")
                          if k in report},
        "review_sample": dict(sorted(Counter(r["type"] for r in sample).items())),
        "shards": shard_rows,
    }
    if vocab_counts:
        summary["mentions_vs_dictionary"] = vocab_counts
    if "heldout_terms" in report:
        summary["heldout_term_recall"] = report["heldout_terms"]["local"]["all"]
    if cfg.extractor == "llm":
        summary["llm_extract"] = dict(sorted(llm.stats.items()))
    metrics = {"crf.train_seconds": crf_seconds, "crf.train_sentences": crf_stats["sentences"],
               "crf.train_tokens": crf_stats["tokens"], "crf.active_features": crf_stats["active_features"],
               "eval.seconds": eval_seconds, "extract.seconds": extract_seconds,
               "extract.docs_per_s": sink.read / max(extract_seconds, 1e-9),
               **{f"table.type.{t}": n for t, n in table_types.items()},
               **{f"table.mentions.{t}": n for t, n in mention_types.items()},
               **{f"rejected_entities.{k}": v for k, v in entity_counts["entities_rejected_by_reason"].items()}}
    for key in ("local", "llm", "local_on_llm_sample", "dictionary"):
        if key in scores:
            metrics.update(flat_metrics(f"eval.{key}", scores[key]))
    for t, r in report.get("heldout_terms", {}).get("local", {}).items():
        metrics[f"eval.heldout_terms.{t}.recall"] = r["recall"]
        metrics[f"eval.heldout_terms.{t}.span_recall"] = r["span_recall"]
    for t, r in report.get("reviewed", {}).get("by_type", {}).items():
        metrics[f"eval.reviewed.{t}.precision"] = r["precision"]
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
