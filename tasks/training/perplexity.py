"""Token-level held-out perplexity of a model over a dataset, batched through the training collator,
overall and per group (e.g. per data kind), each with a 95% bootstrap interval.

    heldout = perplexity(model, heldout_dataset, collate, batch_size=8, group_of={"id-1": "ocr", ...})
    heldout["ppl"], heldout["ppl_ci_low"], heldout["ppl_ci_high"], heldout["by_group"]["ocr"]["ppl"]

exp(sum of next-token NLL / number of predicted tokens): the positions whose label is not -100, so
the collator decides what counts (every text token for CPT; assistant tokens only with
`assistant_only_loss`). Runs on the model's device, under bf16 autocast on CUDA
(tasks/training/device.py); the sums are float32.

The interval resamples samples, not tokens (a sample's tokens are not independent), with a seeded
generator, so the same model and data give the same interval; two perplexities differ when their
intervals do not overlap.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from tasks.training.collate import split_batch
from tasks.training.device import autocast, to_device

BOOTSTRAP_RESAMPLES = 1000


def ppl_interval(nll: np.ndarray, tokens: np.ndarray, *, seed: int = 0,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """95% percentile-bootstrap interval of exp(sum nll / sum tokens) over samples."""
    if len(nll) < 2:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, len(nll), size=(resamples, len(nll)))
    stats = np.exp(nll[idx].sum(1) / np.maximum(tokens[idx].sum(1), 1))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(nll: np.ndarray, tokens: np.ndarray, seed: int = 0) -> dict:
    """{nll (per token), ppl, ppl_ci_low, ppl_ci_high, tokens, samples} of per-sample sums."""
    count = int(tokens.sum())
    mean = float(nll.sum() / count) if count else float("nan")
    lo, hi = ppl_interval(nll, tokens, seed=seed)
    return {"nll": mean, "ppl": math.exp(mean) if count else float("nan"), "ppl_ci_low": lo, "ppl_ci_high": hi,
            "tokens": count, "samples": int(len(nll))}


@torch.no_grad()
def sample_nll(model, dataset, collate, batch_size: int) -> dict[str, tuple[float, int]]:
    """{sample id: (summed next-token NLL, predicted tokens)} for every sample the collator kept."""
    model_device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, tuple[float, int]] = {}
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
                                                 shift_labels.reshape(-1), ignore_index=-100, reduction="none")
        per_row = loss.view(shift_labels.shape).sum(1)
        counts = (shift_labels != -100).sum(1)
        for sid, s, c in zip(extra["sample_ids"], per_row.tolist(), counts.tolist()):
            out[sid] = (float(s), int(c))
    model.train(was_training)
    return out


def perplexity(model, dataset, collate, batch_size: int, *, group_of: dict[str, str] | None = None,
               seed: int = 0) -> dict:
    """Overall perplexity with its interval, and `by_group` (when `group_of` maps sample ids to groups)."""
    started = time.perf_counter()
    rows = sample_nll(model, dataset, collate, batch_size)
    ids = sorted(rows)
    nll = np.array([rows[i][0] for i in ids], dtype=np.float64)
    tokens = np.array([rows[i][1] for i in ids], dtype=np.int64)
    result = summarize(nll, tokens, seed)
    result["samples"] = len(dataset)
    if group_of:
        result["by_group"] = {}
        for g in sorted({group_of[i] for i in ids if i in group_of}):
            mask = np.array([group_of.get(i) == g for i in ids])
            result["by_group"][g] = summarize(nll[mask], tokens[mask], seed)
    result["seconds"] = time.perf_counter() - started
    return result
