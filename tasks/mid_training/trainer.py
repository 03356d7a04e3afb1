"""Loss per data family and per curriculum phase, from the batches the run actually trained.

    trainer = FamilyLossTrainer(group_of={"mid-kg_multihop-..": ("kg_multihop", 2), ...}, log_fn=..., ...)

ScheduleTrainer (tasks/training/trainer.py) with one addition: after each forward pass, the mean
next-token loss of every row (over the tokens that carry loss: assistant turns of conversations,
every token of CPT replay text) is attributed to the row's data family and phase. At each logging
step the means since the last log go to `log_fn` as `train.loss.family.<family>` and
`train.loss.phase.<k>`; `totals` keeps the whole run's sums for the summary. Why per row and not
per batch: phases overlap in the warm-up stream and a batch mixes families, so a batch loss cannot
say which kind of data the model is still failing on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

from tasks.training.collate import split_batch
from tasks.training.trainer import ScheduleTrainer


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed next-token NLL per row, predicted tokens per row), -100 labels ignored."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                            shift_labels.reshape(-1), ignore_index=-100, reduction="none")
    nll = nll.view(shift_labels.shape)
    return nll.sum(1), (shift_labels != -100).sum(1)


class FamilyLossTrainer(ScheduleTrainer):
    def __init__(self, *args, group_of: dict[str, tuple[str, int]] | None = None,
                 log_fn: Callable[[dict, int], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_of = dict(group_of or {})
        self.log_fn = log_fn
        self.window: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.history: list[dict] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        _, extra = split_batch(inputs)
        labels = inputs.get("labels")
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        ids = extra.get("sample_ids") or []
        if ids and labels is not None and getattr(outputs, "logits", None) is not None:
            with torch.no_grad():
                sums, counts = row_losses(outputs.logits.detach(), labels.to(outputs.logits.device))
            for sid, s, n in zip(ids, sums.tolist(), counts.tolist()):
                family, phase = self.group_of.get(sid, ("unknown", 0))
                for key in (f"family.{family}", f"phase.{phase}"):
                    for acc in (self.window[key], self.totals[key]):
                        acc[0] += s
                        acc[1] += n
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self.window:
            means = {f"train.loss.{k}": v[0] / v[1] for k, v in sorted(self.window.items()) if v[1]}
            self.window.clear()
            self.history.append({"step": self.state.global_step, **means})
            if self.log_fn is not None and self.state.is_world_process_zero:
                self.log_fn(means, self.state.global_step)
        super().log(logs, *args, **kwargs)

    def mean_losses(self) -> dict[str, float]:
        return {k: round(v[0] / v[1], 6) for k, v in sorted(self.totals.items()) if v[1]}
