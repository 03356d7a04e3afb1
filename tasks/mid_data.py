"""Stage `mid_data`: the reasoning-data engines of mid-training (paper §4.1).

Run:   python -m tasks.mid_data [key=value ...]
       (e.g. engines=[kg_multihop,agentic_search] kg_multihop.max_probe_entities=50 roles.cot_writer=llm
        llm.base_url=http://vllm-host:8000/v1)
DVC:   dvc repro mid_data

What (each engine a module of tasks/mid_synthesis/ with its tests; every LLM role has a local
implementation behind the same interface, chosen per role in `roles`):
1. KG-guided multi-hop QA (kg_multihop.py): the current checkpoint's weak entities (pass@k on atomic
   multiple-choice questions, through the harness's option likelihoods), walks of more than 5 typed
   hops with restarts, the terminal node the answer, intermediate entities obfuscated; the path is the
   reasoning chain, each hop quoted from its provenance sentence; tiers answerable (a set traversal
   of the question's constraints ends in exactly the answer), difficulty (pass@k band), quality;
2. KG-verifiable reasoning for existing QA (kg_paths.py): VQA-RAD train, MedQuAD, KG atomic QA and the
   HuatuoGPT-o1 sample mapped to KG nodes, connecting paths searched and ranked, reasoning over them;
3. multi-expert rejection sampling with a dual gate (rejection.py, verify.py, experts.py): the CPT
   checkpoint at two temperatures and system prompts and the LLM endpoint at two more, best-of-N;
   Outcome-Verify against the gold per answer kind, Thinking-Verify of the chain; diverse lengths kept;
4. reverse structured CoT (reverse_cot.py): Understanding, Knowledge Recall or Visual Observation
   (anchored on the image's caption), Reasoning, Conclusion; six QC dimensions scored and kept per sample;
5. short visual CoT for perception questions (visual_cot.py): analyst -> reasoner -> style, logic and
   style gates;
6. agentic trajectories: search (search_tool.py, agentic_search.py: a ReAct loop over a BM25 index of
   the corpus, every observation a real retrieval) and think-with-image (image_tools.py,
   agentic_image.py: ZOOM and ROTATE run for real on the rendered lab reports; perception and
   tool-effectiveness filters measured with the checkpoint);
7. decontamination of every kept sample against every benchmark (decontam.py: 13-grams, image hashes).
Where a local role is a template (the wording of reasoning written over a graph path or evidence),
the module says so; the facts, answers, tool outputs and checks are real.

Outputs (data/mid_data/): samples/part-*.jsonl (tasks/mid_synthesis/samples.py contract), rejected/
(every dropped candidate: engine, gate, reason), images/ (tool crops and rotations), previews/<family>.jsonl
(sample trajectories), decontamination_report.jsonl (one row per sample x benchmark item collision),
summary.json (per engine read/kept/rejected by gate, per expert counts, decontamination).
Accounting: the unit is the candidate an engine considered; read == kept + rejected.

MLflow: every number of summary.json (engines.<family>.read/kept/rejected, rejected_by_gate, experts),
timings per engine, LLM client stats; artifacts: previews, the decontamination report, summary.json.
"""

from __future__ import annotations

from collections import Counter

from tasks.common.io import write_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.mid_synthesis.run import MidDataConfig, account, synthesize


def run(cfg: MidDataConfig, ctx: StageContext) -> StageResult:
    sink = ctx.sink(cfg.shard_size, kept="samples")
    clean, parts, report, timings = synthesize(cfg, ctx.client, ctx.out)
    table = account(sink, clean, parts["engines"], ctx.relative)
    write_jsonl(ctx.out / "decontamination_report.jsonl", report)
    previews = []
    for fam in sorted({s["family"] for s in clean.kept}):
        rows = [s for s in clean.kept if s["family"] == fam][: cfg.previews]
        write_jsonl(ctx.out / "previews" / f"{fam}.jsonl", rows)
        previews.append((f"previews/{fam}.jsonl", "mid_data/previews"))
    by_phase = Counter(s["phase"] for s in clean.kept)
    summary = {
        "engines": table, "samples_by_family": dict(sorted(Counter(s["family"] for s in clean.kept).items())),
        "samples_by_phase": {str(k): by_phase[k] for k in sorted(by_phase)},
        "experts": parts["extra"].get("rejection_sampling", {}).get("experts", {}),
        "details": {k: v for k, v in parts["extra"].items() if k != "rejection_sampling"},
        "decontamination": {"checked": parts["index_checked"], "collisions": len(report),
                            "samples_dropped": len(clean.rejected),
                            "by_benchmark": dict(sorted(Counter(r["benchmark"] for r in report).items()))},
    }
    kept = {f: t["kept"] for f, t in table.items()}
    return StageResult(summary=summary, metrics={f"time.{k}": v for k, v in timings.items()},
                       samples=clean.kept[:20],
                       artifacts=[*previews, ("decontamination_report.jsonl", "mid_data"), ("summary.json", "mid_data")],
                       line=f"kept by family {kept} decontaminated {len(clean.rejected)}")


STAGE = Stage("mid_data", MidDataConfig, run, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
