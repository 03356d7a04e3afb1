"""Stage `sft`: supervised fine-tuning on the SFT set (paper §5.1.3).

Run:   python -m tasks.sft [key=value ...]   (e.g. schedule.epochs=2 train.learning_rate=2e-4)
       torchrun --nproc_per_node 2 -m tasks.sft  (DeepSpeed ZeRO-2 as in `cpt`)
DVC:   dvc repro sft

What (tasks/sft_training/ does it, on the generic library tasks/training/, the loop `cpt` and
`mid_train` run; no hand-written loop):
- continues data/mid_train/model on data/sft_data/samples: chat samples with <think> rationales,
  tool calls and tool results, images, multi-turn instruction following, with assistant-only loss;
- held-out groups per source (a question and its rewritten or repeated copies stay on one side; a
  training sample of another pool built on a held-out sample's source is set aside, counted);
- loss per source (train.loss.family.<source>) in MLflow, held-out loss per source before and after;
- resumable like `cpt` (checkpoints under .cache/sft_checkpoints/<run key>/);
- the checkpoint is marked `thinking_trained: true`: the harness evaluates it with the thinking
  template (`eval.style: auto`).
Outputs (data/sft/): model/, metrics.json, summary.json, schedule.jsonl, order_trace.jsonl, rejected/
(schedule entries that could not be trained) and rejected_samples/.

MLflow: train.loss / learning rate / tokens/s per logging step, train.loss.family.<source>,
heldout.<source>.ppl before and after, the summary; the model registered as `mlflow.registered_name`
(medxiaohe-sft).
"""

from __future__ import annotations

from tasks.common.io import head_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.sft_training.config import SFTConfig
from tasks.sft_training.run import train_sft
from tasks.training.mlflow_model import model_tags
from tasks.training.scheduled import cleanup_checkpoints


def run(cfg: SFTConfig, ctx: StageContext) -> StageResult:
    done = train_sft(cfg, ctx.out, ctx.log_metrics)
    if ctx.out is None:
        return StageResult(summary=done.summary)
    tags = model_tags(ctx.tracker, ctx.out / "model", cfg.mlflow)
    cleanup_checkpoints(done.checkpoint_root, cfg.keep_checkpoints)
    s = done.summary
    before, after = s["heldout_ppl_before"], s["heldout_ppl_after"]
    ppl = f"{before:.3f} -> {after:.3f}" if before is not None and after is not None else "n/a"
    return StageResult(
        summary=s, metrics=done.metrics, tags=tags, samples=head_jsonl(ctx.out / "schedule.jsonl", 20),
        artifacts=[("metrics.json", "sft"), ("summary.json", "sft"), ("schedule.jsonl", "sft")],
        line=f"steps={s['global_step']} entries={s['kept']} rejected={s['rejected']} "
             f"by source={s['schedule']['by_source']} heldout ppl {ppl} "
             f"tokens/s={done.metrics.get('tokens_per_s') or 0:.0f}")


STAGE = Stage("sft", SFTConfig, run, distributed=True)

if __name__ == "__main__":
    main(STAGE)
