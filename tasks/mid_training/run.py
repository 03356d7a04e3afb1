"""What the `mid_train` stage does, given its config (see tasks/mid_train.py for the stage and how to launch it).

    outcome = train_mid(cfg, out_dir_or_None, log_metrics)     # out_dir None on ranks other than 0

1. the data: data/mid_data/samples (chat samples with <think> reasoning, tool calls, images) and the
   replay pool, the CPT schedule's entries (data/cpt_order/manifest.jsonl over data/cpt_data/samples);
2. the schedule (schedule.py): held-out samples per family, the four phases in order, CPT replay
   interleaved under the rising reasoning share; entries whose sample cannot be encoded leave it
   with the reason (rejected/), as in `cpt`;
3. assistant-only loss (the collator masks system, user and tool turns: the model learns to reason,
   call tools and answer, not to predict tool output); CPT replay text keeps its pre-training loss
   on every token;
4. every component trains (the vision tower unfrozen, paper §4.2) at its own rate (`train.component_lr`);
5. loss per family and phase during training (trainer.py) and held-out loss per family before and
   after (the saved model reloaded), with 95% bootstrap intervals;
6. the model saved with `thinking_trained: true` in medx_model.json: the eval harness then evaluates it
   with the thinking template (`eval.style: auto`, eval/harness.py).

Resumable like `cpt`: checkpoints under .cache/mid_checkpoints/<run key>/, the run key hashing the
params, the schedule and the starting model; a killed run started again resumes the newest complete
checkpoint at the same schedule position. The per-family training-loss totals cover the steps run
by this call (a resumed run reports its own steps).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tasks.common.config import project_root, resolve
from tasks.common.io import read_jsonl, without_wall_clock, write_json, write_jsonl
from tasks.mid_training.config import MidTrainConfig
from tasks.mid_training.schedule import build_schedule
from tasks.mid_training.trainer import FamilyLossTrainer
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


def train_mid(cfg: MidTrainConfig, out: Path | None, log_metrics) -> TrainOutcome:
    _, world_size = world()
    started = time.perf_counter()
    samples, bad_lines = read_samples(resolve(cfg.samples_dir))
    samples = [s for s in samples if isinstance(s.get("id"), str) and s.get("family") and s.get("phase")]
    manifest_path = resolve(cfg.replay_manifest)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{cfg.replay_manifest} missing: run the cpt_order stage first")
    pool = sorted({e["id"] for e in read_jsonl(manifest_path)})
    entries, heldout_rows = build_schedule(samples, pool, cfg.curriculum, cfg.seed)

    base_dir = resolve(cfg.base_model_dir)
    vlm = load_model(base_dir)
    encoder = SampleEncoder(vlm.processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor,
                            require_assistant_mask=True)
    replay_wanted = {e["id"] for e in entries if e["replay"]}
    replay_samples = []
    if replay_wanted:
        cpt_samples, cpt_bad = read_samples(resolve(cfg.replay_samples_dir))
        replay_samples = [s for s in cpt_samples if s.get("id") in replay_wanted]
        bad_lines += cpt_bad
    by_id = {s["id"]: s for s in [*samples, *replay_samples]}
    wanted = {e["id"] for e in entries} | {s["id"] for s in heldout_rows}
    encoded, rejected = encode_all([by_id[i] for i in sorted(wanted & set(by_id))], encoder)
    rejected += [sample_rejection(i, "missing_sample", "not in the mid_data samples or the CPT replay pool")
                 for i in sorted(wanted - set(by_id))]
    order_entries = [e for e in entries if e["id"] in encoded]
    order = [e["id"] for e in order_entries]
    heldout = [s["id"] for s in heldout_rows if s["id"] in encoded]
    if not order:
        raise ValueError("the mid-training schedule is empty after encoding: nothing to train on")
    check_budget(cfg, len(order), world_size, stops="the curriculum would not reach its last phase",
                 budget="mid_data's engine sizes or curriculum.max_per_phase")
    dataset = OrderedDataset(encoded, order)
    collate = Collator(vlm.processor, encoder.budget, encoder.factor, blank_image_for_text=world_size > 1,
                       assistant_only_loss=True)
    run = run_schedule(cfg, vlm=vlm, encoder=encoder, dataset=dataset, heldout=OrderedDataset(encoded, heldout),
                       group_of={s["id"]: s["family"] for s in heldout_rows}, collate=collate, out=out,
                       log_metrics=log_metrics, base_dir=base_dir, trainer_cls=FamilyLossTrainer,
                       extra_meta={"stage": "mid_train", "thinking_trained": True,
                                   "base_model": str(cfg.base_model_dir)},
                       trainer_kwargs={"group_of": {e["id"]: (e["family"], e["phase"]) for e in entries},
                                       "log_fn": lambda m, step: log_metrics(m, step=step)})
    trainer, step = run.trainer, run.trainer.state.global_step
    if run.rank != 0:
        return TrainOutcome({"rank": run.rank, "global_step": step}, {}, run.root)
    before, after = run.before, run.after
    trace = merged_trace(run.root) if cfg.trace_order else []
    write_jsonl(out / "order_trace.jsonl", trace)
    write_jsonl(out / "schedule.jsonl", order_entries)
    dropped = dropped_entries(entries, encoded, rejected, lambda e: f"schedule:{e['position']}")
    write_rejections(out / "rejected", dropped)
    write_rejections(out / "rejected_samples", rejected + bad_lines)
    tokens = int(trainer.state.num_input_tokens_seen)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {"heldout_before": before, "heldout_after": after, "train_loss_first": losses[0] if losses else None,
               "train_loss_last": losses[-1] if losses else None, "global_step": step,
               "loss_by_group": trainer.mean_losses(), "loss_history_by_group": trainer.history,
               "log_history": trainer.state.log_history}
    write_json(out / "metrics.json", without_wall_clock(metrics))
    phases = Counter(e["phase"] for e in order_entries)
    summary = {
        "read": len(entries), "kept": len(order), "rejected": len(dropped),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in dropped).items())),
        "samples_rejected": len(rejected), "heldout": len(heldout), "global_step": step,
        "resumed_from": run.resume_from, "skipped_checkpoints": run.skipped, "run_key": run.key,
        "world_size": world_size,
        "schedule": {"entries": len(order), "by_phase": {str(k): phases[k] for k in sorted(phases)},
                     "by_family": dict(sorted(Counter(e["family"] for e in order_entries).items())),
                     "cpt_replay": sum(e["replay"] for e in order_entries),
                     "fusion_replay": sum(bool(e.get("fusion_replay")) for e in order_entries),
                     "reasoning_share_first_quarter": _share(order_entries, 0),
                     "reasoning_share_last_quarter": _share(order_entries, 3)},
        "train_loss_by_group": trainer.mean_losses(), "train_loss_last": metrics["train_loss_last"],
        "heldout_loss_by_family": by_kind_table(before, after),
        "heldout_ppl_before": before["ppl"] if before else None, "heldout_ppl_after": after["ppl"] if after else None,
        "tokens_seen": tokens, "steps_this_run": step - run.metrics_cb.start_step, "thinking_trained": True,
        "rows_skipped_in_training": dict(Counter(r for _, r in trainer.skipped_rows)),
        "partial": step * cfg.train.batch_size * cfg.train.grad_accum * world_size < len(order),
    }
    return TrainOutcome(summary, wall_metrics(run, time.perf_counter() - started), run.root)


def _share(entries: list[dict], quarter: int) -> float | None:
    n = len(entries)
    part = entries[quarter * n // 4:(quarter + 1) * n // 4]
    return round(sum(not e["replay"] for e in part) / len(part), 4) if part else None
