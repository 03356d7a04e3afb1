"""The typed `sft:` params section (tasks.common.config.load_stage_config: an unknown key or a wrong type
fails loudly with its name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.cpt_training.config import ModelLogParams
from tasks.training.config import TrainParams
from tasks.training.encode import EncodeParams


@dataclass
class SFTScheduleParams:
    heldout_per_source: int = 8     # per candidate pool, never trained: loss per source before/after
    max_samples: int = 0            # training samples (0 = the whole SFT set), seeded
    epochs: int = 1                 # passes over the set, each in its own seeded order


@dataclass
class SFTConfig:
    samples_dir: str = "data/sft_data/samples"
    base_model_dir: str = "data/mid_train/model"       # SFT continues from the mid-trained model
    out_dir: str = "data/sft"
    checkpoint_root: str = ".cache/sft_checkpoints"
    seed: int = 1234
    schedule: SFTScheduleParams = field(default_factory=SFTScheduleParams)
    encode: EncodeParams = field(default_factory=EncodeParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval_batch_size: int = 8
    deepspeed: str = "tasks/training/ds_zero2.json"
    allow_partial: bool = False
    resume: Literal["auto", "never"] = "auto"
    resume_from: str = ""
    keep_checkpoints: bool = False
    trace_order: bool = True
    mlflow: ModelLogParams = field(default_factory=lambda: ModelLogParams(registered_name="medxiaohe-sft"))
