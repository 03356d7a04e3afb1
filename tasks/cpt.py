"""Stage `cpt`: single-stage continual pre-training over the ordered manifest (paper §3.4).

Run:   python -m tasks.cpt [key=value ...]      (e.g. order=shuffle train.max_steps=200)
       torchrun --nproc_per_node 2 -m tasks.cpt (DeepSpeed ZeRO-2 over gloo on CPU; `deepspeed=
                                                      tasks/training/ds_zero3.json` for ZeRO-3, `deepspeed=""` for DDP)
       deepspeed --num_gpus 2 --module tasks.cpt  (the same with the deepspeed launcher)
(The module is `cpt_train`, not `cpt`: tasks/cpt_synthesis/ is the CPT data-synthesis package, and a package
shadows a module of the same name.)
DVC:   dvc repro cpt;  the paper's comparison:  dvc exp run -S cpt.order=shuffle  vs  dvc exp run
       (bench/compare_order.py runs both and prints the held-out perplexities)

What (tasks/cpt_training/run.py does it):
- trains data/base_model with transformers' Trainer on data/cpt_order/manifest.jsonl, text and
  image-text samples in the same batches, in the manifest's order (a sampler that never
  shuffles; `order: shuffle` trains the same entries in a seeded random order instead);
- checkpoints every `train.save_steps` steps under .cache/cpt_checkpoints/<run key>/ (outside
  DVC's outputs); a killed run started again with the same params resumes from the newest
  complete checkpoint at the same position in the order; an incomplete checkpoint (a shard
  missing after a kill during a save) is skipped with the reason, an explicit `resume_from`
  that is incomplete stops the stage with the missing files named;
- held-out perplexity on data/cpt_order/heldout.jsonl before training (base model) and after
  (the saved model reloaded from data/cpt/model).
Outputs (data/cpt/): model/ (save_pretrained: model + processor), metrics.json, summary.json,
order_trace.jsonl (step, schedule positions and sample ids of every micro-batch), rejected.jsonl.

MLflow (rank 0 only): params, train.loss / train.learning_rate / train.grad_norm /
train.tokens_per_s per logging step, heldout.ppl at step 0 and at the last step, the summary;
the trained model logged with mlflow.transformers and registered as `mlflow.registered_name`.

Under several processes every rank trains; rank 0 alone writes data/cpt, evaluates and logs.
"""

from __future__ import annotations

import contextlib
import sys

from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir, head_jsonl
from tasks.common.tracking import stage_run
from tasks.training.config import CptConfig
from tasks.cpt_training.run import cleanup_checkpoints, run
from tasks.training.mlflow_model import log_trained_model
from tasks.training.trainer import world


def main(argv: list[str] | None = None) -> dict:
    cfg, profile = load_stage_config("cpt", CptConfig, sys.argv[1:] if argv is None else argv)
    rank, _ = world()
    if rank != 0:
        return run(cfg, None, lambda metrics, step=None: None)
    with contextlib.ExitStack() as stack:
        tracker = stack.enter_context(stage_run("cpt", cfg, profile))
        out = stack.enter_context(atomic_output_dir(resolve(cfg.out_dir)))
        summary = run(cfg, out, lambda metrics, step=None: tracker.log_metrics(metrics, step=step))
        flat = {k: v for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
        tracker.log_summary({**flat, "rejected_by_reason": summary["rejected_by_reason"]},
                            kept_sample=head_jsonl(out / "order_trace.jsonl", 20))
        for name in ("metrics.json", "summary.json"):
            tracker.log_artifact(out / name, "cpt")
        if cfg.mlflow.log_model:
            logged = log_trained_model(tracker.mlflow, out / "model", registered_name=cfg.mlflow.registered_name,
                                       register=cfg.mlflow.register)
            summary["mlflow_model"] = logged
            tracker.mlflow.set_tags({"model_uri": logged["model_uri"],
                                     "registered_version": logged["registered_version"] or ""})
    cleanup_checkpoints(summary, cfg.keep_checkpoints)
    before, after = summary["heldout_ppl_before"], summary["heldout_ppl_after"]
    ppl = f"{before:.3f} -> {after:.3f}" if before is not None and after is not None else "n/a"
    print(f"cpt: order={summary['order']} steps={summary['global_step']} entries={summary['kept']} "
          f"rejected={summary['rejected']} heldout ppl {ppl} tokens/s={summary['tokens_per_s'] or 0:.0f} "
          f"resumed_from={summary['resumed_from']}")
    return summary


if __name__ == "__main__":
    main()
