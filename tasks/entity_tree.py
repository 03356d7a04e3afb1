"""Stage `entity_tree`: the Medical Entity Tree, paper §3.2 Stage 2 (core tree) and Stage 3
(incremental attachment with deferred insertion and conflict resolution).

Run:   python -m tasks.entity_tree [key=value ...]   (e.g. profile=tiny build.core_top_n=300 attacher=llm)
DVC:   dvc repro entity_tree

What: reads the `entities` stage's table (data/entities/entities.jsonl), rejects unusable rows before
embedding (empty, whitespace, over max_entity_chars, control characters, malformed), embeds every entity
with all-MiniLM-L6-v2 (offline, seeded, fixed threads), and
1. builds the core tree from the most frequent entities (count >= build.core_min_count, top
   build.core_top_n): entity types as tier 1 (build.type_tier), then bottom-up K-Means levels with k
   chosen by the silhouette coefficient, parent embeddings = frequency-weighted means of their members,
   at most five tiers (root = tier 0, entity leaves at tier <= 4); categories named by their most
   central member (namer=local) or by the LLM from their members (namer=llm);
2. freezes the core and attaches the remaining entities in batches (deferred insertion): by cosine
   descent through the frozen core's tiers (attacher=local) or by the paper's <InsertionPath> prompt
   (attacher=llm), unclassified below attach.min_similarity / on invalid replies, with the reason;
3. sends entities with several candidate parents to the resolver (resolver=local: BM25 evidence +
   etiology/anatomy-over-symptom and specificity principles; resolver=llm: a ReAct agent with a BM25
   search tool over the corpus and Disease Ontology definitions), each decision audited.

Output (out_dir): tree.json (nodes sorted in preorder, params, no timestamps; load and validate it
with tasks.tree.model.load_tree), attachments.jsonl, unclassified.jsonl (bad rows + unattached
entities, each with a reason), conflicts_audit.jsonl, tree_top.png, summary.json (read == kept +
rejected over input rows), naming_failures.jsonl with namer=llm (the LLM roles, when chosen, are the
stage's result: their failures and stats are outputs). MLflow: counts, tiers, nodes per tier, chosen k
and silhouette per level, timings, LLM client stats; artifacts tree.json, the audit, the PNG,
attachments and unclassified entities. Logic: tasks/tree/run.py (build_tree); the LLM roles parse
replies through the one parse/repair loop (tasks/llm/ask.py).

Why: the defaults are the local methods because the embedded SmolLM2-135M cannot follow these prompts
(measured on the gold PubTator entities: 0/14 insertion paths parsed even after the repair turn -- it
paraphrases the prompt; 0/9 category names in the <Name> format -- "The category of seizures is
epilepsy."; 0/2 ReAct conflicts, never an `Action: search[...]` -- all recorded, none lost); a capable
endpoint flips namer/attacher/resolver to `llm` with the same outputs and accounting. The core is
frozen so that attachment never reshapes what was already decided, as in the paper, and every entity
ends in the tree or in unclassified.jsonl.
"""

from __future__ import annotations

from tasks.common.io import head_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.tree.run import EntityTreeConfig, build_tree

ARTIFACTS = ("tree.json", "conflicts_audit.jsonl", "tree_top.png", "unclassified.jsonl", "attachments.jsonl")


def run(cfg: EntityTreeConfig, ctx: StageContext) -> StageResult:
    res = build_tree(cfg, ctx.out, ctx.client)
    return StageResult(summary=res.summary, metrics=res.metrics, line=res.line,
                       samples=head_jsonl(ctx.out / "attachments.jsonl", 20),
                       artifacts=[(name, "entity_tree") for name in ARTIFACTS])


STAGE = Stage("entity_tree", EntityTreeConfig, run, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
