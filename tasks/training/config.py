"""The generic training params (a `train:` block of any training stage's params section).

Stage configs (`tasks/cpt_training/config.py`, `tasks/curriculum/config.py`, later mid-training, SFT and
RL) embed `TrainParams`; tasks.common.config.load_stage_config builds them, so an unknown key or a wrong
type fails loudly with its name.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class TrainParams:
    epochs: float = 1.0
    max_steps: int = 0                  # > 0 overrides epochs
    batch_size: int = 8                 # per process
    grad_accum: int = 1
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup: float = 0.03                # fraction of steps (< 1) or a step count (>= 1)
    lr_scheduler: str = "cosine"        # any transformers scheduler name
    min_lr_ratio: float = 0.0           # cosine: decay to this share of the peak instead of to 0
    # vision_tower | adapter | decoder -> learning rate (absent or 0: learning_rate; < 0: frozen);
    # tasks/training/optim.py says why continued pre-training wants them apart
    component_lr: dict[str, float] = dataclasses.field(default_factory=dict)
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 50                # checkpoints every N optimizer steps (0: none)
    save_total_limit: int = 2           # >= 2 keeps a fallback when the newest is cut short
    threads: int = 2                    # torch CPU threads, split across processes
    dataloader_workers: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"   # tasks/training/device.py: cuda+bf16 or cpu+fp32
