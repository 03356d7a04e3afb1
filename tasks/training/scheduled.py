"""One training run over a fixed schedule, as every training stage runs it (CPT, mid-training; SFT next).

    run = run_schedule(cfg, vlm=vlm, encoder=encoder, dataset=OrderedDataset(encoded, order),
                       heldout=OrderedDataset(encoded, heldout_ids), group_of={id: kind}, collate=collate,
                       out=ctx.out, log_metrics=ctx.log_metrics, extra_meta={"stage": "cpt"})
    run.trainer.state.global_step, run.before["ppl"], run.after["ppl"], run.key, run.resume_from

The stage decides WHAT is trained (the schedule, the encoding, the loss mask in the collator); this
module owns HOW, identically for every stage:
1. the run key hashes what determines the trajectory (the config minus bookkeeping fields, the
   schedule's fingerprint, the starting model's digest, the world size, the DeepSpeed config, the
   device when it is not the CPU): a changed param starts a fresh run instead of resuming another;
2. the checkpoint to resume: `resume_from` (must be complete), or with `resume: auto` the newest
   complete checkpoint under <checkpoint_root>/<run key>/ (incomplete ones skipped with the reason);
   a checkpoint trained on another schedule is refused;
3. held-out perplexity of the starting model per group (cached beside the checkpoints, so a resumed
   run does not recompute it), then training with `trainer_cls` (ScheduleTrainer or a subclass) and
   the stage's callbacks, the model saved with the stage's meta, reloaded, and measured again.
Ranks other than 0 train their share and return without measuring or writing.

`cfg` is any stage config with the fields train, deepspeed, resume, resume_from, checkpoint_root,
eval_batch_size, trace_order and seed (tasks/cpt_training/config.py, tasks/mid_training/config.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.checkpoint import checkpoint_digest
from tasks.common.config import resolve
from tasks.common.io import iter_jsonl
from tasks.training.callbacks import CompletionMarkerCallback, MetricsCallback
from tasks.training.checkpoints import CheckpointError, check_complete, checkpoint_dir, latest_complete, run_key
from tasks.training.device import Placement, world
from tasks.training.device import resolve as resolve_device
from tasks.training.encode import sample_rejection
from tasks.training.model_io import load_model, save_trained
from tasks.training.perplexity import perplexity
from tasks.training.trainer import ScheduleTrainer, training_arguments

CODE_ROOT = Path(__file__).resolve().parents[2]
# fields that do not change the training trajectory: changing them must not start a new run
NOT_IN_RUN_KEY = ("out_dir", "checkpoint_root", "resume", "resume_from", "keep_checkpoints", "trace_order", "allow_partial",
                  "mlflow", "eval_batch_size")


@dataclasses.dataclass
class TrainOutcome:
    summary: dict                   # deterministic: summary.json
    metrics: dict                   # MLflow only (wall clock)
    checkpoint_root: Path           # this run's checkpoints (deleted unless keep_checkpoints)


@dataclasses.dataclass
class ScheduledRun:
    trainer: Any
    result: Any                     # what trainer.train() returned
    root: Path                      # <checkpoint_root>/<run key>
    key: str
    resume_from: str | None
    skipped: list                   # incomplete checkpoints passed over, with reasons
    metrics_cb: MetricsCallback
    model_dir: Path
    rank: int
    world_size: int
    deepspeed: bool
    before: dict | None = None      # held-out perplexity of the starting model (rank 0)
    after: dict | None = None       # ... and of the saved model, reloaded (rank 0)


def deepspeed_config(cfg, world_size: int) -> str | None:
    """The DeepSpeed JSON when launched with several processes (and one is configured)."""
    if world_size <= 1 or not cfg.deepspeed:
        return None
    path = resolve(cfg.deepspeed)
    if not path.is_file():   # the shipped configs live in the code tree, wherever the data root is
        path = CODE_ROOT / cfg.deepspeed
    if not path.is_file():
        raise FileNotFoundError(f"deepspeed config {cfg.deepspeed} not found under the project or code root")
    return str(path)


def run_identity(cfg, placement: Placement, **extra) -> dict:
    """What determines the trajectory. `train.device` enters as the resolved device, and only off the
    CPU: `auto` and `cpu` on this machine are one run (and keep the run keys CPU runs always had)."""
    identity = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_RUN_KEY}
    identity["train"].pop("device", None)
    if placement.is_cuda:
        identity["device"] = placement.describe()
    return {**identity, **extra}


def choose_checkpoint(cfg, root: Path, world_size: int, fingerprint: str) -> tuple[str | None, list]:
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


def heldout_metrics(result: dict) -> dict:
    """MLflow metrics of a held-out perplexity: overall and per group."""
    out = {"heldout.ppl": result["ppl"], "heldout.nll": result["nll"]}
    for kind, r in result.get("by_group", {}).items():
        out[f"heldout.{kind}.ppl"] = r["ppl"]
    return out


def by_kind_table(before: dict | None, after: dict | None) -> dict:
    """Per group: samples, and perplexity before/after with 95% bootstrap intervals."""
    table: dict[str, dict] = {}
    for label, r in (("before", before), ("after", after)):
        for kind, g in ((r or {}).get("by_group") or {}).items():
            row = table.setdefault(kind, {"samples": g["samples"]})
            row[f"ppl_{label}"] = g["ppl"]
            row[f"ppl_{label}_ci"] = [g["ppl_ci_low"], g["ppl_ci_high"]]
    return dict(sorted(table.items()))


def check_budget(cfg, entries: int, world_size: int, *, stops: str, budget: str) -> None:
    """One pass over the schedule is the budget: a `train.max_steps` that stops before its end would
    leave the last part of the curriculum untrained, so it is refused instead of silently applied
    (`allow_partial` for a smoke test). `stops` says what would be missed, `budget` where to size it."""
    per_step = cfg.train.batch_size * cfg.train.grad_accum * world_size
    if 0 < cfg.train.max_steps * per_step < entries and not cfg.allow_partial:
        raise ValueError(f"train.max_steps={cfg.train.max_steps} x {per_step} samples per step covers "
                         f"{cfg.train.max_steps * per_step} of the schedule's {entries} entries: {stops}. Leave "
                         f"max_steps at 0 (one pass over the schedule) and set the budget with {budget} "
                         "(allow_partial=true for a smoke test).")


def run_schedule(cfg, *, vlm, encoder, dataset, heldout, group_of: dict[str, str], collate, out: Path | None,
                 log_metrics: Callable[..., None], base_dir: Path, extra_meta: dict,
                 trainer_cls: type = ScheduleTrainer, trainer_kwargs: dict | None = None) -> ScheduledRun:
    """Train `dataset` in its order from `vlm` (loaded from `base_dir`); see the module docstring."""
    rank, world_size = world()
    placement = resolve_device(cfg.train.device)
    ds_config = deepspeed_config(cfg, world_size)
    key = run_key(run_identity(cfg, placement, schedule=dataset.fingerprint(), base_model=checkpoint_digest(base_dir),
                               world_size=world_size, deepspeed=Path(ds_config).read_text() if ds_config else None))
    root = checkpoint_dir(resolve(cfg.checkpoint_root), key)
    root.mkdir(parents=True, exist_ok=True)
    resume_from, skipped = choose_checkpoint(cfg, root, world_size, dataset.fingerprint())

    def measure(model) -> dict:
        return perplexity(model.to(placement.device), heldout, collate, cfg.eval_batch_size, group_of=group_of,
                          seed=cfg.seed)

    before = None
    if rank == 0 and len(heldout):
        cached = root / "heldout_before.json"
        if cached.is_file():
            before = json.loads(cached.read_text())
        else:
            before = measure(vlm.model)
            cached.write_text(json.dumps(before))
        log_metrics(heldout_metrics(before), step=0)

    args = training_arguments(cfg.train, root, seed=cfg.seed, deepspeed_config=ds_config, placement=placement)
    metrics_cb = MetricsCallback(lambda m, step: log_metrics(m, step=step))
    trainer = trainer_cls(model=vlm.model, args=args, train_dataset=dataset, data_collator=collate,
                          component_lr=cfg.train.component_lr,
                          trace_path=root / f"order_trace.rank{rank}.jsonl" if cfg.trace_order else None,
                          callbacks=[metrics_cb, CompletionMarkerCallback(dataset)], **(trainer_kwargs or {}))
    result = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = (out / "model") if out is not None else root / f".model-rank{rank}"
    # the checkpoint records the image budget it was trained at, which evaluation then uses
    save_trained(trainer, dataclasses.replace(vlm, budget=encoder.budget), model_dir,
                 extra_meta={**extra_meta, "run_key": key})
    run = ScheduledRun(trainer, result, root, key, resume_from, skipped, metrics_cb, model_dir, rank, world_size,
                       bool(ds_config), before)
    if rank != 0:
        return run
    if ds_config:
        # ZeRO-3 makes from_pretrained partition weights with collectives the other ranks, done
        # by now, would never join: the evaluation copy loads as a plain model
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    if len(heldout):
        run.after = measure(load_model(model_dir).model)
        log_metrics(heldout_metrics(run.after), step=trainer.state.global_step)
    return run


def dropped_entries(entries: list[dict], encoded: dict, rejected: list[dict], locator) -> list[dict]:
    """One rejection per schedule entry whose sample could not be encoded, with that sample's reason
    (the unit of accounting is the entry: a replayed sample counts once per entry); `locator(entry)`
    says where the entry stands."""
    rejection_of = {r["id"]: r for r in rejected}
    return [sample_rejection(e["id"], rejection_of.get(e["id"], {}).get("reason", "unknown"),
                             rejection_of.get(e["id"], {}).get("detail", ""), locator=locator(e))
            for e in entries if e["id"] not in encoded]


def cleanup_checkpoints(root: Path, keep: bool) -> None:
    """A run's checkpoints go once its model is saved, unless the stage keeps them."""
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def wall_metrics(run: ScheduledRun, seconds: float) -> dict:
    """tokens/s of this call's steps (a resumed run must not credit the killed run's tokens to its own
    time), the train runtime and the stage's seconds: MLflow only."""
    runtime = float(run.result.metrics.get("train_runtime", 0.0))
    steps = run.trainer.state.global_step - run.metrics_cb.start_step
    tokens = int(run.trainer.state.num_input_tokens_seen) - run.metrics_cb.start_tokens
    out = {"tokens_per_s": tokens / runtime if steps and runtime > 0 else None, "train_runtime_s": runtime,
           "seconds": seconds}
    return {k: v for k, v in out.items() if v is not None}
