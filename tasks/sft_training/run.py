"""What the `sft` stage does, given its config (see tasks/sft.py for the stage and how to launch it).

    outcome = train_sft(cfg, out_dir_or_None, log_metrics)     # out_dir None on ranks other than 0

1. the data: data/sft_data/samples (chat samples: <think> rationales, tool calls, images, multi-turn
   instruction following), each tagged with its candidate pool (`family` = source);
2. the schedule (schedule.py): held-out groups per source, the rest in seeded order per epoch;
   samples that cannot be encoded leave with the reason (rejected_samples/), as in `cpt`;
3. assistant-only loss over the chat template (system, user and tool turns carry none): the
   project's training library (tasks/training), the same loop `cpt` and `mid_train` run;
4. loss per source during training (train.loss.family.<source>, mid_training's FamilyLossTrainer)
   and held-out loss per source before and after, with 95% bootstrap intervals;
5. the model saved with `thinking_trained: true` (the SFT set keeps the <think> rationales), so the
   eval harness evaluates it with the thinking template (`eval.style: auto`).
Resumable like `cpt`: checkpoints under .cache/sft_checkpoints/<run key>/.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tasks.common.config import project_root, resolve
from tasks.common.io import without_wall_clock, write_json, write_jsonl
from tasks.mid_training.trainer import FamilyLossTrainer
from tasks.sft_training.config import SFTConfig
from tasks.sft_training.schedule import build_schedule
from tasks.training.collate import Collator
from tasks.training.dataset import OrderedDataset
from tasks.training.device import world
from tasks.training.encode import SampleEncoder, encode_all, sample_rejection, write_rejections
from tasks.training.model_io import load_model
from tasks.training.scheduled import (
    TrainOutcome,
    by_kind_table,
    check_budget,
    dropped_entries,
    merged_trace,
    run_schedule,
    wall_metrics,
)
from tasks.training.splits import read_samples


def train_sft(cfg: SFTConfig, out: Path | None, log_metrics) -> TrainOutcome:
    _, world_size = world()
    started = time.perf_counter()
    read, bad_lines = read_samples(resolve(cfg.samples_dir))
    usable = [isinstance(s.get("id"), str) and bool(s.get("family")) and bool(s.get("source_ids")) for s in read]
    samples = [s for s, ok in zip(read, usable) if ok]
    bad_lines += [sample_rejection(str(s.get("id")), "bad_field", "an SFT sample needs an id, a family and source_ids")
                  for s, ok in zip(read, usable) if not ok]
    if not samples:
        raise ValueError(f"{cfg.samples_dir} holds no SFT samples: run the sft_data stage first")
    entries, heldout_rows, shadowed = build_schedule(samples, cfg.schedule, cfg.seed)

    base_dir = resolve(cfg.base_model_dir)
    vlm = load_model(base_dir)
    encoder = SampleEncoder(vlm.processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor,
                            require_assistant_mask=True)
    by_id = {s["id"]: s for s in samples}
    wanted = {e["id"] for e in entries} | {s["id"] for s in heldout_rows}
    encoded, rejected = encode_all([by_id[i] for i in sorted(wanted)], encoder)
    order_entries = [e for e in entries if e["id"] in encoded]
    order = [e["id"] for e in order_entries]
    heldout = [s["id"] for s in heldout_rows if s["id"] in encoded]
    if not order:
        raise ValueError("the SFT schedule is empty after encoding: nothing to train on")
    check_budget(cfg, len(order), world_size, stops="the run would stop before the end of the SFT set",
                 budget="sft.schedule.max_samples or sft.schedule.epochs")
    dataset = OrderedDataset(encoded, order)
    collate = Collator(vlm.processor, encoder.budget, encoder.factor, blank_image_for_text=world_size > 1,
                       assistant_only_loss=True)
    run = run_schedule(cfg, vlm=vlm, encoder=encoder, dataset=dataset, heldout=OrderedDataset(encoded, heldout),
                       group_of={s["id"]: s["family"] for s in heldout_rows}, collate=collate, out=out,
                       log_metrics=log_metrics, base_dir=base_dir, trainer_cls=FamilyLossTrainer,
                       extra_meta={"stage": "sft", "thinking_trained": True, "base_model": str(cfg.base_model_dir)},
                       # one phase: loss per source is the SFT signal (the curriculum phases are mid_train's)
                       trainer_kwargs={"group_of": {e["id"]: (e["family"], 1) for e in entries},
                                       "log_fn": lambda m, step: log_metrics(m, step=step)})
    trainer, step = run.trainer, run.trainer.state.global_step
    if run.rank != 0:
        return TrainOutcome({"rank": run.rank, "global_step": step}, {}, run.root)
    before, after = run.before, run.after
    write_jsonl(out / "order_trace.jsonl", merged_trace(run.root) if cfg.trace_order else [])
    write_jsonl(out / "schedule.jsonl", order_entries)
    dropped = dropped_entries(entries, encoded, rejected, lambda e: f"schedule:{e['position']}")
    write_rejections(out / "rejected", dropped)
    write_rejections(out / "rejected_samples", rejected + bad_lines)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {"heldout_before": before, "heldout_after": after, "train_loss_first": losses[0] if losses else None,
               "train_loss_last": losses[-1] if losses else None, "global_step": step,
               "loss_by_group": trainer.mean_losses(), "loss_history_by_group": trainer.history,
               "log_history": trainer.state.log_history}
    write_json(out / "metrics.json", without_wall_clock(metrics))
    summary = {
        "read": len(entries), "kept": len(order), "rejected": len(dropped),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in dropped).items())),
        "samples_read": len(read), "samples_rejected": len(rejected), "bad_lines": len(bad_lines),
        "heldout": len(heldout), "shadowed_by_heldout": len(shadowed),
        "shadowed_by_source": dict(sorted(Counter(s["family"] for s in shadowed).items())), "global_step": step, "resumed_from": run.resume_from,
        "skipped_checkpoints": run.skipped, "run_key": run.key, "world_size": world_size,
        "schedule": {"entries": len(order), "epochs": cfg.schedule.epochs,
                     "by_source": dict(sorted(Counter(e["family"] for e in order_entries).items()))},
        "train_loss_by_group": trainer.mean_losses(), "train_loss_last": metrics["train_loss_last"],
        "heldout_loss_by_source": by_kind_table(before, after),
        "heldout_ppl_before": before["ppl"] if before else None, "heldout_ppl_after": after["ppl"] if after else None,
        "tokens_seen": int(trainer.state.num_input_tokens_seen), "steps_this_run": step - run.metrics_cb.start_step,
        "thinking_trained": True,
        "rows_skipped_in_training": dict(Counter(r for _, r in trainer.skipped_rows)),
        "partial": step * cfg.train.batch_size * cfg.train.grad_accum * world_size < len(order),
    }
    return TrainOutcome(summary, wall_metrics(run, time.perf_counter() - started), run.root)
