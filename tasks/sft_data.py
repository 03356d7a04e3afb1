"""Stage `sft_data`: the SFT set, built for accuracy, coverage and instruction following (paper §5.1.1-5.1.2).

Run:   python -m tasks.sft_data [key=value ...]
       (e.g. pools.max_items.kg_qa=500 consensus.keep_min=0.67 instruct_writer=llm rewrite.rewriter=llm
        llm.base_url=http://vllm-host:8000/v1)
DVC:   dvc repro sft_data

What (tasks/sft_synthesis/, one module per step, each with its tests; every LLM role has a local
implementation behind the same interface):
1. candidate pools (pools.py): mid-training samples, KG atomic QA (multiple choice), MedQuAD QA pairs,
   VQA-RAD train, the rendered lab-report QA, PubMedQA's expert-labelled questions minus its test split;
2. instruction following (instruct.py): conflict-free combinations of 1-4 atomic constraints from the
   train split of the constraint library (eval/constraints.py; the benchmark in eval/instruct.py uses the
   other split), single- and multi-turn, graph-structured implicit instructions, reverse construction,
   structured thinking rationales; every reply verified by the constraints' checkers. The local writer's
   replies are the base answers transformed by code and its rationales a template over the real checks;
3. accuracy (consensus.py): the experts and the current checkpoint (data/mid_train/model, its option
   distribution through the eval harness) vote; high consensus kept, low consensus escalated to the human
   queue: review_queue/tasks.json + label_config.xml for Label Studio, and the verified labels imported
   from `review_labels` (a DVC-tracked Label Studio JSON export; [] = none yet: every escalated sample is a
   rejection "awaiting_review", never silently dropped);
4. prompt rewriting (rewrite.py): variants that keep every entity, number and option (local rules, which
   are templates of wording, or the LLM), checked by code;
5. decontamination against every benchmark (13-grams and images), with a report;
6. coverage-balanced sampling (grid.py) over anatomical site x disease class x difficulty, long-tail and
   high-risk cells repeated (meta.coverage_repeats), over-full cells cut.

Outputs (data/sft_data/): samples/part-*.jsonl (tasks/sft_synthesis/samples.py contract), rejected/ (every
dropped candidate: source, gate, reason), review_queue/ (Label Studio tasks and labeling config),
consensus.jsonl (one record per voted candidate), consensus_histogram.png, coverage_grid.csv,
grid_table.json + coverage_grid.png (before and after), decontamination_report.jsonl, previews/<source>.jsonl, summary.json.
Accounting: the unit is a candidate (a pool row, an instruction-following construction, a rewrite);
read == kept + rejected per source and in total.

MLflow: sources.<source>.read/kept/rejected/rejected_by_gate.<gate>.<reason>, the consensus histogram,
the grid before/after, the review queue counts, timings; artifacts: the heat-map, the grid table, the
queue, previews, the decontamination report.
"""

from __future__ import annotations

from collections import Counter

from tasks.common.records import rejection
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.sft_synthesis.report import write_outputs
from tasks.sft_synthesis.run import SFTDataConfig, build_sft_set


def _loc(item) -> str:
    return str(item.get("id") if isinstance(item, dict) else item)[:120]


def run(cfg: SFTDataConfig, ctx: StageContext) -> StageResult:
    sink = ctx.sink(cfg.shard_size, kept="samples")
    built = build_sft_set(cfg, ctx.client, ctx.out)
    table = {}
    for src, out in sorted(built.ledger.items()):
        for r in out.rejected:
            sink.count_read()
            item = ctx.relative(r["item"])
            sink.reject({**rejection(r["reason"], r["detail"], locator=f"{src}:{_loc(item)}"),
                         "source": src, "gate": r["gate"], "item": item})
        table[src] = {"read": out.read, "kept": len(out.kept), "rejected": len(out.rejected),
                      "rejected_by_gate": out.by_gate()}
        if out.read != len(out.kept) + len(out.rejected):
            raise RuntimeError(f"{src}: read {out.read} != kept {len(out.kept)} + rejected {len(out.rejected)}")
    sink.count_read(len(built.samples))
    for s in built.samples:
        sink.keep(s)
    parts, previews = write_outputs(built, ctx.out, cfg)
    summary = {
        "sources": table,
        "samples_by_source": dict(sorted(Counter(s["family"] for s in built.samples).items())),
        "accuracy": dict(sorted(Counter(s["meta"]["accuracy"] for s in built.samples).items())),
        **parts,
    }
    kept = {src: t["kept"] for src, t in table.items()}
    return StageResult(summary=summary, metrics={f"time.{k}": v for k, v in built.timings.items()},
                       samples=built.samples[:20],
                       artifacts=[*previews, ("coverage_grid.png", "sft_data"), ("coverage_grid.csv", "sft_data"),
                                  ("consensus_histogram.png", "sft_data"), ("consensus.jsonl", "sft_data"),
                                  ("review_queue/tasks.json", "sft_data/review_queue"),
                                  ("review_queue/label_config.xml", "sft_data/review_queue"),
                                  ("decontamination_report.jsonl", "sft_data"), ("summary.json", "sft_data")],
                       line=f"kept by source {kept} awaiting review {built.queue['awaiting_review']} "
                            f"repeats {built.grid_table['repeats']}")


STAGE = Stage("sft_data", SFTDataConfig, run, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
