"""The kg stage's config and logic (no DVC, no MLflow: see tasks/kg.py)."""

from __future__ import annotations

import hashlib
import heapq
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tasks.common.config import resolve
from tasks.common.io import (
    ShardedJsonlWriter,
    StageSink,
    head_jsonl,
    iter_jsonl,
    iter_records,
    shard_paths,
    write_json,
    write_jsonl,
)
from tasks.knowledge_graph.graph import write_graph
from tasks.knowledge_graph.heldout import HeldOutCid
from tasks.knowledge_graph.llm import LLMRelationExtractor, LLMRelationParams
from tasks.knowledge_graph.plot import overview_plot
from tasks.knowledge_graph.relations import (
    RELATIONS,
    Hit,
    PatternExtractor,
    Sentence,
    sentence_units,
)
from tasks.knowledge_graph.review import load_labels, review_report, review_sample
from tasks.knowledge_graph.signatures import (
    RelationSignature,
    SignatureCheck,
    check_relations,
    default_signatures,
)
from tasks.knowledge_graph.sources import (
    DEFAULT_QTYPE_RELATIONS,
    KINDS,
    Cooccurrence,
    EdgeStore,
    TreeLookup,
    add_cooccurrence_edges,
    cid_relations,
    medquad_links,
)
from tasks.mapping.automaton import EntityMatcher, tree_entries
from tasks.tree.model import ENTITY, Tree, load_tree

Role = Literal["local", "llm"]


@dataclass
class MedquadParams:
    enabled: bool = True
    # question type -> relation (focus = head); types not listed are counted, not linked
    qtype_relations: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_QTYPE_RELATIONS))
    max_tails: int = 40              # answer entities linked per record at most (first by position)
    focus_min_cover: float = 0.5     # partial focus match: share of the focus's characters covered

    def __post_init__(self):
        bad = sorted(r for r in self.qtype_relations.values() if r not in RELATIONS)
        if bad:
            raise ValueError(f"qtype_relations: unknown relation(s) {bad}; known: {list(RELATIONS)}")


@dataclass
class CooccurrenceParams:
    enabled: bool = True
    min_count: int = 3               # sentences the pair shares at least
    min_npmi: float = 0.2            # normalised PMI at least (> 0: only positive association)
    max_pairs_per_sentence: int = 45 # = all pairs of 10 entities; more -> nearest pairs first

    def __post_init__(self):
        if self.min_count < 1 or not 0 < self.min_npmi <= 1 or self.max_pairs_per_sentence < 1:
            raise ValueError("min_count >= 1, 0 < min_npmi <= 1 and max_pairs_per_sentence >= 1 are required")


@dataclass
class PatternParams:
    max_gap_chars: int = 100         # longer text between two entities is never a pattern match
    max_list_items: int = 8          # "X, Y and Z" continuations of one match


@dataclass
class HeldoutParams:
    # share of the PubTator documents with CID relations whose relations are gold, not edges
    # (seeded by document id: tasks/knowledge_graph/heldout.py)
    cid_fraction: float = 0.2

    def __post_init__(self):
        if not 0 <= self.cid_fraction < 1:
            raise ValueError("cid_fraction must be in [0, 1): 1 would leave no CID edges")


@dataclass
class ReviewParams:
    per_relation: int = 20           # edge_review_sample.jsonl: edges per (relation, kind, kept|rejected)
    labels: str = ""                 # reviewed labels (JSONL {key, label}) under the project; "" = none

    def __post_init__(self):
        if self.per_relation < 0:
            raise ValueError("per_relation must be >= 0")


@dataclass
class KgConfig:
    tree: str = "data/entity_tree/tree.json"
    doc_hits_dir: str = "data/entity_map/doc_hits"
    in_dir: str = "data/quality/kept"
    out_dir: str = "data/kg"
    seed: int = 1234
    relations: Role = "local"        # typed relation extraction: local (lexical patterns) | llm
    cid: bool = True                 # PubTator chemical-induced-disease relations
    max_sentence_chars: int = 600    # the sentence splitter cuts longer pieces at whitespace
    max_docs_per_edge: int = 50      # provenance: doc ids listed per edge (n_docs counts all)
    max_sentences_per_edge: int = 3  # provenance: supporting sentences kept per edge
    kind_weights: dict[str, float] = field(default_factory=lambda: {
        "cid": 3.0, "medquad": 2.0, "pattern": 2.0, "llm": 2.0, "cooccurrence": 1.0})
    medquad: MedquadParams = field(default_factory=MedquadParams)
    cooccurrence: CooccurrenceParams = field(default_factory=CooccurrenceParams)
    patterns: PatternParams = field(default_factory=PatternParams)
    llm_relations: LLMRelationParams = field(default_factory=LLMRelationParams)
    # relation -> allowed head and tail entity types; a relation without an entry is unconstrained
    # (tasks/knowledge_graph/signatures.py says why each default is what it is)
    signatures: dict[str, RelationSignature] = field(default_factory=default_signatures)
    heldout: HeldoutParams = field(default_factory=HeldoutParams)
    review: ReviewParams = field(default_factory=ReviewParams)

    def __post_init__(self):
        check_relations(self.signatures)
        if sorted(self.kind_weights) != sorted(KINDS) or min(self.kind_weights.values()) <= 0:
            raise ValueError(f"kind_weights needs a weight > 0 for each of {list(KINDS)}")
        if self.max_docs_per_edge < 1 or self.max_sentences_per_edge < 0:
            raise ValueError("max_docs_per_edge >= 1 and max_sentences_per_edge >= 0 are required")

    @property
    def uses_llm(self) -> bool:
        return self.relations == "llm"


def entity_type(tree: Tree, node_id: str) -> str:
    """The tier-1 category's name when the tree's tier 1 holds entity types, else "Entity"."""
    build = tree.params.get("build") if isinstance(tree.params.get("build"), dict) else {}
    chain = tree.ancestors(node_id)
    if build.get("type_tier", True) and len(chain) >= 2:
        return tree.nodes[chain[1]].name
    return "Entity"


def base_nodes(tree: Tree) -> list[dict]:
    """One record per tree entity, sorted by norm (line i of nodes.jsonl = node i)."""
    rows = []
    for nid, n in tree.nodes.items():
        if n.kind != ENTITY:
            continue
        path = tree.path_names(nid)[:-1]                  # category names below the root
        rows.append({"norm": n.members[0], "name": n.name, "type": entity_type(tree, nid), "tree_node": nid,
                     "tree_path": path, "path": ".".join(path), "frequency": n.frequency, "core": n.core})
    rows.sort(key=lambda r: r["norm"])
    for i, r in enumerate(rows):
        r["idx"] = i
    return rows


def _selection_key(seed: int, doc_id: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}:{index}".encode()).digest()[:8], "big")


def _tally_summary(c: Counter) -> dict:
    out: dict = {"rejected_by_reason": {}}
    for k, v in sorted(c.items()):
        if k.startswith("rejected."):
            out["rejected_by_reason"][k.split(".", 1)[1]] = v
        elif "." in k:
            group, name = k.split(".", 1)
            out.setdefault(group, {})[name] = v
        else:
            out[k] = v
    return out


class _DocHits:
    """doc_hits rows in step with the corpus: entity_map writes one row per valid record, in order."""

    def __init__(self, directory: Path):
        self.it = (obj for path in shard_paths(directory) for obj, _ in iter_jsonl(path))

    def next_for(self, doc_id: str) -> list[dict]:
        row = next(self.it, None)
        if not isinstance(row, dict) or row.get("doc_id") != doc_id:
            got = row.get("doc_id") if isinstance(row, dict) else row
            raise RuntimeError(f"kg: doc_hits out of step with the corpus at doc {doc_id!r} (got {got!r}); "
                               f"re-run entity_map on the same data/quality/kept")
        return row.get("hits") or []

    def finish(self) -> None:
        if next(self.it, None) is not None:
            raise RuntimeError("kg: doc_hits has more rows than the corpus has valid records; re-run entity_map")


EDGE_SAMPLE = 50
EDGE_PRECISION_FILE, REVIEW_SAMPLE_FILE = "edge_precision.json", "edge_review_sample.jsonl"


@dataclass
class GraphResult:
    summary: dict                    # summary.json beside the sink's document accounting
    metrics: dict                    # MLflow only: edges by kind and relation, timings
    samples: list[dict]              # the first edges, with their provenance
    line: str                        # what the stage prints when it ends


def build_graph(cfg: KgConfig, out: Path, sink: StageSink, client=None) -> GraphResult:
    """Build the graph from the tree, entity_map's doc hits and the corpus into `out` (nodes.jsonl,
    edges.jsonl, graph.npz, rejected_edges/, edge_precision.json, edge_review_sample.jsonl,
    relation_failures.jsonl, kg_overview.png); documents are counted into `sink` (kept as evidence:
    no per-document output, so no kept/)."""
    t_start = time.perf_counter()
    tree = load_tree(resolve(cfg.tree))         # TreeError (cycle, ...) stops the stage before any reading
    shards = shard_paths(resolve(cfg.in_dir))
    hits_dir = resolve(cfg.doc_hits_dir)
    if not shards:
        raise SystemExit(f"kg: no input shards under {resolve(cfg.in_dir)}; run quality first")
    if not shard_paths(hits_dir):
        raise SystemExit(f"kg: no doc_hits shards under {hits_dir}; run entity_map first")
    if cfg.uses_llm and client is None:
        raise ValueError("kg: relations=llm needs an LLM client")
    # a configured review that cannot be read stops the stage before the pass, not after it
    labels = load_labels(resolve(cfg.review.labels), cfg.review.labels) if cfg.review.labels else None

    nodes = base_nodes(tree)
    names = [n["norm"] for n in nodes]
    node_types = [n["type"] for n in nodes]
    index = {n: i for i, n in enumerate(names)}
    lookup = TreeLookup(names, EntityMatcher(tree_entries(tree)))
    store = EdgeStore(cfg.max_docs_per_edge, cfg.max_sentences_per_edge)
    co = Cooccurrence(cfg.cooccurrence.max_pairs_per_sentence)
    patterns = PatternExtractor(max_gap_chars=cfg.patterns.max_gap_chars,
                                max_list_items=cfg.patterns.max_list_items)
    check = SignatureCheck(cfg.signatures, node_types)
    heldout = HeldOutCid(cfg.seed, cfg.heldout.cid_fraction, check)
    tallies = {k: Counter() for k in ("cid", "medquad", "cooccurrence", "pattern")}
    counts: Counter = Counter()
    mentions = np.zeros(len(names), dtype=np.int64)
    doc_freq = np.zeros(len(names), dtype=np.int64)
    by_source: Counter = Counter()
    multi: list[Sentence] = []                   # sentences with >= 2 distinct entities
    llm_heap: list[tuple[int, int, Sentence]] = []
    timings: dict[str, float] = {}

    doc_hits = _DocHits(hits_dir)
    t0 = time.perf_counter()
    for rec, rej in iter_records(shards):
        sink.count_read(1)
        if rej is not None:
            sink.reject(rej)
            continue
        text, meta = rec["text"], rec["meta"]
        by_source[rec["source"]] += 1
        held = rec["source"] == "pubtator" and heldout.holds_out(rec["id"], meta)
        hits = []
        for h in doc_hits.next_for(rec["id"]):
            i = index.get(h.get("norm")) if isinstance(h, dict) else None
            s, e = (h.get("start"), h.get("end")) if i is not None else (None, None)
            if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)):
                counts["hits_unusable"] += 1        # a norm the tree no longer has, or bad offsets
                continue
            hits.append(Hit(i, s, e))
        counts["hits_used"] += len(hits)
        for i in {h.node for h in hits}:
            doc_freq[i] += 1
        for h in hits:
            mentions[h.node] += 1
        sentences, straddling = sentence_units(rec["id"], text, hits, cfg.max_sentence_chars)
        counts["hits_straddling_sentences"] += straddling
        for s in sentences:
            co.add(s)
            if len(s.nodes) < 2:
                continue
            multi.append(s)
            if held:
                heldout.add_sentence(s)
            if cfg.relations == "local":
                tallies["pattern"]["sentences"] += 1
                for r in patterns.extract(s):
                    store.add("pattern", r.head, r.relation, r.tail, s.doc_id, s, pattern=r.method)
                    tallies["pattern"][f"by_pattern.{r.method}"] += 1
                    tallies["pattern"]["relations"] += 1
                    if held:
                        heldout.add_relation("pattern", r)
            else:
                item = (-_selection_key(cfg.seed, s.doc_id, s.index), len(multi), s)
                if len(llm_heap) < cfg.llm_relations.max_sentences:
                    heapq.heappush(llm_heap, item)
                elif cfg.llm_relations.max_sentences:
                    heapq.heappushpop(llm_heap, item)
        if held:                                  # gold for edge precision, never an edge
            gold = cid_relations(meta, lookup, names, heldout.tally, kept_as="heldout")
            heldout.add_gold(rec["id"], [(d, c) for d, c, _ in gold])
        elif rec["source"] == "pubtator" and cfg.cid:
            for d, c, mesh in cid_relations(meta, lookup, names, tallies["cid"]):
                both = next((s for s in sentences if d in s.nodes and c in s.nodes), None)
                store.add("cid", d, "caused_by", c, rec["id"], both, mesh=mesh)
        if rec["source"] == "medquad" and cfg.medquad.enabled:
            for head, rel, tail, s, qtype, how in medquad_links(
                    text, meta, sentences, lookup, cfg.medquad.qtype_relations, cfg.medquad.max_tails,
                    cfg.medquad.focus_min_cover, tallies["medquad"]):
                store.add("medquad", head, rel, tail, rec["id"], s, qtype=qtype, focus_match=how)
        sink.keep_as([])                          # a document is kept as evidence, not re-written
    doc_hits.finish()
    tallies["cid"].update(heldout.tally)
    timings["pass_s"] = time.perf_counter() - t0

    llm_summary, failures = {}, []
    if cfg.uses_llm:
        t0 = time.perf_counter()
        chosen = [s for _, _, s in sorted(llm_heap, key=lambda x: x[1])]    # corpus order
        ex = LLMRelationExtractor(client, names, cfg.llm_relations)
        for r in ex.extract(chosen):
            store.add("llm", r.head, r.relation, r.tail, r.sentence.doc_id, r.sentence)
            heldout.add_relation("llm", r)
        failures = ex.failures
        llm_summary = {**dict(ex.stats), "candidate_sentences": len(multi),
                       "heldout_sentences": sum(s.doc_id in heldout.docs for s in chosen),
                       "rejection_samples": ex.rejections[:20]}
        timings["llm_s"] = time.perf_counter() - t0

    if cfg.cooccurrence.enabled:
        t0 = time.perf_counter()
        kept = co.select(cfg.cooccurrence.min_count, cfg.cooccurrence.min_npmi, tallies["cooccurrence"])
        add_cooccurrence_edges(store, co, kept, multi)
        timings["cooccurrence_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    edges, rejected, signatures = check.partition(store.records(names, cfg.kind_weights))
    write_rejected_edges(out / "rejected_edges", rejected)
    for n, m, d in zip(nodes, mentions.tolist(), doc_freq.tolist()):
        n["mentions"], n["docs"] = m, d
    degrees = np.zeros(len(nodes), dtype=np.int64)
    wdeg = np.zeros(len(nodes))
    for e in edges:
        for i in (e["head_idx"], e["tail_idx"]):
            degrees[i] += 1
            wdeg[i] += e["weight"]
    for n, dg, w in zip(nodes, degrees.tolist(), wdeg.tolist()):
        n["degree"], n["weighted_degree"] = dg, round(w, 6)
    csr = write_graph(out, nodes, edges)
    write_jsonl(out / "relation_failures.jsonl", failures)
    overview_plot(edges, degrees, out / "kg_overview.png",
                  f"knowledge graph: {len(nodes)} nodes, {len(edges)} edges")
    timings["write_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sample = review_sample(edges, rejected, node_types, cfg.review.per_relation, cfg.seed)
    write_jsonl(out / REVIEW_SAMPLE_FILE, sample)
    precision = {"heldout_cid": heldout.report(["llm" if cfg.uses_llm else "pattern"]),
                 "review": {"sample": len(sample), "labels_file": None} if labels is None else
                 {"sample": len(sample), **review_report(*labels, cfg.review.labels, edges, rejected)}}
    write_json(out / EDGE_PRECISION_FILE, precision)
    timings["precision_s"] = time.perf_counter() - t0

    summary = dict(
        docs_by_source=dict(sorted(by_source.items())), relations=cfg.relations,
        sentences=co.n_sentences, sentences_multi_entity=len(multi), **dict(sorted(counts.items())),
        nodes=len(nodes), nodes_by_type=dict(sorted(Counter(node_types).items())),
        nodes_with_edges=int((degrees > 0).sum()), isolated_nodes=int((degrees == 0).sum()),
        edges=len(edges), csr_entries=len(csr["indices"]),
        **{f"edges_{k}": v for k, v in edge_counts(edges).items()},
        rejected_edges={"signature_violation": len(rejected), **edge_counts([r["record"] for r in rejected])},
        signatures=signatures,
        max_degree=int(degrees.max()) if len(degrees) else 0,
        mean_degree=round(float(degrees.mean()), 4) if len(degrees) else 0.0,
        sources={"cid": _tally_summary(tallies["cid"]), "medquad": _tally_summary(tallies["medquad"]),
                 "cooccurrence": {**_tally_summary(tallies["cooccurrence"]),
                                  "sentences_pair_capped": co.capped_sentences},
                 "pattern": _tally_summary(tallies["pattern"]), **({"llm": llm_summary} if llm_summary else {})},
        relation_failures=len(failures), edge_precision=precision)
    timings["total_s"] = time.perf_counter() - t_start
    metrics = {**{f"edges.{k}": v for k, v in summary["edges_by_kind"].items()}, **timings}
    typed = precision["heldout_cid"]["relations"]
    p = next(iter(typed.values()))["precision"]
    line = (f"read={sink.read} kept={sink.kept_inputs} rejected={sink.rejected.count} nodes={len(nodes)} "
            f"edges={len(edges)} {summary['edges_by_kind']} rejected_edges={len(rejected)} "
            f"heldout_cid_precision={'-' if p is None else f'{p:.3f}'} ({timings['total_s']:.1f}s)")
    return GraphResult(summary, metrics, head_jsonl(out / "edges.jsonl", EDGE_SAMPLE), line)


def edge_counts(edges: list[dict]) -> dict:
    """Edge records counted by_kind (every kind listed), by_kind_relation and by_relation."""
    by_kind = Counter(e["kind"] for e in edges)
    by_kind_rel: dict[str, Counter] = {}
    for e in edges:
        by_kind_rel.setdefault(e["kind"], Counter())[e["relation"]] += 1
    return {"by_kind": {k: by_kind.get(k, 0) for k in KINDS},
            "by_kind_relation": {k: dict(sorted(v.items())) for k, v in sorted(by_kind_rel.items())},
            "by_relation": dict(sorted(Counter(e["relation"] for e in edges).items()))}


def write_rejected_edges(directory: Path, rejected: list[dict]) -> None:
    """rejected_edges/part-*.jsonl: one entry per rejected edge (not per sentence), so the files stay
    bounded by the number of distinct edges; the edge's provenance is in the entry's record."""
    writer = ShardedJsonlWriter(directory)
    for r in rejected:
        writer.write(r)
    writer.close()
