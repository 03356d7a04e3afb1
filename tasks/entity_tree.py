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
rejected over input rows), naming_failures.jsonl with namer=llm. MLflow: counts, tiers, nodes per tier,
chosen k and silhouette per level, timings, LLM client stats; artifacts tree.json, the audit, the PNG.

Why: the defaults are the local methods because the embedded SmolLM2-135M cannot follow these prompts
(measured on the gold PubTator entities: 0/14 insertion paths parsed even after the repair turn -- it
paraphrases the prompt; 0/9 category names in the <Name> format -- "The category of seizures is
epilepsy."; 0/2 ReAct conflicts, never an `Action: search[...]` -- all recorded, none lost); a capable
endpoint flips namer/attacher/resolver to `llm` with the same outputs and accounting. The core is
frozen so that attachment never reshapes what was already decided, as in the paper, and every entity
ends in the tree or in unclassified.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys

from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir, head_jsonl
from tasks.common.tracking import stage_run
from tasks.llm.client import split_llm_overrides
from tasks.tree.run import EntityTreeConfig, run

ARTIFACTS = ("tree.json", "conflicts_audit.jsonl", "tree_top.png", "unclassified.jsonl", "attachments.jsonl")


def _metric_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", s)


def _sample_by_reason(path, n: int = 20) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            bucket = out.setdefault(rec["reason"], [])
            if len(bucket) < n:
                bucket.append(rec)
    return out


def tree_metrics(summary: dict) -> dict[str, float]:
    m = {f"nodes.tier{t}": c for t, c in summary["nodes_per_tier"].items()}
    m.update({f"categories.tier{t}": c for t, c in summary["categories_per_tier"].items()})
    for lv in summary["levels"]:
        key = f"{_metric_name(lv['group'])}.L{lv['level']}"
        m[f"k.{key}"] = lv["chosen_k"]
        m[f"silhouette.{key}"] = lv["best_silhouette"]
    for k, v in summary["conflicts_decided_by"].items():
        m[f"conflicts.{k}"] = v
    return m


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    stage_argv, _ = split_llm_overrides(argv)
    cfg, profile = load_stage_config("entity_tree", EntityTreeConfig, stage_argv)
    with contextlib.ExitStack() as stack:
        client, llm_params = None, {}
        if cfg.uses_llm:
            from tasks.llm.server import open_stage_client
            client, llm_params = open_stage_client(stack, argv)
        with stage_run("entity_tree", cfg, profile) as tracker, \
                atomic_output_dir(resolve(cfg.out_dir)) as out:
            if llm_params:
                tracker.mlflow.log_params(llm_params)
            summary = run(cfg, out, client)
            timings = summary.pop("_timings")
            tracker.log_summary(summary, kept_sample=head_jsonl(out / "attachments.jsonl", 20),
                                rejected_sample=_sample_by_reason(out / "unclassified.jsonl"))
            tracker.log_metrics({**tree_metrics(summary), **timings})
            if client is not None:
                # MLflow only: cache hits differ between a first run and a re-run
                tracker.log_metrics({f"llm_{k}": v for k, v in client.stats.items()})
            for name in ARTIFACTS:
                tracker.log_artifact(out / name, "entity_tree")
    return summary


if __name__ == "__main__":
    main()
