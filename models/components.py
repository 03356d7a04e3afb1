"""Which component of a vision-language model a parameter belongs to, by its module path.

    component_of("model.vision_tower.transformer.layers.0.attention.q_proj.weight")  # "vision_tower"

Patterns cover this project's class (models/vlm.py) and the common LLaVA-family layouts; the adapter
is matched first because its path can contain "vision" (vision_projection). Used to count parameters
per component (models/vlm.py) and to give components their own learning rates (tasks/training/optim.py).
"""

from __future__ import annotations

COMPONENT_PATTERNS = (
    ("adapter", ("vision_projection", "multi_modal_projector", "connector", "merger", "projector")),
    ("vision_tower", ("vision_encoder", "vision_tower", "vision_model", "visual", "vision")),
    ("embeddings", ("embed_tokens", "lm_head")),
)


def component_of(param_name: str) -> str:
    """vision_tower | adapter | embeddings (input/output tables) | decoder (the transformer blocks)."""
    return next((g for g, keys in COMPONENT_PATTERNS if any(k in param_name for k in keys)), "decoder")
