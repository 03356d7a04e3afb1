"""What the `cpt` stage does, given its config (see tasks/cpt.py for the stage and how to launch it).

    outcome = train_cpt(cfg, out_dir_or_None, log_metrics)     # out_dir None on ranks other than 0
    outcome.summary, outcome.metrics, outcome.checkpoint_root

1. the schedule: data/cpt_order/manifest.jsonl in its order (`order: curriculum`), or the same
   entries in a seeded random order (`order: shuffle`, the baseline of the paper's claim); the
   samples it names are encoded with the base model's processor (a sample that cannot be, or that
   is missing, leaves the schedule: its entries go to rejected/ with the reason, the sample itself
   to rejected_samples/);
2. the device: `train.device` through tasks/training/device.py (CUDA + bf16, or the CPU in float32);
3. held-out perplexity of the base model on data/cpt_order/heldout.jsonl (cached beside the
   checkpoints, so a resumed run does not recompute it);
4. training with ScheduleTrainer (tasks/training/trainer.py), checkpoints under
   <checkpoint_root>/<run key>/; a complete checkpoint of the same run is resumed (an incomplete
   one, e.g. a missing shard after a kill during a save, is skipped with the reason);
5. the trained model and processor saved to <out>/model, reloaded from there, and its held-out
   perplexity measured (the artifact itself is what gets evaluated);
6. metrics.json (held-out before/after, train loss, log history), order_trace.jsonl; the summary.

The run key hashes what determines the trajectory (params, schedule, base model, world size,
DeepSpeed config, and the device when it is not the CPU): a changed param starts a fresh run
instead of resuming a different one.
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
from tasks.common.io import iter_jsonl, read_jsonl, without_wall_clock, write_json, write_jsonl
from tasks.cpt_training.config import CptConfig
from tasks.training.callbacks import CompletionMarkerCallback, MetricsCallback
from tasks.training.checkpoints import CheckpointError, check_complete, checkpoint_dir, latest_complete, run_key
from tasks.training.collate import Collator
from tasks.training.dataset import OrderedDataset
from tasks.training.device import Placement, world
from tasks.training.device import resolve as resolve_device
from tasks.training.encode import SampleEncoder, encode_all, sample_rejection, write_rejections
from tasks.training.model_io import load_model, save_trained
from tasks.training.perplexity import perplexity
from tasks.training.splits import data_kind, read_samples
from tasks.training.trainer import ScheduleTrainer, training_arguments

LogFn = Callable[..., None]
CODE_ROOT = Path(__file__).resolve().parents[2]
# fields that do not change the training trajectory: changing them must not start a new run
NOT_IN_RUN_KEY = ("out_dir", "checkpoint_root", "resume", "resume_from", "keep_checkpoints", "trace_order", "allow_partial",
                  "mlflow", "eval_batch_size")


@dataclasses.dataclass
class CptOutcome:
    summary: dict                   # deterministic: summary.json
    metrics: dict                   # MLflow only (wall clock)
    checkpoint_root: Path           # this run's checkpoints (deleted unless keep_checkpoints)


def read_order_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the cpt_order stage first")
    return read_jsonl(path)


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


def run_identity(cfg: CptConfig, placement: Placement, **extra) -> dict:
    """What determines the trajectory. `train.device` enters as the resolved device, and only off the
    CPU: `auto` and `cpu` on this machine are one run (and keep the run keys CPU runs always had)."""
    identity = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_RUN_KEY}
    identity["train"].pop("device", None)
    if placement.is_cuda:
        identity["device"] = placement.describe()
    return {**identity, **extra}


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
    for row, torn in iter_jsonl(path):
        if torn is not None:              # the last line of a killed run may be cut short
            continue
        attempt, rows = by_step.get(row["step"], (None, []))
        if attempt != row.get("attempt"):
            rows = []
        by_step[row["step"]] = (row.get("attempt"), [*rows, row])
    return [{k: v for k, v in r.items() if k != "attempt"} for s in sorted(by_step) for r in by_step[s][1]]



def train_cpt(cfg: CptConfig, out: Path | None, log_metrics: LogFn) -> CptOutcome:
    rank, world_size = world()
    placement = resolve_device(cfg.train.device)
    started = time.perf_counter()
    order_dir = resolve(cfg.order_dir)
    manifest = read_order_file(order_dir / "manifest.jsonl")
    heldout_rows = read_order_file(order_dir / "heldout.jsonl")
    samples, bad_lines = read_samples(resolve(cfg.samples_dir))
    wanted = {e["id"] for e in manifest} | {h["id"] for h in heldout_rows}
    by_id = {s["id"]: s for s in samples if isinstance(s.get("id"), str) and s["id"] in wanted}
    base_dir = resolve(cfg.base_model_dir)
    vlm = load_model(base_dir)
    model, processor = vlm.model, vlm.processor
    encoder = SampleEncoder(processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all([by_id[i] for i in sorted(by_id)], encoder)
    rejected += [sample_rejection(i, "missing_sample", f"not in {cfg.samples_dir}")
                 for i in sorted(wanted - set(by_id))]
    order = [i for i in schedule_ids(manifest, cfg.order, cfg.seed) if i in encoded]
    heldout = [h["id"] for h in heldout_rows if h["id"] in encoded]
    if not order:
        raise ValueError("the schedule is empty after encoding: nothing to train on")
    check_budget(cfg, len(order), world_size)
    kind_of = {i: data_kind(by_id[i]) for i in heldout}
    dataset = OrderedDataset(encoded, order)
    collate = Collator(processor, encoder.budget, encoder.factor, blank_image_for_text=world_size > 1)
    heldout_ds = OrderedDataset(encoded, heldout)

    ds_config = deepspeed_config(cfg, world_size)
    key = run_key(run_identity(cfg, placement, schedule=dataset.fingerprint(), base_model=checkpoint_digest(base_dir),
                               world_size=world_size, deepspeed=Path(ds_config).read_text() if ds_config else None))
    root = checkpoint_dir(resolve(cfg.checkpoint_root), key)
    root.mkdir(parents=True, exist_ok=True)
    resume_from, skipped = choose_checkpoint(cfg, root, world_size, dataset.fingerprint())

    before = None
    if rank == 0 and heldout:
        cached = root / "heldout_before.json"
        if cached.is_file():
            before = json.loads(cached.read_text())
        else:
            before = perplexity(model.to(placement.device), heldout_ds, collate, cfg.eval_batch_size,
                                group_of=kind_of, seed=cfg.seed)
            cached.write_text(json.dumps(before))
        log_metrics(heldout_metrics(before), step=0)

    args = training_arguments(cfg.train, root, seed=cfg.seed, deepspeed_config=ds_config, placement=placement)
    metrics_cb = MetricsCallback(lambda m, step: log_metrics(m, step=step))
    trainer = ScheduleTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                              component_lr=cfg.train.component_lr,
                              trace_path=root / f"order_trace.rank{rank}.jsonl" if cfg.trace_order else None,
                              callbacks=[metrics_cb, CompletionMarkerCallback(dataset)])
    result = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = (out / "model") if out is not None else root / f".model-rank{rank}"
    # the checkpoint records the image budget it was trained at, which evaluation then uses
    save_trained(trainer, dataclasses.replace(vlm, budget=encoder.budget), model_dir, extra_meta={"stage": "cpt", "order": cfg.order, "run_key": key,
                                                      "base_model": str(cfg.base_model_dir)})
    step = trainer.state.global_step
    if rank != 0:
        return CptOutcome({"rank": rank, "global_step": step}, {}, root)

    if ds_config:
        # ZeRO-3 makes from_pretrained partition weights with collectives the other ranks, done
        # by now, would never join: the evaluation copy loads as a plain model
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    trained = load_model(model_dir).model.to(placement.device)
    after = perplexity(trained, heldout_ds, collate, cfg.eval_batch_size, group_of=kind_of,
                       seed=cfg.seed) if heldout else None
    if after:
        log_metrics(heldout_metrics(after), step=step)
    trace = merged_trace(root) if cfg.trace_order else []
    write_jsonl(out / "order_trace.jsonl", trace)
    # the unit of accounting is the schedule entry (a replayed sample counts once per entry):
    # rejected/ holds the entries that left the schedule, rejected_samples/ the samples behind them
    rejection_of = {r["id"]: r for r in rejected}
    dropped = [sample_rejection(e["id"], rejection_of.get(e["id"], {}).get("reason", "unknown"),
                                rejection_of.get(e["id"], {}).get("detail", ""),
                                locator=f"{cfg.order_dir}/manifest.jsonl:{e['position'] + 1}")
               for e in sorted(manifest, key=lambda e: e["position"]) if e["id"] not in encoded]
    write_rejections(out / "rejected", dropped)
    write_rejections(out / "rejected_samples", rejected + bad_lines)
    # this call's work only: a resumed run must not credit the killed run's tokens to its own time
    runtime = float(result.metrics.get("train_runtime", 0.0))
    tokens = int(trainer.state.num_input_tokens_seen)
    tokens_this_run = tokens - metrics_cb.start_tokens
    steps_this_run = step - metrics_cb.start_step
    tokens_per_s = tokens_this_run / runtime if steps_this_run and runtime > 0 else None
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "order": cfg.order, "heldout_before": before, "heldout_after": after,
        "heldout_ppl_before": before["ppl"] if before else None, "heldout_ppl_after": after["ppl"] if after else None,
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        "train_loss_mean_this_run": float(result.training_loss) if steps_this_run else None,
        "global_step": step, "steps_this_run": steps_this_run, "tokens_seen": tokens,
        "tokens_this_run": tokens_this_run, "log_history": trainer.state.log_history,
    }
    write_json(out / "metrics.json", without_wall_clock(metrics))
    summary = {
        "read": len(manifest), "kept": len(order), "rejected": len(dropped),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in dropped).items())),
        "samples_rejected": len(rejected), "order": cfg.order, "unique_samples": len(set(order)),
        "heldout": len(heldout), "global_step": step, "resumed_from": resume_from, "skipped_checkpoints": skipped,
        "rows_skipped_in_training": dict(Counter(r for _, r in trainer.skipped_rows)),
        "empty_batches": trainer.empty_batches, "run_key": key, "world_size": world_size,
        "deepspeed": bool(ds_config), "heldout_ppl_before": metrics["heldout_ppl_before"],
        "heldout_ppl_after": metrics["heldout_ppl_after"], "train_loss_last": metrics["train_loss_last"],
        "tokens_seen": tokens, "steps_this_run": steps_this_run,
        "heldout_by_kind": by_kind_table(before, after),
        "schedule_entries": len(order), "entries_trained": trace_coverage(trace, manifest, cfg.order),
        "partial": step * cfg.train.batch_size * cfg.train.grad_accum * world_size < len(order),
    }
    wall = {"tokens_per_s": tokens_per_s, "train_runtime_s": runtime, "seconds": time.perf_counter() - started}
    return CptOutcome(summary, {k: v for k, v in wall.items() if v is not None}, root)


def check_budget(cfg: CptConfig, entries: int, world_size: int) -> None:
    """The schedule is the budget (cpt_order.max_samples): a step cap that stops before its end would
    train only the first clusters of the curriculum, so it is refused instead of silently applied."""
    per_step = cfg.train.batch_size * cfg.train.grad_accum * world_size
    if 0 < cfg.train.max_steps * per_step < entries and not cfg.allow_partial:
        raise ValueError(f"train.max_steps={cfg.train.max_steps} x {per_step} samples per step covers "
                         f"{cfg.train.max_steps * per_step} of the schedule's {entries} entries: the curriculum "
                         "would not reach its last cluster. Leave max_steps at 0 (one pass over the schedule) "
                         "and set the budget with cpt_order.max_samples (allow_partial=true for a smoke test).")


def heldout_metrics(result: dict) -> dict:
    """MLflow metrics of a held-out perplexity: overall and per data kind."""
    out = {"heldout.ppl": result["ppl"], "heldout.nll": result["nll"]}
    for kind, r in result.get("by_group", {}).items():
        out[f"heldout.{kind}.ppl"] = r["ppl"]
    return out


def by_kind_table(before: dict | None, after: dict | None) -> dict:
    """Per data kind: samples, and perplexity before/after with 95% bootstrap intervals."""
    table: dict[str, dict] = {}
    for label, r in (("before", before), ("after", after)):
        for kind, g in ((r or {}).get("by_group") or {}).items():
            row = table.setdefault(kind, {"samples": g["samples"]})
            row[f"ppl_{label}"] = g["ppl"]
            row[f"ppl_{label}_ci"] = [g["ppl_ci_low"], g["ppl_ci_high"]]
    return dict(sorted(table.items()))


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


def cleanup_checkpoints(root: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
