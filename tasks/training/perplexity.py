"""Token-level held-out perplexity of a model over a dataset, batched through the training collator.

    heldout = perplexity(model, heldout_dataset, collate, batch_size=8)   # {"nll", "ppl", "tokens", ...}

exp(sum of next-token NLL / number of predicted tokens): the positions whose label is not -100, so
the collator decides what counts (every text token for CPT; assistant tokens only with
`assistant_only_loss`). Runs on the model's device, under bf16 autocast on CUDA
(tasks/training/device.py); the sums are float32.
"""

from __future__ import annotations

import math
import time

import torch

from tasks.training.collate import split_batch
from tasks.training.device import autocast, to_device


@torch.no_grad()
def perplexity(model, dataset, collate, batch_size: int) -> dict:
    model_device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    started = time.perf_counter()
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        inputs, extra = split_batch(batch)
        if extra.get("empty_batch"):
            continue
        inputs = to_device(inputs, model_device)
        labels = inputs.pop("labels")
        with autocast(model_device):
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
