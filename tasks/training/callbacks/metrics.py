"""Train metrics to a plain function on the main process, tokens/s included.

    cb = MetricsCallback(lambda metrics, step: ctx.log_metrics(metrics, step=step), prefix="train.")

Logs loss, learning rate, grad norm, epoch and tokens/s (non-padding input tokens, image placeholders
included, per wall-clock second between logs; the Trainer counts tokens across ranks) as
`<prefix><name>`, so the stage decides where metrics go (MLflow). `history` keeps every logged row;
`start_step`/`start_tokens` are where this call of train() started (after a resume: the checkpoint's),
so a resumed run does not credit the killed run's tokens to its own time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from transformers import TrainerCallback


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
