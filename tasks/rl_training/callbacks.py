"""What RL logs to MLflow during training: every GRPO log line (reward decomposition, entropy, KL,
lengths) under one global step across phases and iterations, and the entropy regulation's activations.

Entropy-aware regulation (paper §5.2.3) is TRL's adaptive entropy controller (GRPOConfig
use_adaptive_entropy, entropy_target = rl.entropy.threshold): the policy's token entropy is measured every
step; at or below the threshold an entropy bonus (coefficient raised by `coef_delta` per step, capped) is
added to the loss from the next step, above it the coefficient decays. This callback records each step
whose entropy switched the bonus on (`entropy.bonus_active`), their running count and the coefficient.
"""

from __future__ import annotations

from transformers import TrainerCallback


def _wall_clock(key: str) -> bool:
    return key.endswith(("_time", "_runtime", "_per_second")) or key in ("step_time", "train_runtime")


class RLLogCallback(TrainerCallback):
    def __init__(self, log_fn, offset: int, segment: str, threshold: float, history: list):
        self.log_fn, self.offset, self.segment, self.threshold = log_fn, offset, segment, threshold
        self.history = history            # shared across segments: one row per logged step
        self.activations = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "entropy" not in logs:
            return
        step = self.offset + state.global_step
        entropy = float(logs["entropy"])
        active = entropy <= self.threshold   # TRL applies the bonus from the next step on
        self.activations += int(active)
        row = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        row.update({"entropy.bonus_active": float(active), "entropy.activations": float(self.activations)})
        # the stage's outputs keep only what re-runs reproduce: wall-clock figures go to MLflow alone
        self.history.append({"step": step, "segment": self.segment,
                             **{k: v for k, v in row.items() if not _wall_clock(k)}})
        self.log_fn({f"rl.{k.replace('/', '.')}": v for k, v in row.items()}, step)
