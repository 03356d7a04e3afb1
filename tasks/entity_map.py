"""Stage `entity_map`: map the corpus onto the Medical Entity Tree, measure coverage, balance
(paper §3.2.2 "Aho-Corasick mapping" and §3.2.3 "Quantitative Evaluation of Knowledge Coverage").

Run:   python -m tasks.entity_map [key=value ...]   (e.g. temperature=0.7 amcs.max_terms=2000 amcs.enabled=false)
       python -m tasks.entity_map engine.workers=4  (the scan on 4 Ray workers, outputs unchanged)
DVC:   dvc repro entity_map

What:
1. loads and validates data/entity_tree/tree.json (tasks.tree.model.load_tree: a cycle or any other
   defect stops the stage with the list of problems, before anything is scanned);
2. builds one pyahocorasick automaton from the tree's entities (norm + surface name, casefolded,
   non-word characters folded to spaces; hits start and end at word boundaries, leftmost-longest and
   non-overlapping -- see tasks/mapping/automaton.py; an entity whose key is one of `stop_keys`,
   English words the tree also holds as abbreviations (NO, ALL, BE, ...), matches only where the text
   writes it in upper case: "NO" is nitric oxide, "no" is nothing) and scans every corpus document of
   data/quality/kept once: doc_hits/part-*.jsonl ({doc_id, source, hits: [{norm, node, start, end}]},
   offsets into the record's text, end exclusive), frequencies.json (per entity: mentions, docs; per
   tree node: mentions and docs aggregated up the ancestors), long_tail.png (rank-frequency, log-log);
3. balancing: balanced_manifest.jsonl ({doc_id, weight, n_entities}, sorted by doc_id) with tempered
   inverse-frequency weights w_d = mean_{e in d} freq(e)^-T, scaled to average 1 (docs without
   entities: 1); balance.json: Gini and entropy of the entity distribution before and after weighting;
   sparse_domains.json: the bottom-N category nodes by documents, to guide collection;
4. AMCS coverage exactly as Eq. (1) -- mean over A of the max cosine similarity of MiniLM embeddings
   of normalised (casefold, whitespace-collapsed) entity strings -- forward AMCS(A, Ref) and backward
   AMCS(Ref, A), Ref = the tree's entities, A in {DOID, MeSH 2017, ICD-10-CM, HPO, benchmark-question
   entities}: amcs.json + amcs.md (the paper's Table 2 layout). Each A is a seeded sample of at most
   amcs.max_terms terms (CPU budget; the full size is reported beside it). Benchmark-question entities
   are the MeSH/DOID terms found in the benchmark question texts by an automaton built from those
   vocabularies, not from the tree (scanning with the tree's automaton would give forward 1.0 by
   construction). Targets in amcs.build_vocabs were used to build the tree (MeSH: entity typing), and
   the benchmark target's terms are MeSH/DOID terms, so it is partly derived from a build vocabulary
   (its share of such terms is reported): those rows are marked "not independent evidence"
   (amcs.json `independent: false` + `why`; a column in amcs.md), stay visible, and are left out of
   the one summary figure, the mean forward/backward AMCS over the independent targets.

Accounting: the unit is the corpus document. Every valid document is kept -- a document without
entity hits is still training data and appears in the manifest with weight 1 -- so only
input lines that are not valid records are rejected (bad_json, invalid_utf8, missing_field, ...);
docs_without_hits is reported beside read == kept + rejected (and per scan shard in MLflow's shards.json: the
scan runs on Ray workers, tasks/common/engine.py). summary.json holds the counts, and
`stop_keys`: per tree entity the stop keys restrict (norm, name, node, frequency), the upper-case
hits kept and the lower/title-case hits suppressed.
Logic: tasks/mapping/run.py (map_corpus).

MLflow: read/kept/rejected, hits, distinct entities, docs with/without hits, stop_keys.* (kept and
suppressed hits, per entity too), scan MB/s, Gini/entropy before/after, amcs.forward.<vocab>,
amcs.backward.<vocab>, amcs.{forward,backward}.independent_mean, timings; artifacts amcs.md, long_tail.png,
sparse_domains.json, balance.json.

Why: Aho-Corasick makes the scan O(corpus) regardless of dictionary size (bench/bench_entity_map.py
measures it against bare `iter_long`); balancing by weights rather than by dropping/duplicating
documents keeps the corpus intact and lets the training stage pick its own sampler.
"""

from __future__ import annotations

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.mapping.run import EntityMapConfig, map_corpus

ARTIFACTS = ("amcs.md", "amcs.json", "long_tail.png", "sparse_domains.json", "balance.json")


def run(cfg: EntityMapConfig, ctx: StageContext) -> StageResult:
    res = map_corpus(cfg, ctx.out, ctx.sink(cfg.shard_size, kept="doc_hits"), ctx.engine)
    return StageResult(summary=res.summary, metrics=res.metrics, line=res.line,
                       artifacts=[(name, "entity_map") for name in ARTIFACTS])


STAGE = Stage("entity_map", EntityMapConfig, run, sharded=True)

if __name__ == "__main__":
    main(STAGE)
