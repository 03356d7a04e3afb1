"""Stage `kg`: the medical knowledge graph (paper §3.3.1 "Text Knowledge": a KG of entities and
relationships that atomic and aggregated QA are synthesised from), over the Medical Entity Tree.

Run:   python -m tasks.kg [key=value ...]   (e.g. relations=llm llm_relations.max_sentences=50
                                              cooccurrence.min_npmi=0.3 llm.base_url=http://host:8000/v1)
DVC:   dvc repro kg

What:
1. loads and validates data/entity_tree/tree.json (a cycle or any other defect stops the stage with the
   list of problems before anything is read); every tree entity is a node, sorted by norm, with its
   surface name, type (tier-1 category), tree node id and path, tree frequency, corpus mentions/docs;
2. one pass over data/quality/kept in step with data/entity_map/doc_hits (the entity hits of each
   document): documents are cut into sentences and hits assigned to them; edges come from
   - `cid`: PubTator chemical-induced-disease relations, MeSH ids resolved to tree entities through the
     document's own mentions (disease caused_by chemical; unresolvable sides counted by reason);
   - `medquad`: the focus entity linked to the entities of its answer, typed by the question type
     (symptoms -> has_symptom, treatment -> treated_by, causes -> caused_by, ...);
   - `pattern` (relations=local, the default) or `llm` (relations=llm): typed relations in sentences
     where two tree entities co-occur, by transparent lexical patterns ("X-induced Y", "Y caused by X",
     "X for the treatment of Y", "symptoms of Y include X", ...) or by the LLM through the project's
     client (batched; the one parse/repair loop of tasks/llm/ask.py: strict parse, one repair turn,
     failures recorded with the raw replies);
   - `cooccurrence`: sentence-level pair counts with NPMI, min-count and min-NPMI thresholds;
   every edge carries its provenance (kind, doc ids, supporting sentences, pattern names, qtypes, MeSH
   pairs, npmi) and a weight = kind weight * log(1 + support) (* npmi);
3. checks every edge of every source against its relation's type signature (`signatures`, defaults and
   reasons in tasks/knowledge_graph/signatures.py: treated_by Disease|Symptom -> Chemical|Procedure,
   has_symptom Disease -> Symptom, located_in Disease|Symptom -> Anatomy, ...; node type = the tree's
   tier-1 category): an edge that breaks it is not in the graph but in rejected_edges/, one entry per
   edge (kind, head, relation, tail) with its provenance and the reason `signature_violation`
   ("treated_by expects head Disease|Symptom and tail Chemical|Procedure, got Disease -> Disease");
   a tree without typed nodes makes the check not applicable (reported, every edge kept);
4. measures edge precision (tasks/knowledge_graph/heldout.py, review.py): a seeded share
   (`heldout.cid_fraction`, by document id) of the PubTator documents with CID relations gives no cid
   edges; their relations, resolved to tree nodes as for edges, are the gold the pattern (or LLM)
   caused_by relations and a co-occurrence baseline found in those documents are scored against
   (tp/fp/fn, precision with a Wilson 95% interval, recall); for the relations without gold, a seeded
   sample of kept and rejected edges per (relation, kind) to label, and, with `review.labels` set,
   precision per relation from the labels;
5. writes nodes.jsonl, edges.jsonl, graph.npz (CSR adjacency: indptr, indices, edge_ids, weights,
   forward, cum_weights; load it with tasks.knowledge_graph.graph.KnowledgeGraph for neighbors(),
   random_walk(), random_walks(), subgraph()), rejected_edges/part-*.jsonl, edge_precision.json,
   edge_review_sample.jsonl (label: null, for review), relation_failures.jsonl, kg_overview.png,
   summary.json. Logic: tasks/knowledge_graph/run.py (build_graph). With relations=llm the LLM's
   relations are the stage's result, so its failures (relation_failures.jsonl, with the raw replies)
   and stats (summary.json sources.llm) are outputs; with the default relations=local no LLM is asked
   and relation_failures.jsonl is empty.

Accounting: the unit is the corpus document. Every valid document is kept (read as evidence, whether
or not it yields edges); only input lines that are not valid records are rejected (bad_json, ...), in
rejected/. Edge-level counts sit beside read == kept + rejected in summary.json: edges by kind and
relation, and per source what was read, kept and rejected with the reason (e.g. cid
disease_not_in_tree, medquad qtype_unmapped, cooccurrence below_min_npmi, llm unknown_entity; cid
`heldout` for the gold documents' relations). Edges rejected by their signature are counted in
rejected_edges (by kind, relation, kind and relation) and signatures (violations by relation, head
type, tail type; rejections caused by a type outside the eight entity types); nodes by type.

MLflow: read/kept/rejected, nodes, edges, edges.<kind>, nodes.type.<T>, edges.relation.<r>,
rejected_edges.signature_violation.<r>, edge_precision.<heldout|review>.* (every number of
edge_precision.json, through summary.json), timings, LLM client stats (relations=llm); artifacts
summary.json, kg_overview.png, relation_failures.jsonl, edge_precision.json, edge_review_sample.jsonl
and a sample of edges.

Why: the local relation path is the default because the embedded SmolLM2-135M cannot do typed relation
extraction (measured on 24 co-occurrence sentences of the default corpus: every reply parsed, 11
relations returned, all 11 naming an entity that is not among the sentence's listed entities -- 0 edges;
each counted as unknown_entity, none lost); the patterns are precise and each edge names the pattern
that made it, while co-occurrence gives recall. A capable endpoint flips relations=llm with the same
outputs and accounting. The CSR + running weight sum makes a weighted step one binary search: on the
default graph (7.8k nodes, 62k edges) the batched walker does ~3 M steps/s, 30x a dict-of-lists walker
with random.choices, and a single walk ~0.7 M steps/s (bench/bench_kg.py).
"""

from __future__ import annotations

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.knowledge_graph.relations import ALL_RELATIONS
from tasks.knowledge_graph.run import KgConfig, build_graph
from tasks.knowledge_graph.signatures import ENTITY_TYPES

ARTIFACTS = ("kg_overview.png", "relation_failures.jsonl", "edge_precision.json", "edge_review_sample.jsonl")


def type_metrics(summary: dict) -> dict[str, float]:
    """Nodes per type, kept edges per relation and signature rejections per relation, under names
    that plot side by side across runs; every entity type and relation is logged, 0 included (a
    relation whose edges were all rejected shows as 0, not as a missing point)."""
    types = dict.fromkeys(ENTITY_TYPES, 0) | summary["nodes_by_type"]
    rejected = summary["rejected_edges"]["by_relation"]
    return {**{f"nodes.type.{t}": n for t, n in types.items()},
            **{f"edges.relation.{r}": summary["edges_by_relation"].get(r, 0) for r in ALL_RELATIONS},
            **{f"rejected_edges.signature_violation.{r}": rejected.get(r, 0) for r in ALL_RELATIONS}}


def run(cfg: KgConfig, ctx: StageContext) -> StageResult:
    res = build_graph(cfg, ctx.out, ctx.sink(kept=None), ctx.client)
    # the kept sample shows what the stage produced: the first edges, with their provenance
    return StageResult(summary=res.summary, metrics={**res.metrics, **type_metrics(res.summary)},
                       samples=res.samples, line=res.line, artifacts=[(name, "kg") for name in ARTIFACTS])


STAGE = Stage("kg", KgConfig, run, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
