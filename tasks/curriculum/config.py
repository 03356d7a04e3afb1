"""The typed `cpt_order:` params section (read by tasks.common.config.load_stage_config, so an unknown
key or a wrong type fails loudly with its name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tasks.curriculum.order import ScheduleParams
from tasks.training.config import TrainParams
from tasks.training.encode import EncodeParams
from tasks.training.splits import DATA_KINDS


@dataclass
class HeldoutParams:
    """A seeded slice of the CPT corpus never trained on (by cpt_order's warm-up or by cpt),
    stratified by data kind (tasks/training/splits.py) so each kind gets its own perplexity."""
    fraction: float = 0.03
    max_samples: int = 300              # perplexity cost is bounded; the rest go back to training
    min_per_kind: int = 12
    kinds: list[str] = field(default_factory=lambda: list(DATA_KINDS))


@dataclass
class GeneralPoolParams:
    """Natural medical text (cpt_data's corpus documents) set aside before the cap and the clustering,
    replayed through every phase at `schedule.general_share` (tasks/curriculum/order.py)."""
    max_samples: int = 0                # 0 = no general replay
    tasks: list[str] = field(default_factory=lambda: ["document"])


@dataclass
class WarmupParams:
    fraction: float = 0.10              # the paper's "small random subset (e.g., 10%)"
    min_samples: int = 16
    # train.device (auto | cpu | cuda) places the warm-up and the embedding pass that follows it
    train: TrainParams = field(default_factory=lambda: TrainParams(save_steps=0, logging_steps=5, warmup=0.1))


@dataclass
class EmbedParams:
    layer: int = 0                      # decoder block whose output is pooled; 0 = the middle one
    batch_size: int = 16
    max_tokens: int = 256               # embeddings read the beginning of each sample


@dataclass
class UmapParams:
    n_components: int = 5               # HDBSCAN runs here; the 2-D map is a separate projection
    n_neighbors: int = 15
    min_dist: float = 0.0               # tight packing helps density clustering
    metric: str = "euclidean"


@dataclass
class HdbscanParams:
    min_cluster_size: int = 0           # 0 = max(5, n // 50)
    min_samples: int = 0                # 0 = HDBSCAN's default (min_cluster_size)
    cluster_selection_method: Literal["eom", "leaf"] = "eom"


@dataclass
class CptOrderConfig:
    in_dir: str = "data/cpt_data/samples"
    base_model_dir: str = "data/base_model/model"
    out_dir: str = "data/cpt_order"
    seed: int = 1234
    # The training budget: cpt trains one pass over what is ordered here, so this cap (not a step
    # count) sets CPT's length and the curriculum always reaches its last cluster.
    max_samples: int = 0                # 0 = every sample; else a seeded subset
    general_pool: GeneralPoolParams = field(default_factory=GeneralPoolParams)
    encode: EncodeParams = field(default_factory=EncodeParams)
    heldout: HeldoutParams = field(default_factory=HeldoutParams)
    warmup: WarmupParams = field(default_factory=WarmupParams)
    embed: EmbedParams = field(default_factory=EmbedParams)
    umap: UmapParams = field(default_factory=UmapParams)
    hdbscan: HdbscanParams = field(default_factory=HdbscanParams)
    compactness_sample: int = 200       # members drawn per cluster for the mean pairwise distance
    noise_placement: Literal["nearest_centroid", "final_region"] = "nearest_centroid"
    schedule: ScheduleParams = field(default_factory=ScheduleParams)
