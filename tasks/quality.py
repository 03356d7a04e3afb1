"""Stage `quality`: model-based quality filtering with a self-bootstrapped fastText classifier
(paper §3.1, stage 3 of the cleaning pipeline).

Run:   python -m tasks.quality [key=value ...]    (e.g. profile=tiny verifier=llm llm.base_url=local engine.workers=4)
DVC:   dvc repro quality

What: reads the clean stage's kept records (`<in_dir>/kept`) and its rule-rejected texts
(`<in_dir>/rejected`, reasons in `seed_negative_reasons`), runs the bootstrap loop (seed labels ->
fastText -> score a fresh pool sample -> second-pass verification -> balanced resample -> retrain,
until hold-out accuracy >= target_accuracy or max_rounds), then scores every kept record: score >=
threshold is kept with `meta.quality_score`, else rejected as `low_quality` with the score.
Image records with little text pass through unscored (`quality_score: null`).

The bootstrap runs in the driver; scoring every kept record is split into shards run by Ray
workers (tasks/common/engine.py; `engine.workers`, `engine.address`), decisions taken in input
order, so the outputs do not depend on the number of workers.

Output (out_dir): kept/, rejected/, summary.json (per-shard counts: MLflow shards.json), rounds.json (per-round hold-out accuracy,
precision, recall, classifier/verifier agreement), verifier_failures.json, quality_model.bin.
Each round's metrics are logged to MLflow at step=round.

The hold-out behind `final_accuracy` is half degraded copies and half verifier-labelled texts, i.e.
made by what made the training labels. `real_eval` (on by default) adds accuracy on real text
with labels from elsewhere, beside it: real_holdout.json and the `real_*` summary fields (curated
sources vs the clean stage's rule rejections, leave-one-family-out; Wilson intervals), and
review_sample.jsonl, a seeded sample for human labelling whose labels, once imported
(`real_eval.review_labels`), give the `reviewed_*` fields. It never changes kept/, rejected/ or
the model (tasks/corpus/quality/real_eval.py).

Why: `verifier: local` (rules, no LLM) is the default because the embedded SmolLM2-135M is too
small to judge quality (ARCHITECTURE.md "LLM roles"); `verifier: llm` asks the endpoint in the `llm:`
section (base_url `local` starts the embedded llama.cpp server for the stage's duration).
Everything is seeded and fastText trains with thread=1, so a re-run gives identical outputs.
"""

from __future__ import annotations

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.corpus.quality.run import QualityConfig, quality_filter


def run(cfg: QualityConfig, ctx: StageContext) -> StageResult:
    sink = ctx.sink(cfg.shard_size)
    extra = quality_filter(cfg, sink, client=ctx.client, on_round=lambda r, m: ctx.log_metrics(m, step=r),
                           engine=ctx.engine)
    return StageResult(summary=extra, artifacts=["rounds.json", "verifier_failures.json", "quality_model.bin",
                                                 "real_holdout.json", "review_sample.jsonl"])


STAGE = Stage("quality", QualityConfig, run, uses_llm=lambda cfg: cfg.verifier == "llm", sharded=True)

if __name__ == "__main__":
    main(STAGE)
