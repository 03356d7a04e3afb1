"""Training on a schedule with transformers' Trainer: order kept, order traced, device chosen once.

    args = training_arguments(TrainParams(...), output_dir, seed=1234, deepspeed_config=None)
    trainer = ScheduleTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                              trace_path=run_dir / "order_trace.rank0.jsonl",
                              callbacks=[MetricsCallback(log_fn), CompletionMarkerCallback(dataset)])
    trainer.train(resume_from_checkpoint=ckpt_or_None)

What the subclass adds to the stock Trainer, and why:
- `_get_train_sampler` returns tasks.training.sampler.ScheduleSampler: the dataset is the schedule,
  never shuffled (the Trainer's default RandomSampler would undo a curriculum).
- `compute_loss` pops the collator's bookkeeping (sample ids, schedule positions, rows skipped)
  before the forward pass and appends one line per micro-batch to an order trace: the evidence
  that a run trained its schedule in order, and that a resumed run continued where the killed
  one stopped (tests compare traces).
- `component_lr`: the vision tower, adapter and decoder as separate optimizer parameter groups with
  their own learning rates (tasks/training/optim.py); the schedule (warm-up, cosine with a floor:
  `min_lr_ratio`) scales every group alike.
- A batch left empty (every row dropped by the collator, e.g. images changed on disk mid-run) trains
  as a zero-loss step instead of crashing; the reason is recorded.
- Several processes: the stage builds the collator with `blank_image_for_text=True`, so a text-only
  micro-batch still runs the vision tower (tasks/training/collate.py Collator.add_blank_image says
  why ZeRO-3 and DDP need it).

`training_arguments` takes the device from `TrainParams.device` through tasks/training/device.py:
CUDA with bf16 autocast and NCCL between processes, or the CPU in float32 with gloo. Callbacks live
in tasks/training/callbacks/ (one per file).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from tasks.training.collate import split_batch
from tasks.training.config import TrainParams
from tasks.training.device import Placement, resolve, world
from tasks.training.optim import check_component_lr, param_groups
from tasks.training.sampler import ScheduleSampler


def training_arguments(p: TrainParams, output_dir: str | os.PathLike, *, seed: int,
                       deepspeed_config: str | None = None, placement: Placement | None = None) -> TrainingArguments:
    placement = placement or resolve(p.device)
    _, world_size = world()
    torch.set_num_threads(max(1, p.threads // world_size))
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size, gradient_accumulation_steps=p.grad_accum,
        num_train_epochs=p.epochs, max_steps=p.max_steps if p.max_steps > 0 else -1,
        learning_rate=p.learning_rate, weight_decay=p.weight_decay, warmup_steps=p.warmup,
        max_grad_norm=p.max_grad_norm, **scheduler_arguments(p),
        logging_steps=p.logging_steps, logging_first_step=True,
        save_strategy="steps" if p.save_steps > 0 else "no", save_steps=max(1, p.save_steps),
        save_total_limit=p.save_total_limit if p.save_total_limit > 0 else None,
        seed=seed, data_seed=seed, use_cpu=not placement.is_cuda, bf16=placement.dtype == torch.bfloat16,
        ddp_backend=placement.backend if world_size > 1 else None,
        deepspeed=deepspeed_config, report_to="none", remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=p.dataloader_workers,
        disable_tqdm=True, ddp_find_unused_parameters=False, average_tokens_across_devices=True)


def scheduler_arguments(p: TrainParams) -> dict:
    """A cosine schedule with a floor (`min_lr_ratio`) is transformers' `cosine_with_min_lr`."""
    if p.lr_scheduler == "cosine" and p.min_lr_ratio > 0:
        return {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": p.min_lr_ratio}}
    return {"lr_scheduler_type": p.lr_scheduler}


class ScheduleTrainer(Trainer):
    """Trainer that keeps the schedule's order and records it (see module docstring)."""

    def __init__(self, *args, trace_path: str | os.PathLike | None = None,
                 component_lr: dict[str, float] | None = None, **kwargs):
        self.component_lr = dict(component_lr or {})
        check_component_lr(self.component_lr)
        super().__init__(*args, **kwargs)
        self.trace_path = Path(trace_path) if trace_path else None
        # tells a resumed run's lines from the killed run's lines for the same step
        self.attempt = f"{os.getpid()}-{time.time_ns()}"
        self.skipped_rows: list[tuple[str, str]] = []
        self.empty_batches = 0
        _, self.world_size = world()

    def create_optimizer(self, model=None):
        """The stock optimizer over per-component parameter groups (tasks/training/optim.py); the
        stock one when every component trains at the base rate."""
        if self.optimizer is not None or not self.component_lr:
            return super().create_optimizer(model)
        model = model if model is not None else self.model
        groups = param_groups(model, base_lr=self.args.learning_rate, component_lr=self.component_lr,
                              weight_decay=self.args.weight_decay, no_decay=self.get_decay_parameter_names(model))
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        kwargs.pop("lr", None)
        self.optimizer = optimizer_cls([{k: v for k, v in g.items() if k != "component"} for g in groups], **kwargs)
        return self.optimizer

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
