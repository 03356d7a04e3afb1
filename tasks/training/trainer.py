"""Training on a schedule with transformers' Trainer: order kept, tokens/s, MLflow metrics, resume.

    args = training_arguments(TrainParams(...), output_dir, seed=1234, deepspeed_config=None)
    trainer = ScheduleTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                              trace_path=run_dir / "order_trace.rank0.jsonl",
                              callbacks=[MetricsCallback(log_fn), CompletionMarkerCallback(dataset)])
    trainer.train(resume_from_checkpoint=ckpt_or_None)
    heldout = perplexity(model, heldout_dataset, collate, batch_size=8)   # {"nll", "tokens", "ppl"}

What the subclass and callbacks add to the stock Trainer, and why:
- `_get_train_sampler` returns tasks.training.sampler.ScheduleSampler: the dataset is the schedule,
  never shuffled (the Trainer's default RandomSampler would undo the curriculum).
- `compute_loss` pops the collator's bookkeeping (sample ids, schedule positions, rows skipped)
  before the forward pass and appends one line per micro-batch to an order trace: the evidence
  that a run trained its schedule in order, and that a resumed run continued where the killed
  one stopped (tests compare traces).
- A batch left empty (every row's image failed to load mid-run; encoding checks images first,
  so this needs a file changed during training) trains as a zero-loss step instead of crashing;
  the reason is recorded.
- Several processes: the collator is built with `blank_image_for_text=True`, so a text-only
  micro-batch still runs the vision tower (on a blank image whose placeholder is masked out;
  tasks/training/data.py CptCollator.add_blank_image says why ZeRO-3 and DDP need it).
- MetricsCallback logs loss, learning rate, grad norm and tokens/s (non-padding input tokens,
  image placeholders included, per wall-clock second between logs; the Trainer counts tokens
  across ranks) through a plain function, so the stage decides where metrics go (MLflow).
- CompletionMarkerCallback writes checkpoint_complete.json after every rank has saved (file list
  and sizes, step, schedule fingerprint): tasks/training/checkpoints.py uses it to detect a
  checkpoint cut short by a kill and to refuse resuming over a different schedule.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from tasks.training.checkpoints import write_marker
from tasks.training.data import OrderedDataset, split_batch
from tasks.training.sampler import ScheduleSampler


@dataclasses.dataclass
class TrainParams:
    epochs: float = 1.0
    max_steps: int = 0                  # > 0 overrides epochs
    batch_size: int = 8                 # per process
    grad_accum: int = 1
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup: float = 0.03                # fraction of steps (< 1) or a step count (>= 1)
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 50                # checkpoints every N optimizer steps (0: none)
    save_total_limit: int = 2           # >= 2 keeps a fallback when the newest is cut short
    threads: int = 2                    # torch CPU threads, split across processes
    dataloader_workers: int = 0


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (torchrun/deepspeed set both)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def training_arguments(p: TrainParams, output_dir: str | os.PathLike, *, seed: int,
                       deepspeed_config: str | None = None) -> TrainingArguments:
    _, world_size = world()
    torch.set_num_threads(max(1, p.threads // world_size))
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size, gradient_accumulation_steps=p.grad_accum,
        num_train_epochs=p.epochs, max_steps=p.max_steps if p.max_steps > 0 else -1,
        learning_rate=p.learning_rate, weight_decay=p.weight_decay, warmup_steps=p.warmup,
        lr_scheduler_type=p.lr_scheduler, max_grad_norm=p.max_grad_norm,
        logging_steps=p.logging_steps, logging_first_step=True,
        save_strategy="steps" if p.save_steps > 0 else "no", save_steps=max(1, p.save_steps),
        save_total_limit=p.save_total_limit if p.save_total_limit > 0 else None,
        seed=seed, data_seed=seed, use_cpu=True, ddp_backend="gloo" if world_size > 1 else None,
        deepspeed=deepspeed_config, report_to="none", remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=p.dataloader_workers,
        disable_tqdm=True, ddp_find_unused_parameters=False, average_tokens_across_devices=True)


class ScheduleTrainer(Trainer):
    """Trainer that keeps the schedule's order and records it (see module docstring)."""

    def __init__(self, *args, trace_path: str | os.PathLike | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.trace_path = Path(trace_path) if trace_path else None
        # tells a resumed run's lines from the killed run's lines for the same step
        self.attempt = f"{os.getpid()}-{time.time_ns()}"
        self.skipped_rows: list[tuple[str, str]] = []
        self.empty_batches = 0
        _, self.world_size = world()

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return ScheduleSampler(len(dataset))

    def _trace(self, extra: dict) -> None:
        if self.trace_path is None:
            return
        rank, _ = world()
        line = {"step": self.state.global_step + 1, "rank": rank, "attempt": self.attempt,
                "positions": extra.get("positions", []),
                "ids": extra.get("sample_ids", []), "skipped": extra.get("skipped", [])}
        with open(self.trace_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs, extra = split_batch(inputs)
        self._trace(extra)
        self.skipped_rows.extend(tuple(s) for s in extra.get("skipped", []))
        if extra.get("empty_batch"):
            # forward anyway (other ranks' collectives expect this one), learn nothing
            self.empty_batches += 1
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            loss = outputs.logits.float().sum() * 0.0
            return (loss, outputs) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)


class MetricsCallback(TrainerCallback):
    """Train metrics to `log_fn(metrics: dict, step: int)` on the main process, tokens/s included."""

    def __init__(self, log_fn: Callable[[dict, int], None], prefix: str = "train."):
        self.log_fn = log_fn
        self.prefix = prefix
        self.last_time = None
        self.last_tokens = self.start_tokens = self.start_step = 0
        self.history: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        # after a resume, state already holds the checkpoint's step and token count
        self.last_time = time.perf_counter()
        self.last_tokens = self.start_tokens = state.num_input_tokens_seen
        self.start_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        metrics = {k: float(v) for k, v in logs.items()
                   if k in ("loss", "learning_rate", "grad_norm", "epoch") and v is not None
                   and math.isfinite(float(v))}
        tokens = state.num_input_tokens_seen
        if "loss" in metrics and self.last_time is not None and now > self.last_time:
            metrics["tokens_per_s"] = (tokens - self.last_tokens) / (now - self.last_time)
            self.last_time, self.last_tokens = now, tokens
        metrics["tokens_seen"] = float(tokens)
        if "train_runtime" in logs:
            metrics["runtime_s"] = float(logs["train_runtime"])
        self.history.append({"step": state.global_step, **metrics})
        self.log_fn({self.prefix + k: v for k, v in metrics.items()}, state.global_step)


class CompletionMarkerCallback(TrainerCallback):
    """After each save (all ranks done), mark the checkpoint complete (tasks/training/checkpoints.py)."""

    def __init__(self, dataset: OrderedDataset):
        self.fingerprint = dataset.fingerprint()
        self.length = len(dataset)

    def on_save(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                write_marker(path, {"global_step": state.global_step, "order_fingerprint": self.fingerprint,
                                    "schedule_length": self.length, "world_size": args.world_size})


@torch.no_grad()
def perplexity(model, dataset, collate, batch_size: int) -> dict:
    """Token-level held-out perplexity: exp(sum of next-token NLL / number of predicted tokens)."""
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    started = time.perf_counter()
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        inputs, extra = split_batch(batch)
        if extra.get("empty_batch"):
            continue
        labels = inputs.pop("labels")
        logits = model(**inputs).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                                 shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
        nll += float(loss)
        count += int((shift_labels != -100).sum())
    model.train(was_training)
    mean = nll / count if count else float("nan")
    return {"nll": mean, "ppl": math.exp(mean) if count else float("nan"), "tokens": count,
            "samples": len(dataset), "seconds": time.perf_counter() - started}
