"""What the `cpt` stage does, given its config (see tasks/cpt.py for the stage and how to launch it).

    outcome = train_cpt(cfg, out_dir_or_None, log_metrics)     # out_dir None on ranks other than 0
    outcome.summary, outcome.metrics, outcome.checkpoint_root

1. the schedule: data/cpt_order/manifest.jsonl in its order (`order: curriculum`), or the same
   entries in a seeded random order (`order: shuffle`, the baseline of the paper's claim); the
   samples it names are encoded with the base model's processor (a sample that cannot be, or that
   is missing, leaves the schedule: its entries go to rejected/ with the reason, the sample itself
   to rejected_samples/);
2. the run itself, as every training stage runs it (tasks/training/scheduled.py): the device
   (`train.device`: CUDA + bf16, or the CPU in float32), held-out perplexity of the base model on
   data/cpt_order/heldout.jsonl per data kind (cached beside the checkpoints), training with
   ScheduleTrainer under <checkpoint_root>/<run key>/ (a complete checkpoint of the same run is
   resumed; an incomplete one is skipped with the reason), the model saved to <out>/model, reloaded
   and measured again (the artifact itself is what gets evaluated);
3. metrics.json (held-out before/after, train loss, log history), order_trace.jsonl; the summary.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks.common.config import project_root, resolve
from tasks.common.io import read_jsonl, without_wall_clock, write_json, write_jsonl
from tasks.cpt_training.config import CptConfig
from tasks.training import scheduled
from tasks.training.collate import Collator
from tasks.training.dataset import OrderedDataset
from tasks.training.device import world
from tasks.training.encode import SampleEncoder, encode_all, sample_rejection, write_rejections
from tasks.training.model_io import load_model
from tasks.training.scheduled import (  # noqa: F401 -- choose_checkpoint, cleanup_checkpoints: re-exported
    TrainOutcome,
    by_kind_table,
    choose_checkpoint,
    cleanup_checkpoints,
    dropped_entries,
    merged_trace,
    run_schedule,
    wall_metrics,
)
from tasks.training.splits import data_kind, read_samples

LogFn = Callable[..., None]


def read_order_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the cpt_order stage first")
    return read_jsonl(path)


def schedule_ids(manifest: list[dict], order: str, seed: int) -> list[str]:
    ids = [e["id"] for e in sorted(manifest, key=lambda e: e["position"])]
    if order == "shuffle":
        ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return ids


def train_cpt(cfg: CptConfig, out: Path | None, log_metrics: LogFn) -> TrainOutcome:
    started = time.perf_counter()
    _, world_size = world()
    order_dir = resolve(cfg.order_dir)
    manifest = read_order_file(order_dir / "manifest.jsonl")
    heldout_rows = read_order_file(order_dir / "heldout.jsonl")
    samples, bad_lines = read_samples(resolve(cfg.samples_dir))
    wanted = {e["id"] for e in manifest} | {h["id"] for h in heldout_rows}
    by_id = {s["id"]: s for s in samples if isinstance(s.get("id"), str) and s["id"] in wanted}
    base_dir = resolve(cfg.base_model_dir)
    vlm = load_model(base_dir)
    encoder = SampleEncoder(vlm.processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all([by_id[i] for i in sorted(by_id)], encoder)
    rejected += [sample_rejection(i, "missing_sample", f"not in {cfg.samples_dir}")
                 for i in sorted(wanted - set(by_id))]
    order = [i for i in schedule_ids(manifest, cfg.order, cfg.seed) if i in encoded]
    heldout = [h["id"] for h in heldout_rows if h["id"] in encoded]
    if not order:
        raise ValueError("the schedule is empty after encoding: nothing to train on")
    check_budget(cfg, len(order), world_size)
    dataset = OrderedDataset(encoded, order)
    collate = Collator(vlm.processor, encoder.budget, encoder.factor, blank_image_for_text=world_size > 1)
    run = run_schedule(cfg, vlm=vlm, encoder=encoder, dataset=dataset, heldout=OrderedDataset(encoded, heldout),
                       group_of={i: data_kind(by_id[i]) for i in heldout}, collate=collate, out=out,
                       log_metrics=log_metrics, base_dir=base_dir,
                       extra_meta={"stage": "cpt", "order": cfg.order, "base_model": str(cfg.base_model_dir)})
    trainer, step = run.trainer, run.trainer.state.global_step
    if run.rank != 0:
        return TrainOutcome({"rank": run.rank, "global_step": step}, {}, run.root)
    before, after = run.before, run.after
    trace = merged_trace(run.root) if cfg.trace_order else []
    write_jsonl(out / "order_trace.jsonl", trace)
    # the unit of accounting is the schedule entry (a replayed sample counts once per entry):
    # rejected/ holds the entries that left the schedule, rejected_samples/ the samples behind them
    dropped = dropped_entries(sorted(manifest, key=lambda e: e["position"]), encoded, rejected,
                              lambda e: f"{cfg.order_dir}/manifest.jsonl:{e['position'] + 1}")
    write_rejections(out / "rejected", dropped)
    write_rejections(out / "rejected_samples", rejected + bad_lines)
    tokens = int(trainer.state.num_input_tokens_seen)
    steps_this_run = step - run.metrics_cb.start_step
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "order": cfg.order, "heldout_before": before, "heldout_after": after,
        "heldout_ppl_before": before["ppl"] if before else None, "heldout_ppl_after": after["ppl"] if after else None,
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        "train_loss_mean_this_run": float(run.result.training_loss) if steps_this_run else None,
        "global_step": step, "steps_this_run": steps_this_run, "tokens_seen": tokens,
        "tokens_this_run": tokens - run.metrics_cb.start_tokens, "log_history": trainer.state.log_history,
    }
    write_json(out / "metrics.json", without_wall_clock(metrics))
    summary = {
        "read": len(manifest), "kept": len(order), "rejected": len(dropped),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in dropped).items())),
        "samples_rejected": len(rejected), "order": cfg.order, "unique_samples": len(set(order)),
        "heldout": len(heldout), "global_step": step, "resumed_from": run.resume_from,
        "skipped_checkpoints": run.skipped,
        "rows_skipped_in_training": dict(Counter(r for _, r in trainer.skipped_rows)),
        "empty_batches": trainer.empty_batches, "run_key": run.key, "world_size": world_size,
        "deepspeed": run.deepspeed, "heldout_ppl_before": metrics["heldout_ppl_before"],
        "heldout_ppl_after": metrics["heldout_ppl_after"], "train_loss_last": metrics["train_loss_last"],
        "tokens_seen": tokens, "steps_this_run": steps_this_run,
        "heldout_by_kind": by_kind_table(before, after),
        "schedule_entries": len(order), "entries_trained": trace_coverage(trace, manifest, cfg.order),
        "partial": step * cfg.train.batch_size * cfg.train.grad_accum * world_size < len(order),
    }
    return TrainOutcome(summary, wall_metrics(run, time.perf_counter() - started), run.root)


def check_budget(cfg: CptConfig, entries: int, world_size: int) -> None:
    """The schedule is the budget (cpt_order.max_samples)."""
    scheduled.check_budget(cfg, entries, world_size, stops="the curriculum would not reach its last cluster",
                           budget="cpt_order.max_samples")


def trace_coverage(trace: list[dict], manifest: list[dict], order: str) -> dict:
    """What the run trained, from its order trace: entries, clusters reached (curriculum entries only,
    general replay apart) and whether clusters were first reached in curriculum order (replays of
    earlier clusters and the mixed transitions do not count as going back)."""
    entries = sorted(manifest, key=lambda e: e["position"])
    positions = [p for row in trace for p in row.get("positions", [])]
    if order == "shuffle":          # trace positions index the shuffled schedule, not the manifest
        return {"entries": len(positions)}
    trained = [entries[p] for p in positions if p < len(entries)]
    first_seen = list(dict.fromkeys(e["rank"] for e in trained if not e.get("general") and not e.get("replay")))
    all_ranks = {e["rank"] for e in entries if not e.get("general")}
    return {"entries": len(positions), "general": sum(bool(e.get("general")) for e in trained),
            "clusters_reached": len(first_seen), "clusters_in_schedule": len(all_ranks),
            "in_curriculum_order": first_seen == sorted(first_seen)}
