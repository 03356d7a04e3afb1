"""The typed `cpt:` params section (read by tasks.common.config.load_stage_config, so an unknown key or
a wrong type fails loudly with its name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.training.config import TrainParams
from tasks.training.encode import EncodeParams


@dataclass
class ModelLogParams:
    log_model: bool = True              # mlflow.transformers.log_model of the trained model
    register: bool = True               # ... and register it in the model registry
    registered_name: str = "medxiaohe-cpt"


@dataclass
class CptConfig:
    order_dir: str = "data/cpt_order"   # manifest.jsonl + heldout.jsonl
    samples_dir: str = "data/cpt_data/samples"
    base_model_dir: str = "data/base_model/model"
    out_dir: str = "data/cpt"
    checkpoint_root: str = ".cache/cpt_checkpoints"
    seed: int = 1234
    order: Literal["curriculum", "shuffle"] = "curriculum"
    encode: EncodeParams = field(default_factory=EncodeParams)
    train: TrainParams = field(default_factory=TrainParams)     # train.device: auto | cpu | cuda
    eval_batch_size: int = 8
    deepspeed: str = "tasks/training/ds_zero2.json"   # used when launched with several processes; "" = DDP
    # a train.max_steps that stops before the schedule's end is refused (the curriculum would not reach
    # its last cluster); true lets a smoke test or a debugging run train a prefix, recorded as partial
    allow_partial: bool = False
    resume: Literal["auto", "never"] = "auto"       # auto: newest complete checkpoint of this run
    resume_from: str = ""               # an explicit checkpoint directory (must be complete)
    keep_checkpoints: bool = False      # delete the run's checkpoints once the model is saved
    trace_order: bool = True            # one line per micro-batch: step, positions, sample ids
    mlflow: ModelLogParams = field(default_factory=ModelLogParams)
