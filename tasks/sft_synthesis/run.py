"""What the `sft_data` stage does, given its config (see tasks/sft_data.py for the stage).

    result = build_sft_set(cfg, client, out_dir)      # SFTBuild: samples, rejections by source, tables

1. pools (pools.py): mid-training samples, KG atomic QA as multiple choice, MedQuAD QA pairs, VQA-RAD train,
   the rendered lab-report QA, PubMedQA's labelled set minus its test split;
2. instruction following (instruct.py): forward, multi-turn, graph-implicit and reverse constructions over
   MedQuAD answers with the train split of the constraint library (eval/constraints.py), every reply
   verified by the constraints' checkers;
3. accuracy (consensus.py): the experts (`experts`: the checkpoint and the LLM endpoint at several
   temperatures and system prompts) and the current checkpoint's option distribution vote on every
   candidate no code vouches for; high consensus is kept, the rest escalated to the human queue
   (review_queue.py: Label Studio tasks under review_queue/, verified labels read back from
   `review_labels` when the file holds any);
4. prompt rewriting (rewrite.py): expression variants of a share of the accepted prompts, each checked
   to keep every entity (the KG automaton's matches), number and option;
5. decontamination of every sample against every benchmark (mid_synthesis/decontam.py: 13-grams, images);
6. coverage-balanced sampling (grid.py) over anatomical site x disease class x difficulty (the current
   checkpoint's pass rate): over-full cells cut, long-tail and high-risk cells repeated. A repeat is not a
   new record: the sample carries meta.coverage_repeats and the `sft` schedule trains it that many more
   times, so every record is counted once (read == kept + rejected per source).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from tasks.common.config import project_root, resolve
from tasks.common.io import iter_jsonl
from tasks.mapping.automaton import EntityMatcher, MatchEntry, key_of
from tasks.mid_synthesis.experts import CheckpointModel
from tasks.mid_synthesis.run import DecontamParams, ExpertSpec, ProbeParams, open_experts
from tasks.sft_synthesis import consensus as cs
from tasks.sft_synthesis import grid as gr
from tasks.sft_synthesis import instruct as ins
from tasks.sft_synthesis import review_queue as rq
from tasks.sft_synthesis import rewrite as rw
from tasks.sft_synthesis.pools import PoolParams, load_medquad_pool, load_pools
from tasks.sft_synthesis.samples import GateOutcome, user_text

ANNOTATED_TYPES = ("Anatomy", "Disease", "Symptom", "Chemical", "Procedure", "Test")


def _default_experts() -> list[ExpertSpec]:
    # two endpoint experts (another temperature and system prompt: independent errors); the checkpoint votes
    # through its option distribution (consensus.py), cheaper and steadier than its free generation
    return [ExpertSpec("llm@0.3", "endpoint", 0.3, max_new_tokens=96),
            ExpertSpec("llm@0.9", "endpoint", 0.9, "You are an experienced clinician. Be brief and precise.",
                       max_new_tokens=96)]


@dataclasses.dataclass
class SFTDataConfig:
    checkpoint: str = "data/mid_train/model"     # the current checkpoint: its option votes and pass rates
    kg_dir: str = "data/kg"
    data_root: str = "../shared/data"
    out_dir: str = "data/sft_data"
    review_labels: str = "reviews/sft_labels.json"   # a Label Studio JSON export of the review queue
    seed: int = 1234
    shard_size: int = 50000
    device: str = "auto"
    pools: PoolParams = dataclasses.field(default_factory=PoolParams)
    instruct: ins.InstructParams = dataclasses.field(default_factory=ins.InstructParams)
    instruct_writer: Literal["local", "llm"] = "local"
    instruct_base: int = 300                     # MedQuAD pairs the instruction data is built over (own draw)
    consensus: cs.ConsensusParams = dataclasses.field(default_factory=cs.ConsensusParams)
    experts: list[ExpertSpec] = dataclasses.field(default_factory=_default_experts)
    probe: ProbeParams = dataclasses.field(default_factory=ProbeParams)
    rewrite: rw.RewriteParams = dataclasses.field(default_factory=rw.RewriteParams)
    grid: gr.GridParams = dataclasses.field(default_factory=gr.GridParams)
    decontam: DecontamParams = dataclasses.field(default_factory=DecontamParams)
    previews: int = 3

    @property
    def uses_llm(self) -> bool:
        return (any(e.kind == "endpoint" for e in self.experts) or self.instruct_writer == "llm"
                or self.rewrite.rewriter == "llm")

    def under_data_root(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else resolve(self.data_root) / p


@dataclasses.dataclass
class SFTBuild:
    samples: list[dict]                          # the SFT set, originals with meta.coverage_repeats
    ledger: dict[str, GateOutcome]               # per source (and "rewrite"): read, kept, rejected with gates
    records: list[dict]                          # consensus records
    grid_rows: list[dict]                        # site x disease x band, before and after
    grid_table: dict[str, Any]
    decontam_report: list[dict]
    queue: dict[str, Any]                        # what went to the human queue and what came back
    timings: dict[str, float]


class Annotator:
    """Entities of the KG (types in ANNOTATED_TYPES) found by the project's word-bounded automaton, with their
    type and Medical Entity Tree class (the first level under the type, e.g. Disease > "infection")."""

    def __init__(self, nodes: list[dict]):
        entries, self.info = [], []
        for n in nodes:
            name, typ = n.get("name"), n.get("type")
            if typ not in ANNOTATED_TYPES or not isinstance(name, str) or len(name.strip()) < 3:
                continue
            path = n.get("tree_path") or []
            self.info.append((name, typ, path[1] if len(path) > 1 else None))
            acronym = name.isupper() and len(name) <= 4          # "CT" must not match "ct" inside text
            for surface in dict.fromkeys([name, n.get("norm") or name]):
                if key_of(surface).strip():
                    entries.append(MatchEntry(surface, len(self.info) - 1, acronym))
        self.matcher = EntityMatcher(entries)

    @classmethod
    def from_kg(cls, kg_dir: Path) -> Annotator:
        return cls([n for n, _ in iter_jsonl(kg_dir / "nodes.jsonl") if n])

    def __call__(self, text: str) -> list[tuple[str, str, str | None]]:
        return [self.info[p] for p in dict.fromkeys(p for _, _, p in self.matcher.scan(text))]

    def names(self, text: str) -> list[str]:
        return [name for name, _, _ in self(text)]


def instruct_base(medquad: list[dict], annotate: Annotator, n: int) -> list[dict]:
    """The instruction-following base items: MedQuAD QA pairs, keywords = entities of the question."""
    rows = []
    for s in sorted(medquad, key=lambda s: s["id"])[:n]:
        q = user_text(s)
        rows.append({"id": s["id"], "question": q, "answer": str(s["meta"]["answer"]),
                     "source_ids": list(s["source_ids"]), "keywords": annotate.names(q)[:3]})
    return rows


def _probeable(sample: dict) -> bool:
    """A choice or judgement sample whose options the checkpoint can be asked (mid-training's choice samples
    state their options in the prompt only)."""
    try:
        return cs.answer_options(sample) is not None
    except ValueError:
        return False


def _ledger_key(sample: dict) -> str:
    return "rewrite" if sample["meta"].get("rewrite_of") else sample["family"]


def _reject_into(ledger: dict[str, GateOutcome], rejected: list[dict], by_id: dict[str, dict]) -> None:
    for r in rejected:
        item = r.get("item") or {}
        sample = by_id.get(item.get("id")) if isinstance(item, dict) else None
        key = _ledger_key(sample) if sample else (item.get("source") or item.get("family")
                                                  if isinstance(item, dict) else None)
        if key not in ledger:
            raise RuntimeError(f"a rejection ({r.get('gate')}/{r.get('reason')}) of no known source: {str(item)[:200]}")
        ledger[key].rejected.append(r)


def build_sft_set(cfg: SFTDataConfig, client, out_dir: Path) -> SFTBuild:
    from tasks.corpus.clean.decontam import BenchmarkIndex
    from tasks.mid_synthesis.decontam import decontaminate

    root = project_root()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pools = load_pools(cfg.pools, root, resolve(cfg.data_root), cfg.seed)
    annotate = Annotator.from_kg(resolve(cfg.kg_dir))
    timings["pools_s"] = time.perf_counter() - t

    t = time.perf_counter()
    # the instruction data's content is MedQuAD's NIH-written answers, drawn apart from the medquad pool: the
    # experts here cannot vote on a paragraph-long open answer (consensus.py), so the constraints are what
    # code verifies and the source's curation is what vouches for the facts
    writer = ins.LLMInstructWriter(client) if cfg.instruct_writer == "llm" else ins.LocalInstructWriter()
    drawn = load_medquad_pool(root / cfg.pools.quality_kept, cfg.instruct_base, cfg.seed + 1,
                              cfg.pools.max_answer_chars).kept if cfg.instruct_base else []
    base = instruct_base(drawn, annotate, cfg.instruct_base)
    pools["instruct"] = ins.build_instruct(base, writer, cfg.instruct, cfg.seed)
    timings["instruct_s"] = time.perf_counter() - t

    ledger = {src: GateOutcome(read=out.read, rejected=list(out.rejected)) for src, out in pools.items()}
    ledger["rewrite"] = GateOutcome()
    candidates = [s for out in pools.values() for s in out.kept]

    t = time.perf_counter()
    model = CheckpointModel.load(cfg.checkpoint, batch_size=cfg.probe.batch_size, seed=cfg.seed, device=cfg.device)
    records = cs.score_candidates(candidates, open_experts(cfg, model, client), model, cfg.consensus)
    accepted, escalated = cs.split_by_consensus(candidates, records, cfg.consensus)
    queue = rq.export_queue(escalated, records, out_dir)
    reviewed = rq.import_labels(resolve(cfg.review_labels), escalated)
    accepted += reviewed.kept
    # difficulty = the checkpoint's pass rate: from the consensus probe, else asked now (code-verified and
    # reviewer-corrected choice/judgement samples); open answers have none and sit in the "unknown" band
    difficulty = {r["id"]: r["pass_rate"] for r in records}
    difficulty.update(cs.pass_rates([s for s in accepted if s["id"] not in difficulty and _probeable(s)], model))
    timings["consensus_s"] = time.perf_counter() - t
    queue = {"exported": queue, "imported": len(reviewed.kept), "label_errors": reviewed.label_errors,
             "awaiting_review": sum(r["reason"] == "awaiting_review" for r in reviewed.rejected)}

    t = time.perf_counter()
    rewriter = rw.make_rewriter(cfg.rewrite, client)
    variants = rw.rewrite_samples(accepted, rewriter, annotate.names, cfg.rewrite, cfg.seed)
    ledger["rewrite"].read = variants.read
    timings["rewrite_s"] = time.perf_counter() - t

    t = time.perf_counter()
    d = cfg.decontam
    index = BenchmarkIndex.build(cfg.under_data_root(d.benchmarks_dir), ngram=d.ngram,
                                 phash_max_distance=d.phash_max_distance, max_items_per_ngram=d.max_items_per_ngram)
    clean, report = decontaminate([*accepted, *variants.kept], index)
    # a paraphrase of a contaminated prompt can slip under the 13-gram check: it goes with its original
    tainted = {r["item"]["id"] for r in clean.rejected}
    for s in [s for s in clean.kept if s["meta"].get("rewrite_of") in tainted]:
        clean.kept.remove(s)
        clean.reject("decontamination", "original_contaminated", s["meta"]["rewrite_of"], {"id": s["id"]})
    timings["decontamination_s"] = time.perf_counter() - t

    t = time.perf_counter()
    cells = [gr.cell_of(s, annotate, difficulty, cfg.grid) for s in clean.kept]
    selected, table = gr.balance(clean.kept, cells, cfg.grid, cfg.seed)
    timings["grid_s"] = time.perf_counter() - t
    repeats = Counter(s["meta"]["repeat_of"] for s in selected if s["meta"].get("repeat_of"))
    samples = [{**s, "meta": {**s["meta"], "coverage_repeats": repeats[s["id"]]}}
               for s in selected if not s["meta"].get("repeat_of")]

    by_id = {s["id"]: s for s in [*candidates, *reviewed.kept, *variants.kept]}
    for r in variants.rejected:
        ledger["rewrite"].rejected.append(r)
    _reject_into(ledger, reviewed.rejected, by_id)
    _reject_into(ledger, clean.rejected, by_id)
    _reject_into(ledger, table["outcome"].rejected, by_id)
    for s in samples:
        ledger[_ledger_key(s)].kept.append(s)
    rows = gr.grid_table(table["before"], table["after"])
    return SFTBuild(samples, ledger, records, rows, table, report, queue, timings)
