"""The typed `rl:` params section (tasks.common.config.load_stage_config: an unknown key or a wrong type
fails loudly with its name)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from tasks.cpt_training.config import ModelLogParams
from tasks.reward.hybrid import RewardParams

PARADIGMS = ("iterative", "fusion", "staged")


@dataclasses.dataclass
class GRPOParams:
    steps_per_phase: int = 2           # optimizer steps per curriculum phase and iteration (the budget unit)
    prompts_per_step: int = 1
    num_generations: int = 4           # the GRPO group: completions per prompt
    max_completion_length: int = 64
    temperature: float = 1.0
    learning_rate: float = 1e-6
    beta: float = 0.0                  # KL to the reference policy (0: none, as DAPO/Dr. GRPO)
    epsilon: float = 0.2
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    max_grad_norm: float = 1.0


@dataclasses.dataclass
class RFTParams:
    enabled: bool = True
    prompts: int = 12                  # train prompts sampled per iteration (seeded)
    samples: int = 4                   # completions per prompt
    max_per_prompt: int = 2            # passing completions kept per prompt (distinct texts)
    learning_rate: float = 5e-6
    epochs: float = 1.0
    batch_size: int = 4


@dataclasses.dataclass
class CurriculumParams:
    long_weight: float = 2.0           # specialization: long-horizon prompts drawn this many times as often
    long_words: int = 80               # ... long = this many words of history and query
    replay_share: float = 0.3          # alignment: share of general replay (foundation + specialization prompts)
    safety_weight: float = 2.0         # alignment: conflict (safety) prompts drawn this many times as often


@dataclasses.dataclass
class HintParams:
    density: float = 0.5               # share of a phase's prompts carrying a hint at the start of training
    decay: Literal["linear"] = "linear"  # the density falls linearly to 0 over the iterations (plan.py);
                                       # the hardest prompts (lowest SFT pass rate) get hints first


@dataclasses.dataclass
class EntropyParams:
    threshold: float = 0.6             # policy entropy (nats/token) at or below which the bonus is applied
    coef_delta: float = 0.005          # TRL's adaptive entropy controller: +delta per step below, -delta above
    coef_max: float = 0.05


@dataclasses.dataclass
class HeldoutParams:
    samples: int = 4                   # completions per held-out prompt (temperature 0: greedy, one)
    temperature: float = 1.0
    max_new_tokens: int = 96
    batch_prompts: int = 8


@dataclasses.dataclass
class RLConfig:
    prompts_dir: str = "data/rl_data/prompts"
    base_model_dir: str = "data/sft/model"       # RL starts from the SFT policy
    out_dir: str = "data/rl"
    checkpoint_root: str = ".cache/rl_checkpoints"
    seed: int = 1234
    paradigm: Literal["iterative", "fusion", "staged"] = "iterative"
    iterations: int = 2                # iterative: RFT + the three phases, this many times
    thinking: bool = True
    threads: int = 2
    grpo: GRPOParams = dataclasses.field(default_factory=GRPOParams)
    rft: RFTParams = dataclasses.field(default_factory=RFTParams)
    curriculum: CurriculumParams = dataclasses.field(default_factory=CurriculumParams)
    hints: HintParams = dataclasses.field(default_factory=HintParams)
    entropy: EntropyParams = dataclasses.field(default_factory=EntropyParams)
    heldout: HeldoutParams = dataclasses.field(default_factory=HeldoutParams)
    reward: RewardParams = dataclasses.field(default_factory=RewardParams)
    deepspeed: str = "tasks/training/ds_zero2.json"   # used when launched with torchrun (world size > 1)
    resume: Literal["auto", "never"] = "auto"
    keep_checkpoints: bool = False
    mlflow: ModelLogParams = dataclasses.field(default_factory=lambda: ModelLogParams(registered_name="medxiaohe-rl"))

    @property
    def uses_llm(self) -> bool:
        return self.reward.judge == "llm"
