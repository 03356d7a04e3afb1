"""What the `cpt` stage does, given its config (see tasks/cpt.py for the shell and how to launch).

    summary = run(cfg, out_dir_or_None, log_metrics)     # out_dir None on ranks other than 0

1. the schedule: data/cpt_order/manifest.jsonl in its order (`order: curriculum`), or the same
   entries in a seeded random order (`order: shuffle`, the baseline of the paper's claim); the
   samples it names are encoded with the base model's processor (a sample that cannot be, or that
   is missing, leaves the schedule with a reason in rejected.jsonl);
2. held-out perplexity of the base model on data/cpt_order/heldout.jsonl (cached beside the
   checkpoints, so a resumed run does not recompute it);
3. training with ScheduleTrainer (tasks/training/trainer.py), checkpoints under
   <checkpoint_root>/<run key>/; a complete checkpoint of the same run is resumed (an incomplete
   one, e.g. a missing shard after a kill during a save, is skipped with the reason);
4. the trained model and processor saved to <out>/model, reloaded from there, and its held-out
   perplexity measured (the artifact itself is what gets evaluated);
5. metrics.json (held-out before/after, train loss, tokens/s), summary.json, order_trace.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.checkpoint import checkpoint_digest
from tasks.common.config import project_root, resolve
from tasks.common.io import dumps, iter_jsonl, without_wall_clock, write_json
from tasks.training.checkpoints import (
    CheckpointError,
    check_complete,
    checkpoint_dir,
    latest_complete,
    run_key,
)
from tasks.training.config import CptConfig
from tasks.training.corpus import read_samples
from tasks.training.data import CptCollator, OrderedDataset, SampleEncoder, encode_all
from tasks.training.model_io import load_model, save_trained
from tasks.training.trainer import (
    CompletionMarkerCallback,
    MetricsCallback,
    ScheduleTrainer,
    perplexity,
    training_arguments,
    world,
)

LogFn = Callable[..., None]
CODE_ROOT = Path(__file__).resolve().parents[2]
# fields that do not change the training trajectory: changing them must not start a new run
NOT_IN_RUN_KEY = ("out_dir", "checkpoint_root", "resume", "resume_from", "keep_checkpoints", "trace_order",
                  "mlflow", "eval_batch_size")


def read_jsonl_strict(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the cpt_order stage first")
    rows = []
    for obj, rej in iter_jsonl(path):
        if rej is not None:
            raise ValueError(f"{rej['locator']}: {rej['reason']} ({rej['detail']})")
        rows.append(obj)
    return rows


def schedule_ids(manifest: list[dict], order: str, seed: int) -> list[str]:
    ids = [e["id"] for e in sorted(manifest, key=lambda e: e["position"])]
    if order == "shuffle":
        ids = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return ids


def deepspeed_config(cfg: CptConfig, world_size: int) -> str | None:
    """The DeepSpeed JSON when launched with several processes (and one is configured)."""
    if world_size <= 1 or not cfg.deepspeed:
        return None
    path = resolve(cfg.deepspeed)
    if not path.is_file():   # the shipped configs live in the code tree, wherever the data root is
        path = CODE_ROOT / cfg.deepspeed
    if not path.is_file():
        raise FileNotFoundError(f"deepspeed config {cfg.deepspeed} not found under the project or code root")
    return str(path)


def choose_checkpoint(cfg: CptConfig, root: Path, world_size: int, fingerprint: str) -> tuple[str | None, list]:
    """(checkpoint to resume or None, [skipped incomplete checkpoints with reasons])."""
    if cfg.resume_from:
        path = resolve(cfg.resume_from)
        marker = check_complete(path, world_size)          # raises CheckpointError with the reason
        chosen, skipped = path, []
    elif cfg.resume == "auto":
        chosen, skipped = latest_complete(root, world_size)
        marker = check_complete(chosen, world_size) if chosen else None
    else:
        return None, []
    if chosen and marker and marker.get("order_fingerprint") not in (None, fingerprint):
        raise CheckpointError("order_changed", f"{chosen} was trained on another schedule; resuming would "
                              "continue a different order (start fresh with resume=never)")
    return (str(chosen) if chosen else None), skipped


def merged_trace(root: Path, rank: int = 0) -> list[dict]:
    """The order trace of `rank`, one line per micro-batch; for a step run again after a resume,
    the latest attempt's lines replace those the killed run wrote. The `attempt` tag is bookkeeping
    of the raw trace and is dropped here."""
    path = root / f"order_trace.rank{rank}.jsonl"
    if not path.is_file():
        return []
    by_step: dict[int, tuple[str, list[dict]]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:      # the last line of a killed run may be cut short
            continue
        attempt, rows = by_step.get(row["step"], (None, []))
        if attempt != row.get("attempt"):
            rows = []
        by_step[row["step"]] = (row.get("attempt"), [*rows, row])
    return [{k: v for k, v in r.items() if k != "attempt"} for s in sorted(by_step) for r in by_step[s][1]]


def run(cfg: CptConfig, out: Path | None, log_metrics: LogFn) -> dict:
    rank, world_size = world()
    started = time.perf_counter()
    order_dir = resolve(cfg.order_dir)
    manifest = read_jsonl_strict(order_dir / "manifest.jsonl")
    heldout_rows = read_jsonl_strict(order_dir / "heldout.jsonl")
    samples, bad_lines = read_samples(resolve(cfg.samples_dir))
    wanted = {e["id"] for e in manifest} | {h["id"] for h in heldout_rows}
    by_id = {s["id"]: s for s in samples if isinstance(s.get("id"), str) and s["id"] in wanted}
    base_dir = resolve(cfg.base_model_dir)
    vlm = load_model(base_dir)
    model, processor = vlm.model, vlm.processor
    encoder = SampleEncoder(processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all([by_id[i] for i in sorted(by_id)], encoder)
    rejected += [{"id": i, "reason": "missing_sample", "detail": f"not in {cfg.samples_dir}"}
                 for i in sorted(wanted - set(by_id))]
    order = [i for i in schedule_ids(manifest, cfg.order, cfg.seed) if i in encoded]
    heldout = [h["id"] for h in heldout_rows if h["id"] in encoded]
    if not order:
        raise ValueError("the schedule is empty after encoding: nothing to train on")
    dataset = OrderedDataset(encoded, order)
    collate = CptCollator(processor, encoder.budget, encoder.factor, blank_image_for_text=world_size > 1)
    heldout_ds = OrderedDataset(encoded, heldout)

    ds_config = deepspeed_config(cfg, world_size)
    identity = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_RUN_KEY}
    identity.update({"schedule": dataset.fingerprint(), "base_model": checkpoint_digest(base_dir),
                     "world_size": world_size,
                     "deepspeed": Path(ds_config).read_text() if ds_config else None})
    key = run_key(identity)
    root = checkpoint_dir(resolve(cfg.checkpoint_root), key)
    root.mkdir(parents=True, exist_ok=True)
    resume_from, skipped = choose_checkpoint(cfg, root, world_size, dataset.fingerprint())

    before = None
    if rank == 0 and heldout:
        cached = root / "heldout_before.json"
        if cached.is_file():
            before = json.loads(cached.read_text())
        else:
            before = perplexity(model, heldout_ds, collate, cfg.eval_batch_size)
            cached.write_text(json.dumps(before))
        log_metrics({"heldout.ppl": before["ppl"], "heldout.nll": before["nll"]}, step=0)

    args = training_arguments(cfg.train, root, seed=cfg.seed, deepspeed_config=ds_config)
    metrics_cb = MetricsCallback(lambda m, step: log_metrics(m, step=step))
    trainer = ScheduleTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                              trace_path=root / f"order_trace.rank{rank}.jsonl" if cfg.trace_order else None,
                              callbacks=[metrics_cb, CompletionMarkerCallback(dataset)])
    result = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = (out / "model") if out is not None else root / f".model-rank{rank}"
    save_trained(trainer, vlm, model_dir, extra_meta={"stage": "cpt", "order": cfg.order, "run_key": key,
                                                      "base_model": str(cfg.base_model_dir)})
    if rank != 0:
        return {"rank": rank, "global_step": trainer.state.global_step}

    if ds_config:
        # ZeRO-3 makes from_pretrained partition weights with collectives the other ranks, done
        # by now, would never join: the evaluation copy loads as a plain model
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    trained = load_model(model_dir).model
    after = perplexity(trained, heldout_ds, collate, cfg.eval_batch_size) if heldout else None
    step = trainer.state.global_step
    if after:
        log_metrics({"heldout.ppl": after["ppl"], "heldout.nll": after["nll"]}, step=step)
    trace = merged_trace(root) if cfg.trace_order else []
    with open(out / "order_trace.jsonl", "w", encoding="utf-8") as f:
        f.writelines(dumps(r) + "\n" for r in trace)
    with open(out / "rejected.jsonl", "w", encoding="utf-8") as f:
        f.writelines(dumps(r) + "\n" for r in rejected + bad_lines)
    # this call's work only: a resumed run must not credit the killed run's tokens to its own time
    runtime = float(result.metrics.get("train_runtime", 0.0))
    tokens = int(trainer.state.num_input_tokens_seen)
    tokens_this_run = tokens - metrics_cb.start_tokens
    steps_this_run = step - metrics_cb.start_step
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "order": cfg.order, "heldout_before": before, "heldout_after": after,
        "heldout_ppl_before": before["ppl"] if before else None, "heldout_ppl_after": after["ppl"] if after else None,
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        "train_loss_mean_this_run": float(result.training_loss) if steps_this_run else None,
        "global_step": step, "steps_this_run": steps_this_run, "tokens_seen": tokens,
        "tokens_this_run": tokens_this_run, "train_runtime_s": runtime,
        "tokens_per_s": tokens_this_run / runtime if steps_this_run and runtime > 0 else None,
        "log_history": trainer.state.log_history,
    }
    write_json(out / "metrics.json", without_wall_clock(metrics))
    skipped_rows = Counter(r for _, r in trainer.skipped_rows)
    reason_of = {r["id"]: r["reason"] for r in rejected}
    dropped = Counter(reason_of.get(e["id"], "unknown") for e in manifest if e["id"] not in encoded)
    summary = {   # unit: schedule entries (a replayed sample counts once per entry)
        "read": len(manifest), "kept": len(order), "rejected": len(manifest) - len(order),
        "rejected_by_reason": dict(sorted(dropped.items())), "samples_rejected": len(rejected),
        "order": cfg.order, "unique_samples": len(set(order)), "heldout": len(heldout),
        "global_step": step, "resumed_from": resume_from, "skipped_checkpoints": skipped,
        "rows_skipped_in_training": dict(skipped_rows), "empty_batches": trainer.empty_batches,
        "run_key": key, "world_size": world_size, "deepspeed": bool(ds_config),
        "heldout_ppl_before": metrics["heldout_ppl_before"], "heldout_ppl_after": metrics["heldout_ppl_after"],
        "train_loss_last": metrics["train_loss_last"], "tokens_per_s": metrics["tokens_per_s"],
        "tokens_seen": tokens, "steps_this_run": steps_this_run,
        "seconds": round(time.perf_counter() - started, 3), "_checkpoint_root": str(root),
    }
    write_json(out / "summary.json", without_wall_clock({k: v for k, v in summary.items() if not k.startswith("_")}))
    return summary


def cleanup_checkpoints(summary: dict, keep: bool) -> None:
    if not keep and summary.get("_checkpoint_root"):
        shutil.rmtree(summary["_checkpoint_root"], ignore_errors=True)
