"""The `entity_map` stage's config and logic: scan, frequencies, long tail, balancing, sparse domains,
AMCS (no DVC, no MLflow: see tasks/entity_map.py).

The scan is sharded (tasks/common/engine.py): the automaton is built once here and shipped once to
the Ray workers, each scans `engine.shard_records` documents, and the counts, the doc hits and the
abbreviation-only hit counters are gathered here in input order."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from pathlib import Path

from tasks.common.config import resolve
from tasks.common.engine import EngineConfig, Shard, ShardLedger, iter_shard_records, map_shards, plan_jsonl_shards
from tasks.common.io import StageSink, shard_paths, write_json, write_jsonl
from tasks.mapping.automaton import EntityMatcher, stop_key_report, tree_entries
from tasks.mapping.balance import distribution_stats, doc_weights, long_tail_plot, sparse_domains
from tasks.tree.model import load_tree

VOCABS = ("doid", "mesh", "icd10cm", "hpo", "benchmark")
BENCHMARK_SOURCES = ("mesh", "doid")   # the vocabularies benchmark entities are extracted with


@dataclasses.dataclass
class AmcsConfig:
    enabled: bool = True
    vocabs: list[str] = dataclasses.field(default_factory=lambda: list(VOCABS))
    # targets whose terms/categories were used to build the tree (the entities stage types entities
    # with MeSH 2017): marked "not independent evidence" and left out of the summary mean
    build_vocabs: list[str] = dataclasses.field(default_factory=lambda: ["mesh"])
    max_terms: int = 4000            # seeded sample per target vocabulary (0 = all)
    max_ref_terms: int = 0           # seeded sample of the tree's entities (0 = all)
    threshold: float = 0.8           # reported share of best matches >= threshold (not in Eq. (1))
    doid: str = "vocab/doid_2016-09-01.obo"
    mesh: str = "vocab/mesh_2017_tree.txt"
    benchmarks_dir: str = "benchmarks"
    benchmark_min_chars: int = 4     # MeSH/DOID terms shorter than this are not searched in questions
    model_path: str = ""             # "" = packaged all-MiniLM-L6-v2 (offline)
    batch_size: int = 256
    threads: int = 2


@dataclasses.dataclass
class EntityMapConfig:
    tree: str = "data/entity_tree/tree.json"
    in_dir: str = "data/quality/kept"
    out_dir: str = "data/entity_map"
    data_root: str = "../shared/data"
    seed: int = 1234
    shard_size: int = 50000
    temperature: float = 0.5
    sparse_bottom_n: int = 30
    # keys that are also English words: those tree entities match only in upper case ("NO", not "no")
    stop_keys: list[str] = dataclasses.field(default_factory=list)
    amcs: AmcsConfig = dataclasses.field(default_factory=AmcsConfig)


@dataclasses.dataclass
class ShardScan:
    """One shard scanned: per input (doc id, source, text bytes, hits) or the upstream rejection, in
    order; the abbreviation-only hits kept/suppressed meanwhile; the scan's seconds."""
    items: list[tuple[str, str, int, list[dict]] | dict]
    abbreviation_kept: list[int]
    abbreviation_suppressed: list[int]
    scan_s: float


def scan_shard(shard: Shard, matcher: EntityMatcher) -> ShardScan:
    """The engine's map function: every input of one shard through the automaton. The matcher's
    hit counters are handed back as this shard's counts and restored, so a matcher shared by many
    shards in one process counts nothing twice."""
    kept0, suppressed0 = list(matcher.abbreviation_kept), list(matcher.abbreviation_suppressed)
    items: list = []
    scan_s = 0.0
    for rec, rej in iter_shard_records(shard):
        if rej is not None:
            items.append(rej)
            continue
        text = rec["text"]
        t0 = time.perf_counter()
        raw = matcher.scan(text)
        scan_s += time.perf_counter() - t0
        items.append((rec["id"], rec["source"], len(text.encode("utf-8")),
                      [{"norm": p[0], "node": p[1], "start": s, "end": e} for s, e, p in raw]))
    kept = [a - b for a, b in zip(matcher.abbreviation_kept, kept0)]
    suppressed = [a - b for a, b in zip(matcher.abbreviation_suppressed, suppressed0)]
    matcher.abbreviation_kept[:], matcher.abbreviation_suppressed[:] = kept0, suppressed0
    return ShardScan(items, kept, suppressed, scan_s)


def scan_corpus(matcher: EntityMatcher, shards, sink: StageSink, tree,
                engine: EngineConfig | None = None) -> dict:
    """One pass: doc hits to the sink, entity + node counts, per-doc entity counts, per-shard
    accounting. The automaton runs in the engine's workers (the matcher shipped once), one shard
    of `engine.shard_records` documents each; everything is counted here in input order."""
    engine = engine or EngineConfig(workers=1)
    ent_mentions: Counter = Counter()
    ent_docs: Counter = Counter()
    node_mentions: Counter = Counter()
    node_docs: Counter = Counter()
    docs: list[tuple[str, dict[str, int]]] = []
    anc_cache: dict[str, list[str]] = {}
    text_bytes = hits_total = no_hit = 0
    scan_s = 0.0
    plan = plan_jsonl_shards(shards, engine.shard_records)
    ledger = ShardLedger(sink)
    for shard, scanned in zip(plan.shards, map_shards(scan_shard, plan.shards, cfg=engine, shared=matcher)):
        for i, (k, s) in enumerate(zip(scanned.abbreviation_kept, scanned.abbreviation_suppressed)):
            matcher.abbreviation_kept[i] += k
            matcher.abbreviation_suppressed[i] += s
        scan_s += scanned.scan_s
        with ledger.shard(shard.index):
            for item in scanned.items:
                sink.count_read(1)
                if isinstance(item, dict):
                    sink.reject(item)
                    continue
                doc_id, source, nbytes, hits = item
                text_bytes += nbytes
                counts: Counter = Counter(h["norm"] for h in hits)
                nodes_of_doc: set[str] = set()
                for h in hits:
                    nid = h["node"]
                    chain = anc_cache.get(nid)
                    if chain is None:
                        chain = anc_cache[nid] = [*tree.ancestors(nid), nid]
                    for a in chain:
                        node_mentions[a] += 1
                    nodes_of_doc.update(chain)
                for a in nodes_of_doc:
                    node_docs[a] += 1
                ent_mentions.update(counts)
                ent_docs.update(counts.keys())
                hits_total += len(hits)
                no_hit += not hits
                docs.append((doc_id, dict(counts)))
                sink.keep({"doc_id": doc_id, "source": source, "hits": hits})
    return {"ent_mentions": ent_mentions, "ent_docs": ent_docs, "node_mentions": node_mentions,
            "node_docs": node_docs, "docs": docs, "text_bytes": text_bytes, "hits": hits_total,
            "docs_without_hits": no_hit, "scan_s": scan_s, "shards": ledger.rows()}


def _sample(terms: list[str], n: int, seed: int) -> list[str]:
    if n <= 0 or len(terms) <= n:
        return list(terms)
    return sorted(random.Random(seed).sample(terms, n))


def load_targets(cfg: EntityMapConfig) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
    """(target name -> terms, target name -> {build vocabulary: share of its terms that are terms of
    that build vocabulary}); the shares are computed for the benchmark target only, whose terms are
    drawn from BENCHMARK_SOURCES."""
    from tasks.mapping import vocab as V
    root = resolve(cfg.data_root)
    a = cfg.amcs
    for name in a.build_vocabs:
        if name not in VOCABS:
            raise ValueError(f"amcs.build_vocabs: unknown vocabulary {name!r}; known: {list(VOCABS)}")
    out: dict[str, list[str]] = {}
    shares: dict[str, dict[str, float]] = {}
    cache: dict[str, list[str]] = {}

    def get(name):
        if name not in cache:
            cache[name] = {"doid": lambda: V.load_doid(root / a.doid),
                           "mesh": lambda: V.load_mesh(root / a.mesh),
                           "icd10cm": V.load_icd10cm, "hpo": V.load_hpo}[name]()
        return cache[name]

    for name in a.vocabs:
        if name not in VOCABS:
            raise ValueError(f"amcs.vocabs: unknown vocabulary {name!r}; known: {list(VOCABS)}")
        if name == "benchmark":
            qs = V.benchmark_questions(root / a.benchmarks_dir)
            terms = V.benchmark_entities(qs, sorted(set().union(*(get(v) for v in BENCHMARK_SOURCES))),
                                         a.benchmark_min_chars)
            out[name] = terms
            shares[name] = {v: len(set(terms) & set(get(v))) / len(terms) if terms else 0.0
                            for v in BENCHMARK_SOURCES if v in a.build_vocabs}
        else:
            out[name] = get(name)
    return out, shares


def run_amcs(cfg: EntityMapConfig, tree) -> tuple[list[dict], dict]:
    from tasks.mapping.coverage import coverage_row, provenance
    from tasks.mapping.vocab import norm_term
    from tasks.tree.embed import embed
    a = cfg.amcs
    t0 = time.perf_counter()
    ref_full = sorted({norm_term(n.name) for n in tree.nodes.values() if n.kind == "entity"}
                      | {norm_term(n.members[0]) for n in tree.nodes.values() if n.kind == "entity"})
    ref = _sample(ref_full, a.max_ref_terms, cfg.seed)
    targets, shares = load_targets(cfg)
    t_load = time.perf_counter() - t0
    kw = dict(model_path=a.model_path, batch_size=a.batch_size, threads=a.threads, seed=cfg.seed)
    ref_emb = embed(ref, **kw)
    rows = []
    n_encoded = len(ref)
    for name, full in targets.items():
        terms = _sample(full, a.max_terms, cfg.seed)
        row = coverage_row(name, terms, embed(terms, **kw), ref, ref_emb, a.threshold, len(full))
        rows.append({**row, **provenance(name, a.build_vocabs, shares.get(name))})
        n_encoded += len(terms)
    return rows, {"amcs_vocab_load_s": round(t_load, 2),
                  "amcs_s": round(time.perf_counter() - t0, 2), "amcs_terms_encoded": n_encoded,
                  "ref_full_size": len(ref_full)}


@dataclasses.dataclass
class MapResult:
    summary: dict                    # summary.json beside the sink's document accounting
    metrics: dict                    # MLflow only: docs, input MB, AMCS per vocabulary, timings, MB/s
    line: str                        # what the stage prints when it ends


def map_corpus(cfg: EntityMapConfig, out: Path, sink: StageSink, engine: EngineConfig | None = None) -> MapResult:
    """Every output of the stage into `out` but summary.json; one doc_hits line per valid document
    through `sink` (the unit of accounting is the corpus document)."""
    t_start = time.perf_counter()
    tree = load_tree(resolve(cfg.tree))          # TreeError stops the stage before any scanning
    shards = shard_paths(resolve(cfg.in_dir))
    if not shards:
        raise SystemExit(f"entity_map: no input shards under {resolve(cfg.in_dir)}; run quality first")
    t0 = time.perf_counter()
    matcher = EntityMatcher(tree_entries(tree, cfg.stop_keys))
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    sc = scan_corpus(matcher, shards, sink, tree, engine)
    pass_s = time.perf_counter() - t0

    # frequencies
    entity_rows = {e: {"mentions": sc["ent_mentions"][e], "docs": sc["ent_docs"][e]}
                   for e in sorted(sc["ent_mentions"])}
    node_rows = {nid: {"mentions": sc["node_mentions"].get(nid, 0), "docs": sc["node_docs"].get(nid, 0),
                       "kind": tree.nodes[nid].kind, "tier": tree.nodes[nid].tier}
                 for nid in sorted(tree.nodes)}
    write_json(out / "frequencies.json", {"entities": entity_rows, "nodes": node_rows})
    long_tail_plot(list(sc["ent_mentions"].values()), out / "long_tail.png",
                   f"entity long tail: {len(entity_rows)} entities, {sc['hits']} mentions")

    # balancing
    doc_ids = [d for d, _ in sc["docs"]]
    doc_ents = [c for _, c in sc["docs"]]
    weights = doc_weights(doc_ents, sc["ent_mentions"], cfg.temperature)
    order = sorted(range(len(doc_ids)), key=lambda i: doc_ids[i])
    write_jsonl(out / "balanced_manifest.jsonl", ({"doc_id": doc_ids[i], "weight": round(weights[i], 8),
                                                  "n_entities": len(doc_ents[i])} for i in order))
    balance = {"temperature": cfg.temperature, **distribution_stats(doc_ents, weights),
               "weight_min": round(min(weights), 6) if weights else 0.0,
               "weight_max": round(max(weights), 6) if weights else 0.0}
    write_json(out / "balance.json", balance)
    sparse = sparse_domains(tree, sc["node_docs"], sc["node_mentions"], cfg.sparse_bottom_n)
    write_json(out / "sparse_domains.json", {"bottom_n": cfg.sparse_bottom_n, "domains": sparse})

    # AMCS
    amcs_rows, amcs_info, amcs_mean = ([], {}, {})
    if cfg.amcs.enabled:
        from tasks.mapping.coverage import independent_mean, render_table
        amcs_rows, amcs_info = run_amcs(cfg, tree)
        amcs_mean = independent_mean(amcs_rows)
        enc = cfg.amcs.model_path or "all-MiniLM-L6-v2"
        write_json(out / "amcs.json", {"encoder": enc, "threshold": cfg.amcs.threshold,
                                       "max_terms": cfg.amcs.max_terms, "seed": cfg.seed,
                                       "build_vocabs": list(cfg.amcs.build_vocabs),
                                       "rows": amcs_rows, "independent_mean": amcs_mean,
                                       **{k: v for k, v in amcs_info.items() if not k.endswith("_s")}})
        (out / "amcs.md").write_text(render_table(amcs_rows, cfg.amcs.threshold, enc, cfg.amcs.build_vocabs),
                                     encoding="utf-8")

    summary = dict(
        hits=sc["hits"], distinct_entities_hit=len(entity_rows),
        tree_entities=sum(n.kind == "entity" for n in tree.nodes.values()),
        stop_keys=stop_key_report(matcher, tree, cfg.stop_keys),
        docs_without_hits=sc["docs_without_hits"], docs_with_hits=len(doc_ids) - sc["docs_without_hits"],
        text_bytes=sc["text_bytes"], automaton_keys=matcher.size, key_collisions=matcher.collisions,
        gini_before=balance["before"]["gini"], gini_after=balance["after"]["gini"],
        entropy_norm_before=balance["before"]["entropy_norm"],
        entropy_norm_after=balance["after"]["entropy_norm"],
        amcs={r["target"]: {"forward": r["forward"], "backward": r["backward"], "size": r["size"],
                            "independent": r["independent"]} for r in amcs_rows},
        amcs_independent_mean=amcs_mean, shards=sc["shards"])
    # MB/s from the scan timings (the runner's throughput would divide by the AMCS time too)
    timings = {"automaton_build_s": build_s, "scan_pass_s": pass_s, "scan_only_s": sc["scan_s"],
               "scan_mb_per_s": sc["text_bytes"] / 1e6 / max(sc["scan_s"], 1e-9),
               "pass_mb_per_s": sc["text_bytes"] / 1e6 / max(pass_s, 1e-9),
               "total_s": time.perf_counter() - t_start, **{k: v for k, v in amcs_info.items() if k.endswith("_s")}}
    metrics = {"docs": sink.read, "input_mb": sc["text_bytes"] / 1e6, **timings}
    for vocab, row in summary["amcs"].items():
        metrics.update({f"amcs.forward.{vocab}": row["forward"], f"amcs.backward.{vocab}": row["backward"],
                        f"amcs.size.{vocab}": row["size"]})
    if amcs_mean.get("targets"):
        metrics.update({"amcs.forward.independent_mean": amcs_mean["forward"],
                        "amcs.backward.independent_mean": amcs_mean["backward"]})
    # "*": not independent evidence (used to build the tree, or partly drawn from such a vocabulary)
    amcs = " ".join(f"{v}{'' if r['independent'] else '*'}={r['forward']:.2f}/{r['backward']:.2f}"
                    for v, r in summary["amcs"].items())
    stop = summary["stop_keys"]
    line = (f"read={sink.read} kept={sink.kept_inputs} rejected={sink.rejected.count} hits={sc['hits']} "
            f"entities_hit={len(entity_rows)} no_hits={sc['docs_without_hits']} "
            f"stop-key entities={stop['entities_affected']} (kept {stop['abbreviation_hits']} upper-case hits, "
            f"suppressed {stop['suppressed_hits']}) "
            f"scan={timings['scan_mb_per_s']:.1f} MB/s gini {summary['gini_before']:.3f}->{summary['gini_after']:.3f} "
            f"amcs(fwd/bwd) {amcs}")
    return MapResult(summary, metrics, line)
