"""The typed `mid_train:` params section (tasks.common.config.load_stage_config: an unknown key or a
wrong type fails loudly with its name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.cpt_training.config import ModelLogParams
from tasks.training.config import TrainParams
from tasks.training.encode import EncodeParams


@dataclass
class CurriculumParams:
    # paper §4.2: foundational logic -> long-horizon deduction -> perceptual-logic alignment -> hybrid fusion
    phases: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    max_per_phase: int = 0              # reasoning samples per phase (0 = all), seeded
    fusion_replay: float = 0.3          # phase 4 also replays this share (of its own size) of phases 1-3
    # progressive distribution warm-up: the reasoning share of the stream rises linearly from
    # start_share to end_share over the run; the rest is the CPT replay buffer
    start_share: float = 0.5
    end_share: float = 0.9
    replay_pool: int = 0                # CPT manifest entries available as replay (0 = as many as needed)
    heldout_per_family: int = 8         # per data family, never trained: loss per family before/after

    def __post_init__(self):
        if not 0 < self.start_share <= self.end_share <= 1:
            raise ValueError(f"need 0 < start_share <= end_share <= 1, got {self.start_share}, {self.end_share}")
        if sorted(set(self.phases)) != sorted(self.phases) or not set(self.phases) <= {1, 2, 3, 4}:
            raise ValueError(f"phases must be distinct values among 1..4, got {self.phases}")


@dataclass
class MidTrainConfig:
    samples_dir: str = "data/mid_data/samples"
    replay_manifest: str = "data/cpt_order/manifest.jsonl"   # the CPT schedule: the replay buffer's pool
    replay_samples_dir: str = "data/cpt_data/samples"
    base_model_dir: str = "data/cpt/model"                   # mid-training continues from the CPT model
    out_dir: str = "data/mid_train"
    checkpoint_root: str = ".cache/mid_checkpoints"
    seed: int = 1234
    curriculum: CurriculumParams = field(default_factory=CurriculumParams)
    encode: EncodeParams = field(default_factory=EncodeParams)
    # vision tower unfrozen (paper §4.2): every component trains; the decoder at a low rate
    train: TrainParams = field(default_factory=TrainParams)
    eval_batch_size: int = 8
    deepspeed: str = "tasks/training/ds_zero2.json"
    allow_partial: bool = False
    resume: Literal["auto", "never"] = "auto"
    resume_from: str = ""
    keep_checkpoints: bool = False
    trace_order: bool = True
    mlflow: ModelLogParams = field(default_factory=lambda: ModelLogParams(registered_name="medxiaohe-mid"))
