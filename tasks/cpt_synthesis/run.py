"""The logic of stage `cpt_data`: every §3.3 part run over the pipeline's artifacts, written as one sample set.

    summary, timings = synthesize(cfg, sink, client, relative=...)   # CptDataConfig: the params section

Called by tasks/cpt_data.py (the runner owns config, LLM client, MLflow, the atomic output dir and closes
`sink`); nothing here knows MLflow or DVC. Outputs in `sink.out_dir`:
    samples/part-*.jsonl        CPT samples (tasks/cpt_synthesis/samples.py contract), validated before writing: the
                                synthesized ones and the corpus documents, each as often as the mixture
                                says (task "document", tasks/cpt_synthesis/documents.py)
    rejected/part-*.jsonl       corpus lines that are not valid records (the stage's read/kept/rejected)
    rejected_items/part-*.jsonl every item a synthesis part rejected, in the shape of rejected/
                                (records.rejection: reason, detail, record = the item) plus its `part`
    images/<sha[:2]>/<sha>.*    rendered OCR images and converted (CMYK / 16-bit) corpus images
    mixture.jsonl               entity-balanced repeats per corpus document (tasks/cpt_synthesis/mixing.py)
    summary.json                (written by the sink) counts per part and reason, samples per task,
                                mixing and documents reports; timings are returned apart (MLflow only)
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.common.config import resolve
from tasks.common.io import (
    ShardedJsonlWriter,
    StageSink,
    head_jsonl,
    iter_records,
    read_jsonl,
    shard_paths,
    write_jsonl,
)
from tasks.common.records import rejection
from tasks.corpus.images import ImageStore
from tasks.cpt_synthesis.caption_refine import (
    FactIndex,
    RefineParams,
    matcher_extractor,
    refine_captions,
)
from tasks.cpt_synthesis.documents import DocumentParams, corpus_entry, document_samples
from tasks.cpt_synthesis.image_attributes import SOURCES as IMAGE_SOURCES
from tasks.cpt_synthesis.image_attributes import ImageLimits, check_unit_image, image_units
from tasks.cpt_synthesis.image_knowledge import image_knowledge
from tasks.cpt_synthesis.kg_qa import KGQAParams, aggregated_qa, atomic_qa
from tasks.cpt_synthesis.mixing import mixing_plan
from tasks.cpt_synthesis.ocr_targets import OCRParams, synthesize_ocr
from tasks.cpt_synthesis.samples import Outcome, SampleError, check_text, validate_sample
from tasks.cpt_synthesis.self_contained import filter_self_contained

Role = Literal["local", "llm"]


@dataclasses.dataclass
class Roles:
    kg_qa: Role = "local"             # atomic questions, passages, passage questions
    caption: Role = "local"
    instructions: Role = "local"
    refine: Role = "local"            # revision suggestions + rewrite
    rubric: Role = "local"


@dataclasses.dataclass
class PerplexityConfig:
    enabled: bool = True              # needs base_model to exist; off -> every text sample kept unscored
    drop_high: float = 0.1
    drop_low: float = 0.0
    batch_size: int = 8
    max_tokens: int = 256
    threads: int = 2


@dataclasses.dataclass
class CptDataConfig:
    in_dir: str = "data/quality/kept"
    kg_dir: str = "data/kg"
    tree: str = "data/entity_tree/tree.json"
    manifest: str = "data/entity_map/balanced_manifest.jsonl"
    base_model: str = "data/base_model"
    out_dir: str = "data/cpt_data"
    seed: int = 1234
    shard_size: int = 50000
    max_edges: int = 0                # atomic QA: seeded sample of typed edges (0 = all)
    max_text_chars: int = 4000        # synthesized texts longer than this are rejected (text_too_long)
    max_image_units: int = 0          # images taken into label -> caption -> instruction (0 = all)
    stop_keys: list[str] = dataclasses.field(default_factory=list)   # entity matcher, as entity_map
    mixing_budget: int = 0            # document views in the mixture (0 = one per manifest row)
    roles: Roles = dataclasses.field(default_factory=Roles)
    kg_qa: KGQAParams = dataclasses.field(default_factory=KGQAParams)
    image: ImageLimits = dataclasses.field(default_factory=ImageLimits)
    refine: RefineParams = dataclasses.field(default_factory=RefineParams)
    ocr: OCRParams = dataclasses.field(default_factory=OCRParams)
    perplexity: PerplexityConfig = dataclasses.field(default_factory=PerplexityConfig)
    documents: DocumentParams = dataclasses.field(default_factory=DocumentParams)

    @property
    def uses_llm(self) -> bool:
        return "llm" in dataclasses.asdict(self.roles).values()


def item_rejection(part: str, rej: dict) -> dict:
    """An `Outcome` rejection as a rejected_items/ entry: records.rejection's shape (the item as its
    `record`, or as `locator` when it is not an object) plus the part that rejected it."""
    item = rej.get("item")
    entry = rejection(rej["reason"], rej["detail"], record=item if isinstance(item, dict) else None,
                      locator=None if item is None or isinstance(item, dict) else str(item))
    return {"part": part, **entry}


class Parts:
    """Per-part accounting: inputs, rejections (written with their part), samples out.

    `relative` makes absolute project / data-root paths in an entry relative (the stage passes
    ctx.relative), as the sink does for rejected/."""

    def __init__(self, out: Path, shard_size: int, relative: Callable[[Any], Any] = lambda obj: obj):
        self.rejected = ShardedJsonlWriter(out / "rejected_items", shard_size)
        self.relative = relative
        self.stats: dict[str, dict] = {}

    def record(self, part: str, inputs: int, outcome: Outcome) -> list:
        st = self.stats.setdefault(part, {"inputs": 0, "rejected": 0, "kept": 0, "rejected_by_reason": Counter()})
        st["inputs"] += inputs
        st["kept"] += len(outcome.kept)
        for r in outcome.rejected:
            st["rejected"] += 1
            st["rejected_by_reason"][r["reason"]] += 1
            self.rejected.write(self.relative(item_rejection(part, r)))
        return outcome.kept

    def summary(self) -> dict:
        self.rejected.close()
        return {k: {**v, "rejected_by_reason": dict(sorted(v["rejected_by_reason"].items()))}
                for k, v in sorted(self.stats.items())}


def _length_check(samples: list[dict], max_chars: int) -> Outcome:
    from tasks.cpt_synthesis.perplexity import sample_text
    out = Outcome()
    for s in samples:
        reason = check_text(sample_text(s), max_chars=max_chars)
        if reason:
            out.reject(reason, f"{len(sample_text(s))} chars", {"id": s["id"], "task": s["task"]})
        else:
            out.kept.append(s)
    return out


def writers(cfg: CptDataConfig, client):
    """The implementation of each role the config picks (local, or the LLM through `client`)."""
    from tasks.cpt_synthesis import caption_refine as cr
    from tasks.cpt_synthesis import image_knowledge as ik
    from tasks.cpt_synthesis import kg_qa
    r = cfg.roles
    if cfg.uses_llm and client is None:
        raise ValueError("cpt_data: a role is set to llm but no LLM client was opened")
    pick = {"local": lambda local, _llm: local(), "llm": lambda _local, llm: llm(client)}
    return (pick[r.kg_qa](kg_qa.LocalQAWriter, kg_qa.LLMQAWriter), pick[r.caption](ik.LocalCaptioner, ik.LLMCaptioner),
            pick[r.instructions](ik.LocalInstructionWriter, ik.LLMInstructionWriter),
            pick[r.refine](lambda: cr.LocalReviser(cfg.refine.max_facts), cr.LLMReviser),
            pick[r.rubric](cr.LocalRubric, cr.LLMRubric))


def synthesize(cfg: CptDataConfig, sink: StageSink, client=None, *,
               relative: Callable[[Any], Any] = lambda obj: obj, log=print) -> tuple[dict, dict]:
    """Every part, written under `sink.out_dir`; returns (summary entries, timings).

    The corpus records are the sink's unit (read, kept as CPT data, invalid lines rejected); the
    summary entries go into the sink's summary when the runner closes it."""
    from tasks.knowledge_graph.graph import KnowledgeGraph
    from tasks.mapping.automaton import EntityMatcher, tree_entries
    from tasks.tree.model import load_tree

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    qa_writer, captioner, instr_writer, reviser, rubric = writers(cfg, client)
    shards = shard_paths(resolve(cfg.in_dir))
    if not shards:
        raise SystemExit(f"cpt_data: no input shards under {cfg.in_dir}; run quality first")
    out = sink.out_dir
    parts = Parts(out, cfg.shard_size, relative)
    image_records = []
    docs: dict[str, dict] = {}           # doc_id -> corpus_entry: ~25k texts, tens of MB on the default corpus
    for rec, rej in iter_records(shards):
        sink.count_read(1)
        if rej is not None:
            sink.reject(rej)
            continue
        sink.keep_as([])                 # every valid document stays CPT data; its repeats come from the mixture
        if rec["source"] in IMAGE_SOURCES:
            image_records.append(rec)
        if cfg.documents.enabled:
            docs[rec["id"]] = corpus_entry(rec)

    # text knowledge from the KG (§3.3.1)
    t0 = time.perf_counter()
    kg_dir = resolve(cfg.kg_dir)
    nodes = read_jsonl(kg_dir / "nodes.jsonl")
    edges = read_jsonl(kg_dir / "edges.jsonl")
    typed = [e for e in edges if e.get("relation") in cfg.kg_qa.relations]
    if cfg.max_edges and len(typed) > cfg.max_edges:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(typed), cfg.max_edges, replace=False))
        typed = [typed[int(i)] for i in pick]
    params = dataclasses.replace(cfg.kg_qa, node_qa=cfg.kg_qa.node_qa and not cfg.max_edges)
    text = parts.record("atomic_qa", len(typed), atomic_qa(nodes, typed, qa_writer, params))
    graph = KnowledgeGraph.load(kg_dir)
    text += parts.record("aggregated_qa", cfg.kg_qa.walks, aggregated_qa(graph, qa_writer, cfg.kg_qa, cfg.seed))
    n_text = len(text)
    text = parts.record("length", n_text, _length_check(text, cfg.max_text_chars))
    text = parts.record("self_contained", len(text), filter_self_contained(text))
    timings["kg_text_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ppl_report: dict = {"enabled": False}
    model_dir = resolve(cfg.base_model) if cfg.base_model else None
    if cfg.perplexity.enabled and model_dir is not None and (model_dir / "config.json").exists():
        from tasks.cpt_synthesis.perplexity import (
            PerplexityScorer,
            sample_text,
            select_by_perplexity,
        )
        p = cfg.perplexity
        scorer = PerplexityScorer(str(model_dir), batch_size=p.batch_size, max_tokens=p.max_tokens, threads=p.threads)
        nll = scorer.nll([sample_text(s) for s in text])
        selected, ppl_report = select_by_perplexity(text, nll, drop_high=p.drop_high, drop_low=p.drop_low)
        text = parts.record("perplexity", len(text), selected)
        ppl_report["enabled"] = True
    elif cfg.perplexity.enabled:
        ppl_report["skipped"] = f"no HF checkpoint at {cfg.base_model}" if model_dir else "base_model is not set"
        log(f"cpt_data: perplexity selection skipped ({ppl_report['skipped']})")
    timings["perplexity_s"] = time.perf_counter() - t0

    # image knowledge and captions (§3.3.2, §3.3.3)
    t0 = time.perf_counter()
    store = ImageStore(out / "images", f"{cfg.out_dir.rstrip('/')}/images", cfg.image.max_pixels)
    units_out = image_units(image_records)
    units = parts.record("image_units", len(image_records), units_out)
    if cfg.max_image_units and len(units) > cfg.max_image_units:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(units), cfg.max_image_units, replace=False))
        units = [units[int(i)] for i in pick]
    checked = Outcome()
    for u in units:
        ok, reason, detail = check_unit_image(u, resolve("."), cfg.image, store.put_bytes)
        if ok is not None:
            checked.kept.append(ok)
        else:
            checked.reject(reason, detail, {"image": u.image, "source_ids": u.source_ids})
    units = parts.record("image_check", len(units), checked)
    ik_out, kinds = image_knowledge(units, captioner, instr_writer)
    image = parts.record("image_knowledge", len(units), ik_out)
    tree = load_tree(resolve(cfg.tree))
    extract = matcher_extractor(EntityMatcher(tree_entries(tree, cfg.stop_keys)))
    captions = [s for s in image if s["task"] == "caption"]
    refined = parts.record("caption_refine", len(captions), refine_captions(
        captions, extract, FactIndex(nodes, edges, cfg.kg_qa.relations, cfg.refine.facts_per_entity),
        reviser, rubric, cfg.refine))
    image = parts.record("image_self_contained", len(image) + len(refined), filter_self_contained(image + refined))
    timings["image_s"] = time.perf_counter() - t0

    # OCR (§3.3.4)
    t0 = time.perf_counter()
    ocr = parts.record("ocr", cfg.ocr.images, synthesize_ocr(cfg.ocr.images, cfg.seed, cfg.ocr, store.put_bytes))
    timings["ocr_s"] = time.perf_counter() - t0
    timings["ocr_images_per_s"] = cfg.ocr.images / max(timings["ocr_s"], 1e-9)

    # entity-balanced mixing (§3.3): repeats per corpus document, turned into document samples
    t0 = time.perf_counter()
    manifest = read_jsonl(resolve(cfg.manifest))
    mix, mix_report = mixing_plan(manifest, cfg.mixing_budget or len(manifest), cfg.seed)
    parts.record("mixing", len(manifest), Outcome([], mix.rejected))
    write_jsonl(out / "mixture.jsonl", mix.kept)
    documents: list[dict] = []
    doc_report: dict = {"enabled": False}
    if cfg.documents.enabled:
        doc_out, doc_report = document_samples(mix.kept, docs, cfg.documents, cfg.seed)
        documents = parts.record("documents", doc_report["views"], doc_out)
    docs.clear()
    timings["documents_s"] = time.perf_counter() - t0

    # write samples (validated once more: nothing leaves the stage outside the contract)
    writer = ShardedJsonlWriter(out / "samples", cfg.shard_size)
    invalid = Outcome()
    tasks: Counter = Counter()
    generators: Counter = Counter()
    for s in text + image + ocr + documents:
        try:
            validate_sample(s)
        except SampleError as e:
            invalid.reject(e.reason, e.detail, {"id": s.get("id")})
            continue
        writer.write(s)
        tasks[s["task"]] += 1
        generators[s["meta"]["generator"]] += 1
    writer.close()
    parts.record("contract", len(text) + len(image) + len(ocr) + len(documents), invalid)

    timings["total_s"] = time.perf_counter() - t_all
    summary = dict(samples=writer.count, samples_by_task=dict(sorted(tasks.items())),
                   samples_by_generator=dict(sorted(generators.items())), parts=parts.summary(),
                   instruction_kinds=dict(sorted(kinds.items())), perplexity=ppl_report, mixing=mix_report,
                   documents=doc_report, roles=dataclasses.asdict(cfg.roles), images_stored=store.stored)
    return summary, timings


def first_samples(out: Path, n: int = 30) -> list[dict]:
    """The first `n` samples written (what MLflow shows of the output)."""
    shards = shard_paths(out / "samples")
    return head_jsonl(shards[0], n) if shards else []
