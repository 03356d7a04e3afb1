"""The `mid_data` stage's typed config and `synthesize`, which binds the engines to the project's files.

    summary, report = synthesize(cfg, sink, client, out_dir)

Order, and why: the checkpoint (data/cpt/model) is loaded once and serves the probe (what it already
knows, pass@k through the harness's option log-likelihoods) and the checkpoint experts; the KG engines
run first because agentic search answers the kept multi-hop chains with a real search tool; every
engine's kept samples are then decontaminated together against every benchmark; what survives is
written as samples/part-*.jsonl, and every rejected candidate, with its engine, gate and reason, as
rejected/part-*.jsonl. Accounting: the unit is the candidate an engine considered (an entity probed
for a chain, a QA item, an expert reply, an OCR row), so read == kept + rejected per engine and in total.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from tasks.common.config import project_root, resolve
from tasks.common.records import rejection
from tasks.mid_synthesis import agentic_image as ai
from tasks.mid_synthesis import agentic_search as ags
from tasks.mid_synthesis import kg_multihop as km
from tasks.mid_synthesis import kg_paths as kp
from tasks.mid_synthesis import rejection as rs
from tasks.mid_synthesis import reverse_cot as rc
from tasks.mid_synthesis import verify as vf
from tasks.mid_synthesis import visual_cot as vc
from tasks.mid_synthesis.decontam import decontaminate
from tasks.mid_synthesis.experts import CheckpointExpert, CheckpointModel, ChoiceProbe, EndpointExpert
from tasks.mid_synthesis.image_tools import ImageToolParams, ImageTools
from tasks.mid_synthesis.samples import FAMILIES, GateOutcome
from tasks.mid_synthesis.search_tool import SearchParams, SearchTool

Role = Literal["local", "llm"]


@dataclasses.dataclass
class RolesParams:
    """local = the mechanism in code (graph walks, gold answers, real tools, code checks); llm = the
    paper's prompts through the `llm:` endpoint."""
    hop_chooser: Role = "local"
    reasoning_writer: Role = "local"
    quality_judge: Role = "local"
    path_ranker: Role = "local"
    thinking_verifier: Role = "local"
    cot_writer: Role = "local"
    cot_judge: Role = "local"
    visual_cot: Role = "local"
    search_policy: Role = "local"


@dataclasses.dataclass
class ExpertSpec:
    name: str
    kind: Literal["checkpoint", "endpoint"] = "checkpoint"
    temperature: float = 0.7
    system: str = ""
    max_new_tokens: int = 192


@dataclasses.dataclass
class ProbeParams:
    k: int = 4                       # pass@k
    n: int = 8                       # samples per question (unbiased estimator over n >= k)
    batch_size: int = 8


@dataclasses.dataclass
class DecontamParams:
    ngram: int = 13
    phash_max_distance: int = 4
    max_items_per_ngram: int = 3
    benchmarks_dir: str = "benchmarks"      # under data_root


def _default_experts() -> list[ExpertSpec]:
    return [ExpertSpec("cpt@0.7", "checkpoint", 0.7),
            ExpertSpec("cpt@1.0", "checkpoint", 1.0, "You are a meticulous physician. Reason step by step."),
            ExpertSpec("llm@0.3", "endpoint", 0.3),
            ExpertSpec("llm@0.9", "endpoint", 0.9, "You are an experienced clinician who explains each step.")]


@dataclasses.dataclass
class MidDataConfig:
    kg_dir: str = "data/kg"
    checkpoint: str = "data/cpt/model"          # the current checkpoint: probe and checkpoint experts
    corpus_dir: str = "data/quality/kept"
    cpt_samples_dir: str = "data/cpt_data/samples"
    huatuo: str = "rl/huatuo_o1_demo.json"      # under data_root
    vqa_rad_train: str = "benchmarks/vqa_rad/trainset.json"   # under data_root
    data_root: str = "../shared/data"
    out_dir: str = "data/mid_data"
    seed: int = 1234
    shard_size: int = 50000
    device: str = "auto"
    engines: list[str] = dataclasses.field(default_factory=lambda: list(FAMILIES))
    roles: RolesParams = dataclasses.field(default_factory=RolesParams)
    probe: ProbeParams = dataclasses.field(default_factory=ProbeParams)
    experts: list[ExpertSpec] = dataclasses.field(default_factory=_default_experts)
    rejection_items: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"huatuo_o1": 20, "medquad": 10, "atomic_qa": 20, "vqa_rad": 10})
    rejection: rs.RejectionParams = dataclasses.field(default_factory=rs.RejectionParams)
    thinking: vf.ThinkingParams = dataclasses.field(default_factory=vf.ThinkingParams)
    kg_multihop: km.MultiHopParams = dataclasses.field(default_factory=km.MultiHopParams)
    kg_paths: kp.KGPathsParams = dataclasses.field(default_factory=kp.KGPathsParams)
    reverse_cot: rc.ReverseCoTParams = dataclasses.field(default_factory=rc.ReverseCoTParams)
    visual_cot: vc.VisualCoTParams = dataclasses.field(default_factory=vc.VisualCoTParams)
    search: SearchParams = dataclasses.field(default_factory=SearchParams)
    agentic_search: ags.AgenticSearchParams = dataclasses.field(default_factory=ags.AgenticSearchParams)
    agentic_image: ai.AgenticImageParams = dataclasses.field(default_factory=ai.AgenticImageParams)
    agentic_image_reports: int = 40              # rendered lab reports questioned (the first N)
    agentic_search_hops: list[int] = dataclasses.field(default_factory=lambda: [2, 3])   # chain length range
    agentic_search_entities: int = 0             # entities probed for those chains (0 = kg_multihop's)
    decontam: DecontamParams = dataclasses.field(default_factory=DecontamParams)
    previews: int = 3                            # sample trajectories per family, as MLflow artifacts

    def __post_init__(self):
        unknown = sorted(set(self.engines) - set(FAMILIES))
        if unknown:
            raise ValueError(f"engines: unknown {unknown}; known: {list(FAMILIES)}")

    @property
    def uses_llm(self) -> bool:
        return (any(e.kind == "endpoint" for e in self.experts) and "rejection_sampling" in self.engines) or \
            "llm" in dataclasses.asdict(self.roles).values()

    def under_data_root(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else resolve(self.data_root) / p


def _role(cfg: MidDataConfig, name: str, local, llm, client):
    if getattr(cfg.roles, name) == "llm":
        if client is None:
            raise ValueError(f"roles.{name}=llm needs the LLM endpoint (llm: section)")
        return llm(client)
    return local()


def rs_items(cfg: MidDataConfig, root: Path) -> list[rs.RSItem]:
    """The existing QA answered by the experts: gold answers from the sources themselves."""
    n, seed = cfg.rejection_items, cfg.seed
    rows = []
    if n.get("huatuo_o1"):
        rows += kp.load_huatuo(cfg.under_data_root(cfg.huatuo), n["huatuo_o1"], seed)
    if n.get("medquad"):
        rows += kp.load_medquad(resolve(cfg.corpus_dir), n["medquad"], seed)
    if n.get("atomic_qa"):
        rows += kp.load_atomic_qa(resolve(cfg.cpt_samples_dir), n["atomic_qa"], seed)
    if n.get("vqa_rad"):
        rows += kp.load_vqa_rad(cfg.under_data_root(cfg.vqa_rad_train), n["vqa_rad"], seed, root=root)
    phase = {"vqa_rad": 3}
    return [rs.RSItem(r["id"], r["question"], tuple(r.get("options") or ()), r["answer"], r["answer_kind"],
                      tuple(i["path"] for i in r.get("images") or ()), tuple(r.get("source_ids") or [r["id"]]),
                      phase.get(r["source"], 4)) for r in rows]


def open_experts(cfg: MidDataConfig, model: CheckpointModel | None, client) -> list:
    experts = []
    for e in cfg.experts:
        if e.kind == "checkpoint":
            experts.append(CheckpointExpert(model, e.name, e.system, e.temperature, max_new_tokens=e.max_new_tokens,
                                            seed=cfg.seed))
        elif client is not None:
            experts.append(EndpointExpert(client, e.name, e.system, e.temperature, e.max_new_tokens))
    return experts


def synthesize(cfg: MidDataConfig, client, out_dir: Path) -> tuple[GateOutcome, dict, list[dict], dict]:
    """(all engines' outcome after decontamination, per-engine outcomes, decontamination report, timings)."""
    from tasks.corpus.clean.decontam import BenchmarkIndex
    from tasks.knowledge_graph.graph import KnowledgeGraph

    root = project_root()
    timings: dict[str, float] = {}
    per: dict[str, GateOutcome] = {}
    extra: dict[str, Any] = {}
    on = set(cfg.engines)

    t = time.perf_counter()
    model = CheckpointModel.load(cfg.checkpoint, batch_size=cfg.probe.batch_size, seed=cfg.seed, device=cfg.device)
    probe = ChoiceProbe(model, k=cfg.probe.k, n=cfg.probe.n, seed=cfg.seed)
    g = km.TypedGraph.from_kg(KnowledgeGraph.load(resolve(cfg.kg_dir)),
                              precision=km.load_edge_precision(resolve(cfg.kg_dir) / "edge_precision.json"))
    timings["load_s"] = time.perf_counter() - t

    writer = _role(cfg, "reasoning_writer", km.LocalReasoningWriter, km.LLMReasoningWriter, client)
    judge = _role(cfg, "quality_judge", km.LocalQualityJudge, km.LLMQualityJudge, client)
    chains: list[dict] = []
    chooser = _role(cfg, "hop_chooser", km.LocalHopChooser, km.LLMHopChooser, client)
    if "kg_multihop" in on:
        t = time.perf_counter()
        stats: dict = {}
        per["kg_multihop"] = km.multihop_qa(g, probe, cfg.kg_multihop, cfg.seed, chooser=chooser, writer=writer,
                                            judge=judge, stats=stats)
        extra["kg_multihop"] = stats
        timings["kg_multihop_s"] = time.perf_counter() - t
    if "agentic_search" in on:
        # the search engine answers shorter chains from the same walker: every hop must be retrieved for
        # real, and retrieval success compounds over hops (~0.4 per hop at k=5 on this corpus)
        t = time.perf_counter()
        lo, hi = cfg.agentic_search_hops
        p = dataclasses.replace(cfg.kg_multihop, min_hops=lo, max_hops=hi,
                                max_probe_entities=cfg.agentic_search_entities or cfg.kg_multihop.max_probe_entities)
        stats = {}
        chains = km.chain_records(km.multihop_qa(g, probe, p, cfg.seed + 1, chooser=chooser, writer=writer,
                                                 judge=judge, stats=stats))
        extra["agentic_search_chains"] = stats
        timings["agentic_search_chains_s"] = time.perf_counter() - t
    if "kg_paths" in on:
        t = time.perf_counter()
        m, seed = cfg.kg_paths.max_items, cfg.seed
        items = [*kp.load_vqa_rad(cfg.under_data_root(cfg.vqa_rad_train), m.get("vqa_rad", 0), seed, root=root),
                 *kp.load_medquad(resolve(cfg.corpus_dir), m.get("medquad", 0), seed),
                 *kp.load_atomic_qa(resolve(cfg.cpt_samples_dir), m.get("atomic_qa", 0), seed),
                 *kp.load_huatuo(cfg.under_data_root(cfg.huatuo), m.get("huatuo_o1", 0), seed)]
        matcher = kp.build_matcher(g, [*cfg.kg_paths.stop_keys, *cfg.kg_paths.extra_stop_keys])
        ranker = _role(cfg, "path_ranker", kp.LocalPathRanker, kp.LLMPathRanker, client)
        stats = {}
        per["kg_paths"] = kp.kg_paths(items, g, matcher, cfg.kg_paths, seed, ranker=ranker, writer=writer,
                                      judge=judge, stats=stats)
        extra["kg_paths"] = stats
        timings["kg_paths_s"] = time.perf_counter() - t
    if "rejection_sampling" in on:
        t = time.perf_counter()
        verifier = _role(cfg, "thinking_verifier", lambda: vf.LocalThinkingVerifier(cfg.thinking),
                         lambda c: vf.LLMThinkingVerifier(c, cfg.thinking), client)
        out, by_expert = rs.rejection_sample(rs_items(cfg, root), open_experts(cfg, model, client), verifier,
                                             cfg.rejection, root)
        per["rejection_sampling"] = out
        extra["rejection_sampling"] = {"experts": by_expert}
        timings["rejection_sampling_s"] = time.perf_counter() - t
    captions = None
    if "reverse_cot" in on or "visual_cot" in on:
        captions = vc.load_captions(root)
    if "reverse_cot" in on:
        t = time.perf_counter()
        p = dataclasses.replace(cfg.reverse_cot, seed=cfg.seed)
        items, s1 = rc.load_kg_items(root, p)
        vqa, s2 = rc.load_vqa_rad_items(root, resolve(cfg.data_root), captions, p)
        reports, s3 = rc.load_report_items(root, p, captions=None)
        cot_writer = _role(cfg, "cot_writer", rc.LocalCoTWriter, lambda c: rc.LLMCoTWriter(c, p), client)
        cot_judge = _role(cfg, "cot_judge", lambda: rc.LocalCoTJudge(p), lambda c: rc.LLMCoTJudge(c, p), client)
        per["reverse_cot"] = rc.reverse_cot([*items, *vqa, *reports], cot_writer, cot_judge, p, root)
        extra["reverse_cot"] = {"loader_skips": {"kg": s1, "vqa_rad": s2, "reports": s3}}
        timings["reverse_cot_s"] = time.perf_counter() - t
    if "visual_cot" in on:
        t = time.perf_counter()
        p = dataclasses.replace(cfg.visual_cot, seed=cfg.seed)
        items, skips = vc.load_perception_items(root, resolve(cfg.data_root), captions, p)
        llm = cfg.roles.visual_cot == "llm"
        roles = ((vc.LLMAnalyst(client, p), vc.LLMReasoner(client, p), vc.LLMStylist(client, p)) if llm
                 else (vc.LocalAnalyst(), vc.LocalReasoner(), vc.LocalStylist()))
        per["visual_cot"] = vc.visual_cot(items, *roles, p, root)
        extra["visual_cot"] = {"loader_skips": skips}
        timings["visual_cot_s"] = time.perf_counter() - t
    if "agentic_search" in on:
        t = time.perf_counter()
        tool = SearchTool.from_corpus(str(resolve(cfg.corpus_dir)), cfg.search)
        policy = _role(cfg, "search_policy", lambda: ags.LocalSearchPolicy(cfg.agentic_search),
                       lambda c: ags.LLMSearchPolicy(c, cfg.agentic_search), client)
        per["agentic_search"] = ags.agentic_search(chains, tool, policy, cfg.agentic_search)
        extra["agentic_search"] = {"passages_indexed": len(tool.passages), "chains_offered": len(chains)}
        timings["agentic_search_s"] = time.perf_counter() - t
    if "agentic_image" in on:
        t = time.perf_counter()
        # crops are written under the stage's temporary output and referenced by their final path
        tools = ImageTools(root, out_dir / "images", ImageToolParams(image_dir=f"{cfg.out_dir}/images"))
        per["agentic_image"] = ai.agentic_image(
            ai.load_ocr_samples(resolve(cfg.cpt_samples_dir), limit=cfg.agentic_image_reports), tools,
            cfg.agentic_image, probe=probe)
        timings["agentic_image_s"] = time.perf_counter() - t

    t = time.perf_counter()
    d = cfg.decontam
    index = BenchmarkIndex.build(cfg.under_data_root(d.benchmarks_dir), ngram=d.ngram,
                                 phash_max_distance=d.phash_max_distance, max_items_per_ngram=d.max_items_per_ngram)
    kept = [s for fam in FAMILIES if fam in per for s in per[fam].kept]
    clean, report = decontaminate(kept, index)
    timings["decontamination_s"] = time.perf_counter() - t
    timings["probe_questions"] = float(probe.calls)
    return clean, {"engines": per, "extra": extra, "index_checked": sorted(index.checked)}, report, timings


def account(sink, clean: GateOutcome, engines: dict[str, GateOutcome], relative) -> dict:
    """Every candidate through the sink: kept samples, and each engine's and decontamination's rejections
    with engine and gate. Returns the per-engine table for the summary."""
    dropped = Counter(r["item"]["family"] for r in clean.rejected)
    table = {}
    for fam, out in engines.items():
        for r in out.rejected:
            sink.count_read()
            sink.reject({**rejection(r["reason"], r["detail"], locator=f"{fam}:{_loc(r['item'])}"),
                         "engine": fam, "gate": r["gate"], "item": relative(r["item"])})
        sink.count_read(len(out.kept))
        table[fam] = {"read": out.read, "kept": len(out.kept) - dropped[fam],
                      "rejected": len(out.rejected) + dropped[fam],
                      "rejected_by_gate": {**out.by_gate(), **({"decontamination": {
                          k: v for k, v in Counter(r["reason"] for r in clean.rejected
                                                   if r["item"]["family"] == fam).items()}} if dropped[fam] else {})}}
    for s in clean.kept:
        sink.keep(s)
    for r in clean.rejected:
        sink.reject({**rejection(r["reason"], r["detail"], locator=f"{r['item']['family']}:{r['item']['id']}"),
                     "engine": r["item"]["family"], "gate": "decontamination", "item": r["item"]})
    return table


def _loc(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("id") or item.get("question") or "")[:120]
    return str(item)[:120]
