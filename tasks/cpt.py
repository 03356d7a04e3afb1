"""Stage `cpt`: single-stage continual pre-training over the ordered manifest (paper §3.4).

Run:   python -m tasks.cpt [key=value ...]      (e.g. order=shuffle train.device=cpu train.component_lr.decoder=1e-4)
       torchrun --nproc_per_node 2 -m tasks.cpt (DeepSpeed ZeRO-2, one process per GPU with NCCL, or over
                                                 gloo on the CPU; `deepspeed=tasks/training/ds_zero3.json`
                                                 for ZeRO-3, `deepspeed=""` for DDP)
       deepspeed --num_gpus 2 --module tasks.cpt  (the same with the deepspeed launcher)
DVC:   dvc repro cpt;  the paper's comparison:  dvc exp run -S cpt.order=shuffle  vs  dvc exp run
       (bench/compare_order.py runs both and prints the held-out perplexities)

What (tasks/cpt_training/run.py does it, on the generic library tasks/training/):
- trains data/base_model with transformers' Trainer on data/cpt_order/manifest.jsonl, one full
  pass: the manifest is the budget (cpt_order.max_samples), so the curriculum reaches its last
  cluster, and a `train.max_steps` that would stop earlier is refused (`allow_partial=true` for a
  smoke test); text and image-text samples in the same batches, in the manifest's order (a sampler
  that never shuffles; `order: shuffle` trains the same entries in a seeded random order instead),
  general-text replay entries included; loss on every text token (a pre-training objective,
  conversations included); learning rates per component (`train.component_lr`: vision tower,
  adapter, decoder) under one warm-up + cosine schedule with a floor (`train.min_lr_ratio`);
- device: `train.device` (auto | cpu | cuda): CUDA with bf16 when present, else the CPU in float32;
- checkpoints every `train.save_steps` steps under .cache/cpt_checkpoints/<run key>/ (outside
  DVC's outputs); a killed run started again with the same params resumes from the newest
  complete checkpoint at the same position in the order; an incomplete checkpoint (a shard
  missing after a kill during a save) is skipped with the reason, an explicit `resume_from`
  that is incomplete stops the stage with the missing files named;
- held-out perplexity on data/cpt_order/heldout.jsonl before training (base model) and after
  (the saved model reloaded from data/cpt/model), overall and per data kind, with 95% bootstrap
  intervals; the summary's `entries_trained` says which clusters the order trace reached, in order.
Outputs (data/cpt/): model/ (save_pretrained: model + processor + medx_model.json; no
training_args.bin, which pickles the absolute output path), metrics.json, summary.json,
order_trace.jsonl (step, schedule positions and sample ids of every micro-batch),
rejected/part-*.jsonl (schedule entries that could not be trained, with the reason) and
rejected_samples/part-*.jsonl (the samples behind them, and unreadable sample lines).

MLflow (rank 0 only): params, train.loss / train.learning_rate / train.grad_norm /
train.tokens_per_s per logging step, heldout.ppl at step 0 and at the last step, the summary,
tokens_per_s; the trained model logged with mlflow.transformers and registered as
`mlflow.registered_name` (tags model_uri, registered_version).

Why: the curriculum's claim is tested by training the same entries in two orders with everything
else fixed; under several processes every rank trains, rank 0 alone writes data/cpt and logs.
(tasks/cpt_synthesis/ is the CPT data-synthesis package; this stage's logic is tasks/cpt_training/.)
"""

from __future__ import annotations

from tasks.common.io import head_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.cpt_training.config import CptConfig
from tasks.cpt_training.run import cleanup_checkpoints, train_cpt
from tasks.training.mlflow_model import model_tags


def run(cfg: CptConfig, ctx: StageContext) -> StageResult:
    done = train_cpt(cfg, ctx.out, ctx.log_metrics)
    if ctx.out is None:                      # not rank 0: trained its share, writes and logs nothing
        return StageResult(summary=done.summary)
    tags = model_tags(ctx.tracker, ctx.out / "model", cfg.mlflow)
    cleanup_checkpoints(done.checkpoint_root, cfg.keep_checkpoints)
    s = done.summary
    before, after = s["heldout_ppl_before"], s["heldout_ppl_after"]
    ppl = f"{before:.3f} -> {after:.3f}" if before is not None and after is not None else "n/a"
    return StageResult(
        summary=s, metrics=done.metrics, tags=tags, samples=head_jsonl(ctx.out / "order_trace.jsonl", 20),
        artifacts=[("metrics.json", "cpt"), ("summary.json", "cpt")],
        line=f"order={s['order']} steps={s['global_step']} entries={s['kept']} rejected={s['rejected']} "
             f"heldout ppl {ppl} tokens/s={done.metrics.get('tokens_per_s') or 0:.0f} "
             f"resumed_from={ctx.relative(s['resumed_from'])}")


STAGE = Stage("cpt", CptConfig, run, distributed=True)

if __name__ == "__main__":
    main(STAGE)
