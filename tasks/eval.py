"""Stage `eval`: evaluate one checkpoint on the unified Med-VLM benchmark suite (paper §6).

Run:   python -m tasks.eval checkpoint=base model_path=data/base_model/model [key=value ...]
       python -m tasks.eval checkpoint=api endpoint=http://host:8000/v1 endpoint_model=m
DVC:   dvc repro eval      (`foreach` over the top-level param `eval_checkpoints`: one stage per
                            checkpoint, eval@<checkpoint>, so a new checkpoint is one line that leaves
                            the others' params untouched); stage `eval_progression` compares them

What (eval/ holds the logic, `eval.harness.EvalConfig` is the `eval:` params section, every key with a
default): the checkpoint (an HF causal LM or vision-language model by path, on `device` auto | cpu |
cuda; an OpenAI-compatible endpoint; or a predictions file) answers every configured benchmark under
one protocol: the same templates, greedy decoding, deterministic parsing, generation Pass@1 and
option log-likelihood, every score with a 95% interval (eval/intervals.py: Wilson for accuracies, a
seeded bootstrap otherwise). The llm rubric judge and `endpoint=local` use the pipeline's LLM client,
which the stage runner opens. With `instruct.enabled` (default) the same model also answers the
instruction-following benchmark (eval/instruct.py: medical requests with verifiable constraints of
the eval split, single-turn and three-turn), in the checkpoint's own style.

Output (data/eval/<checkpoint>/, atomically): items.jsonl (one scored row per item and mode),
instruct_items.jsonl (every instruction-following item: messages, constraints, reply, strict and
loose verdicts; or its skip reason), metrics.json (DVC metrics; `instruct` holds the
instruction-following scores), scores_plot.json (DVC plots), summary.json (model identity,
fingerprint, accounting, the instruction-following benchmark's version), report.md, table.csv,
scores.png, quarantine.jsonl; every path in them is relative to the project root. Per-item results
also go to .cache/eval/<checkpoint>/ as they come (items.jsonl, instruct_items.jsonl), so a run
stopped by a failing endpoint resumes without asking answered items again.
MLflow child run `eval@<checkpoint>` (tag `checkpoint`): <benchmark>.<mode>.<metric> with
<metric>_ci_low / <metric>_ci_high, category macro-averages with theirs, parse-failure rates,
decontamination overlap and whether the clean stage checked each benchmark, instruct.<score> (every
number of metrics.json), items/s per mode; artifacts report.md, table.csv (+ an MLflow table),
scores.png, metrics.json, summary.json.

Why: one harness for every checkpoint and any model makes scores comparable along the pipeline;
outputs free of wall clock and machine paths make a re-run byte-identical, so DVC re-runs nothing
that did not change.
"""

from __future__ import annotations

from eval.harness import EvalConfig, uses_llm
from eval.harness import run as evaluate
from tasks.common.config import resolve
from tasks.common.stage import Stage, StageContext, StageResult, main, numeric_leaves
from tasks.llm.client import load_llm_config

ARTIFACTS = ("report.md", "table.csv", "scores.png", "metrics.json", "summary.json")


def run(cfg: EvalConfig, ctx: StageContext) -> StageResult:
    # an external endpoint under test gets the `llm:` settings, with the command line's `llm.*` overrides
    llm_cfg = load_llm_config(ctx.llm_argv) if cfg.endpoint else None
    metrics, summary, result = evaluate(cfg, ctx.out, resolve(cfg.work_root) / cfg.checkpoint, client=ctx.client,
                                        llm_cfg=llm_cfg, profile=ctx.profile, restart_on_mismatch=True,
                                        title=f"Evaluation: {cfg.checkpoint}")
    flat = numeric_leaves(metrics)
    for mode in ("generate", "loglik"):
        n, secs = result.timings.get(f"{mode}_items", 0), result.timings.get(f"{mode}_s", 0.0)
        if n and secs:
            flat[f"throughput.{mode}_items_per_s"] = n / secs
    flat.update({f"endpoint.{k}": v for k, v in result.client_stats.items()})
    if ctx.tracker is not None:
        log_table(ctx.tracker.mlflow, ctx.out / "table.csv")
    line = ", ".join(f"{n} {100 * e['generate']['score']:.1f}" for n, e in metrics["benchmarks"].items()
                     if "generate" in e)
    if "prompt_strict" in metrics.get("instruct", {}):
        line += f"; instruct prompt-strict {100 * metrics['instruct']['prompt_strict']:.1f}"
    return StageResult(summary=summary, metrics=flat, artifacts=[(name, "eval") for name in ARTIFACTS],
                       tags={"checkpoint": cfg.checkpoint}, line=f"{line}; overall {metrics['overall']}",
                       write_summary=False)      # the harness writes summary.json beside metrics.json


def log_table(mlflow, path) -> None:
    """table.csv as an MLflow table (viewable in the UI) beside the CSV artifact."""
    try:
        import pandas as pd
    except ImportError:  # pandas is optional: the CSV artifact is always there
        return
    mlflow.log_table(data=pd.read_csv(path), artifact_file="eval/table.json")


STAGE = Stage("eval", EvalConfig, run, uses_llm=uses_llm, out_dir=lambda cfg: f"{cfg.out_root}/{cfg.checkpoint}",
              run_name=lambda cfg: f"eval@{cfg.checkpoint}")

if __name__ == "__main__":
    main(STAGE)
