"""Stage `rl_data`: the RL prompt set, in the policy's difficulty band, decontaminated (paper §5.2.1).

Run:   python -m tasks.rl_data [key=value ...]
       (e.g. band.low=0.4 band.k=8 rubric_writer=llm reward.judge=llm llm.base_url=http://vllm-host:8000/v1)
DVC:   dvc repro rl_data

What (tasks/rl_synthesis/, one module per step; every LLM role has a local path behind the same call):
1. candidates (candidates.py): the SFT set's prompts whose answers a rule or constraint checks, and its
   open answers as judge-scored prompts; RL-specific instances from the KG: tool-assisted questions with
   the corpus search tool really run, multi-turn allergy-conflict scenarios, multi-answer symptom sets;
2. decontamination against every benchmark (13-grams, images): each collision in
   decontamination_report.jsonl by prompt and benchmark item;
3. rubrics for judge-scored prompts (tasks/reward/rubric.py): atomic, discriminative evaluation points
   (local: from the reference and the KG entities it names, a template; llm: the expert-analyst prompt);
4. the band: k samples per prompt from the SFT policy (data/sft/model), graded by the hybrid reward's
   gate (tasks/reward/hybrid.py); prompts with a pass rate in [band.low, band.high] are kept, the best
   of the k samples becomes the prompt's best-of-N pairwise reference;
5. hierarchical hints, the curriculum phase (foundation | specialization | alignment) and a seeded
   held-out split per task.

Outputs (data/rl_data/): prompts/part-*.jsonl (tasks/rl_synthesis/prompts.py contract), rejected/ (every
dropped candidate: source, gate, reason), pass_rates.jsonl (every sampled candidate), rubric_failures.jsonl,
decontamination_report.jsonl, summary.json. Accounting: the unit is a candidate; read == kept + rejected
per source and in total.

MLflow: sources.<source>.read/kept/rejected, the pass-rate histogram, prompts by task/phase/split.
"""

from __future__ import annotations

from tasks.common.io import write_jsonl
from tasks.common.records import rejection
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.rl_synthesis.run import RLDataConfig, build_rl_prompts, summary_of


def run(cfg: RLDataConfig, ctx: StageContext) -> StageResult:
    sink = ctx.sink(cfg.shard_size, kept="prompts")
    built = build_rl_prompts(cfg, ctx.client, log=print)
    for src, out in sorted(built.ledger.items()):
        if out.read != len(out.kept) + len(out.rejected):
            raise RuntimeError(f"{src}: read {out.read} != kept {len(out.kept)} + rejected {len(out.rejected)}")
        for r in out.rejected:
            sink.count_read()
            item = ctx.relative(r["item"])
            sink.reject({**rejection(r["reason"], r["detail"], locator=f"{src}:{str(item)[:120]}"),
                         "source": src, "gate": r["gate"], "item": item})
    sink.count_read(len(built.prompts))
    for p in built.prompts:
        sink.keep(p)
    write_jsonl(ctx.out / "pass_rates.jsonl", built.rates)
    write_jsonl(ctx.out / "decontamination_report.jsonl", built.decontam_report)
    write_jsonl(ctx.out / "rubric_failures.jsonl", built.rubric_failures)
    summary = summary_of(built)
    return StageResult(summary=summary, metrics={f"time.{k}": v for k, v in built.timings.items()},
                       samples=built.prompts[:20],
                       artifacts=[("pass_rates.jsonl", "rl_data"), ("decontamination_report.jsonl", "rl_data"),
                                  ("summary.json", "rl_data")],
                       line=f"prompts {summary['prompts']} by task {summary['by_task']} "
                            f"by phase {summary['by_phase']} pass rates {summary['pass_rate_histogram']}")


STAGE = Stage("rl_data", RLDataConfig, run, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
