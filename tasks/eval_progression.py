"""Stage `eval_progression`: which training stage moved which benchmark (paper §6, over checkpoints).

Run:   python -m tasks.eval_progression [root=data/eval out=data/eval_progression]
DVC:   dvc repro eval_progression          (after the eval@<checkpoint> stages)

What (logic in eval/progression.py, intervals in eval/intervals.py, config
`eval.progression.ProgressionConfig`): reads every <root>/<checkpoint>/metrics.json the `eval` stage
wrote, orders the checkpoints by the pipeline (base, cpt, mid, sft, rl; unknown names after, by name)
and puts their scores side by side, each with its 95% interval and its change over the previous
checkpoint, the change with the 95% interval of the difference (Newcombe's hybrid score interval for
accuracies, the normal approximation from the two bootstrap intervals otherwise) and a mark:
▲ / ▼ significant rise / fall (the interval excludes 0), ~ not significant. Beside the scores: the
parse-failure rate per benchmark and mode (Wilson interval, Newcombe change), and the
instruction-following scores (metrics.json `instruct`: prompt / instruction strict / loose,
multi-turn persistence), "n/a" for a checkpoint evaluated without them.

Output (data/eval_progression/, atomically): progression.json (long table), progression_plot.json
(DVC plots: one row per checkpoint, one field per benchmark, instruct_<score>), progression_metrics.json
(DVC metrics: <checkpoint>.<benchmark>.<mode>.{score, score_ci_low, score_ci_high, delta, delta_ci_low,
delta_ci_high, delta_significant}, with <checkpoint>.<benchmark>.<mode>_parse_failure_rate.{...} and
<checkpoint>.instruct.<score>.{...} in the same shape), progression.md, progression.csv, progression.png.
MLflow child run `eval_progression`: every number of progression_metrics.json; the four human-readable
files as artifacts.

Why: a score alone says little; the delta a stage adds is what tells whether that stage is worth its
compute, and only when it is larger than the noise of a benchmark of that size. No summary.json:
progression_metrics.json is the stage's whole account.
"""

from __future__ import annotations

from eval.progression import ProgressionConfig, write_progression
from tasks.common.config import resolve
from tasks.common.stage import Stage, StageContext, StageResult, main, numeric_leaves

ARTIFACTS = ("progression.md", "progression.csv", "progression.png", "progression_plot.json")


def run(cfg: ProgressionConfig, ctx: StageContext) -> StageResult:
    res = write_progression(resolve(cfg.root), ctx.out)
    return StageResult(summary={"checkpoints": res["checkpoints"], "rows": res["rows"]},
                       metrics=numeric_leaves(res["metrics"]),
                       artifacts=[(name, "eval_progression") for name in ARTIFACTS],
                       line=f"{', '.join(res['checkpoints'])} ({res['rows']} rows)", write_summary=False)


STAGE = Stage("eval_progression", ProgressionConfig, run, out_dir=lambda cfg: cfg.out)

if __name__ == "__main__":
    main(STAGE)
