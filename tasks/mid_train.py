"""Stage `mid_train`: mid-training on the reasoning data, a four-phase curriculum (paper §4.2).

Run:   python -m tasks.mid_train [key=value ...]   (e.g. curriculum.start_share=0.3 train.device=cpu)
       torchrun --nproc_per_node 2 -m tasks.mid_train  (DeepSpeed ZeRO-2 as in `cpt`)
DVC:   dvc repro mid_train

What (tasks/mid_training/ does it, on the generic library tasks/training/):
- continues data/cpt/model on data/mid_data/samples: chat samples with <think> reasoning, tool calls
  and tool results, images and tool crops, with assistant-only loss (system, user and tool turns
  carry none);
- the curriculum: foundational logic -> long-horizon deduction -> perceptual-logic alignment ->
  hybrid fusion (each sample's `phase`), held-out samples per family set aside; a progressive
  distribution warm-up interleaves a replay buffer of CPT data so the reasoning share rises from
  `curriculum.start_share` to `curriculum.end_share`;
- every component trains (vision tower unfrozen), each at its `train.component_lr` rate;
- resumable like `cpt` (checkpoints under .cache/mid_checkpoints/<run key>/);
- the checkpoint is marked `thinking_trained: true`, so the eval harness evaluates it with the thinking
  template (`eval.style: auto`, eval/harness.py).
Outputs (data/mid_train/): model/, metrics.json (loss per family and phase, held-out before/after,
log history), summary.json, schedule.jsonl (every trained entry: id, phase, family, replay flags),
order_trace.jsonl, rejected/ (schedule entries that could not be trained) and rejected_samples/.

MLflow: train.loss / learning rate / tokens/s per logging step, train.loss.family.<family> and
train.loss.phase.<k> per logging step, heldout.<family>.ppl before and after, the summary; the model
logged and registered as `mlflow.registered_name` (medxiaohe-mid).
"""

from __future__ import annotations

from tasks.common.io import head_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.mid_training.config import MidTrainConfig
from tasks.mid_training.run import train_mid
from tasks.training.mlflow_model import model_tags
from tasks.training.scheduled import cleanup_checkpoints


def run(cfg: MidTrainConfig, ctx: StageContext) -> StageResult:
    done = train_mid(cfg, ctx.out, ctx.log_metrics)
    if ctx.out is None:
        return StageResult(summary=done.summary)
    tags = model_tags(ctx.tracker, ctx.out / "model", cfg.mlflow)
    cleanup_checkpoints(done.checkpoint_root, cfg.keep_checkpoints)
    s = done.summary
    before, after = s["heldout_ppl_before"], s["heldout_ppl_after"]
    ppl = f"{before:.3f} -> {after:.3f}" if before is not None and after is not None else "n/a"
    return StageResult(
        summary=s, metrics=done.metrics, tags=tags, samples=head_jsonl(ctx.out / "schedule.jsonl", 20),
        artifacts=[("metrics.json", "mid_train"), ("summary.json", "mid_train"), ("schedule.jsonl", "mid_train")],
        line=f"steps={s['global_step']} entries={s['kept']} rejected={s['rejected']} phases={s['schedule']['by_phase']} "
             f"heldout ppl {ppl} tokens/s={done.metrics.get('tokens_per_s') or 0:.0f}")


STAGE = Stage("mid_train", MidTrainConfig, run, distributed=True)

if __name__ == "__main__":
    main(STAGE)
