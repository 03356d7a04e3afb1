"""Learning rates per model component: the vision tower, the adapter and the decoder train at
different rates (paper §3.4, forgetting control).

    groups = param_groups(model, base_lr=3e-4, component_lr={"decoder": 3e-5}, weight_decay=0.01,
                          no_decay=trainer.get_decay_parameter_names(model))

Why: in continued pre-training the decoder is an already trained language model while the vision
tower and adapter of the project's base model start from random weights. One learning rate is
either too high for the decoder (a short run over templated captions overwrites what it knew) or
too low for the new parts. Components are named by module path as models/components.py names them
(`vision_tower`, `adapter`, and `embeddings` + transformer blocks = `decoder`); a component absent
from `component_lr` (or set to 0) trains at the base rate. A rate below 0 freezes the component.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.components import component_of as model_component

COMPONENTS = ("vision_tower", "adapter", "decoder")


def component_of(param_name: str) -> str:
    """vision_tower | adapter | decoder (input/output embeddings belong to the decoder)."""
    group = model_component(param_name)
    return "decoder" if group == "embeddings" else group


def check_component_lr(component_lr: dict[str, float]) -> None:
    unknown = sorted(set(component_lr) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"component_lr: unknown component(s) {unknown}; known: {list(COMPONENTS)}")


def param_groups(model, *, base_lr: float, component_lr: dict[str, float], weight_decay: float,
                 no_decay: Iterable[str] = ()) -> list[dict]:
    """Optimizer parameter groups: one per (component, decay or not) that has trainable parameters.
    Frozen components (rate < 0) get requires_grad=False and no group."""
    check_component_lr(component_lr)
    decay_names = set(no_decay)
    groups: dict[tuple[str, bool], dict] = {}
    for name, p in model.named_parameters():
        comp = component_of(name)
        lr = component_lr.get(comp) or base_lr
        if lr < 0:
            p.requires_grad_(False)
            continue
        if not p.requires_grad:
            continue
        decays = name in decay_names
        g = groups.setdefault((comp, decays), {"params": [], "lr": lr, "component": comp,
                                               "weight_decay": weight_decay if decays else 0.0})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]
