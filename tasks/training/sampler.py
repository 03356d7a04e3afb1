"""An order-keeping sampler: the schedule is the order, every epoch, on every resume.

    sampler = ScheduleSampler(len(dataset))               # yields 0, 1, 2, ... (schedule positions)
    sampler = ScheduleSampler(len(dataset), start=640)    # a plain loop resuming after 640 samples

Why a sampler of its own: the Trainer's default is a RandomSampler, which would undo the
curriculum (or whatever order a stage decided). This one never shuffles (`set_epoch` changes
nothing), so the sequence it yields is a pure function of the dataset length; the dataset itself
holds the schedule (curriculum or the shuffled baseline, decided once when the dataset is built).

How a resumed run continues at the right place: the Trainer restores `global_step` from the
checkpoint and fast-forwards the dataloader past the batches already trained
(`accelerate.skip_first_batches`, which walks the batch sampler without loading data). Because
this sampler's sequence is deterministic, the first batch after the fast-forward is exactly the
one the killed run would have trained next. Under several processes, accelerate hands global
batch b to rank b % world_size, and each rank skips the same number of its own batches, so the
global position is the same. What the fast-forward cannot see is a *different* schedule under the
same run: each checkpoint records the schedule's fingerprint (tasks/training/callbacks/
completion_marker.py) and the stage refuses to resume over another one. `start` serves code
that drives the sampler without a Trainer (a plain loop resuming by hand).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ScheduleSampler(torch.utils.data.Sampler[int]):
    def __init__(self, length: int, start: int = 0):
        if not 0 <= start <= length:
            raise ValueError(f"start {start} outside the schedule (length {length})")
        self.length = length
        self.start = start

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0   # only the first pass resumes mid-schedule
        return iter(range(start, self.length))

    def __len__(self) -> int:
        return self.length - self.start

    def set_epoch(self, epoch: int) -> None:
        """No reshuffle: the order is the schedule."""

    def state_dict(self) -> dict:
        return {"length": self.length, "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        if state["length"] != self.length:
            raise ValueError(f"sampler state is for a schedule of {state['length']} entries, this one has "
                             f"{self.length}")
        self.start = int(state["start"])
