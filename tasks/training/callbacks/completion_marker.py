"""After each save (all ranks done), mark the checkpoint complete.

    CompletionMarkerCallback(dataset)    # dataset: tasks.training.dataset.OrderedDataset

The marker (checkpoint_complete.json: file list and sizes, step, schedule fingerprint and length,
world size) is what tasks/training/checkpoints.py uses to detect a checkpoint cut short by a kill
and to refuse resuming over a different schedule. The barrier makes rank 0 wait until every rank
has written its shard before listing the files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainerCallback

from tasks.training.checkpoints import write_marker


class CompletionMarkerCallback(TrainerCallback):
    def __init__(self, dataset):
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
