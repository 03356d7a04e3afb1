"""Non-linear, per-task fusion of the reward components, and the expert partial-order correction.

Paper §5.2.2: the graders' scores are fused with task-dependent weights that adapt during training, the
fusion is non-linear (a failed primary criterion is not bought back by good style), multiplicative
penalties (soft shaping) and the safety gate come on top, and the fused rewards of one group are
corrected to respect a partial order given by an expert baseline (safe-and-correct > safe-partly-correct
> safe-wrong > unsafe).

    fused = fuse({"rule": 1.0, "process": 0.6, "pairwise": None, "shaping": 0.8, "safety": 1.0},
                 "closed", FusionParams())
    w = dynamic_weights({"rule": [...], "process": [...]}, base, params)   # group statistics
    fuse(components, "closed", params, weights=w)
    corrected = partial_order_correct([f.value for f in group], [expert_rank(c) for c in comps])

Fusion, step by step:
1. weights: the task's base weights (`FusionParams.weights[task]`, or `weights=` given, e.g. from
   `dynamic_weights`); a component that is None or absent is dropped and the remaining weights are
   renormalised to sum to 1 (dynamic per item: a prompt without a reference simply has no pairwise
   score); a component with no weight for the task is ignored (listed in `detail["ignored"]`).
2. weighted power mean M_p = (sum_i w_i x_i^p)^(1/p), p = `power` (default 0.5). p = 1 is the
   arithmetic mean (linear sum), p -> 0 the geometric mean (any zero gives zero). With p = 0.5 a
   near-zero primary component pulls the reward down more than a linear sum: x = (0, 1) with w =
   (0.7, 0.3) gives 0.3 linearly but (0.3 * 1)^2 = 0.09 here.
3. value = M_p * shaping * safety (both multipliers default to 1 when absent; not weighted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

MULTIPLIERS = ("shaping", "safety")
PRIMARY = ("rule", "instruct", "rubric")     # the component that says "correct", first present wins


def _default_weights() -> dict[str, dict[str, float]]:
    closed = {"rule": 0.7, "process": 0.15, "pairwise": 0.15}
    return {
        "closed": dict(closed),
        "multi": dict(closed),                                        # multi-answer: closed-form too
        "open": {"rubric": 0.5, "pairwise": 0.3, "process": 0.2},
        "instruct": {"instruct": 0.6, "rubric": 0.2, "process": 0.2},
        "conflict": {"rubric": 0.5, "rule": 0.2, "pairwise": 0.15, "process": 0.15},
        "tool": {"rule": 0.6, "rubric": 0.2, "process": 0.2},
    }


@dataclasses.dataclass(frozen=True)
class FusionParams:
    """weights: base weights per task (each task's sum to 1; defaults above, the closed-form weights
    favour the verifiable rule score, open tasks the rubric). power: the power-mean exponent p (0.5:
    between geometric and arithmetic). min_share / target_std: `dynamic_weights` scales a component's
    weight by clip(std / target_std, min_share, 1) -- a component whose values vary by less than
    target_std = 0.1 over the group carries proportionally less signal, but keeps at least 20 % of its
    weight so it is never switched off by one flat group."""
    weights: dict[str, dict[str, float]] = dataclasses.field(default_factory=_default_weights)
    power: float = 0.5
    min_share: float = 0.2
    target_std: float = 0.1

    def __post_init__(self):
        if not 0.0 < self.min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {self.min_share}")
        if self.target_std <= 0:
            raise ValueError(f"target_std must be > 0, got {self.target_std}")
        for task, w in self.weights.items():
            if not w or any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
                raise ValueError(f"weights for task {task!r} must be non-negative with a positive sum: {w}")


@dataclasses.dataclass(frozen=True)
class Fused:
    value: float                      # the fused reward in [0, 1]
    weights: dict[str, float]         # the renormalised weights actually used
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


def power_mean(values: Sequence[float], weights: Sequence[float], p: float) -> float:
    """Weighted power mean of values in [0, 1] with weights summing to 1; p = 0 is the geometric mean.
    For p <= 0 a zero value gives 0 (the limit of the mean)."""
    if p == 0 or p < 0 and any(x == 0 for x in values):
        if any(x == 0 for x, w in zip(values, weights) if w > 0):
            return 0.0
        return math.exp(sum(w * math.log(x) for x, w in zip(values, weights) if w > 0))
    return sum(w * x ** p for x, w in zip(values, weights)) ** (1.0 / p)


def _check_unit(name: str, x: float) -> float:
    if not 0.0 <= x <= 1.0 or math.isnan(x):
        raise ValueError(f"component {name!r} must be in [0, 1], got {x}")
    return float(x)


def fuse(components: Mapping[str, float | None], task: str, params: FusionParams = FusionParams(),
         weights: Mapping[str, float] | None = None) -> Fused:
    """The fused reward of one completion (see module docstring). `weights` overrides the task's base
    weights (e.g. the output of `dynamic_weights`). ValueError for an unknown task, a component outside
    [0, 1], or when no weighted component is present (nothing to reward: a routing error)."""
    if weights is None:
        if task not in params.weights:
            raise ValueError(f"no fusion weights for task {task!r}; known: {sorted(params.weights)}")
        weights = params.weights[task]
    present = {k: _check_unit(k, v) for k, v in components.items() if k not in MULTIPLIERS and v is not None}
    used = {k: float(w) for k, w in weights.items() if k in present and w > 0}
    total = sum(used.values())
    if total <= 0:
        raise ValueError(f"task {task!r}: none of the weighted components {sorted(weights)} is present "
                         f"(got {sorted(present)})")
    used = {k: w / total for k, w in used.items()}
    names = sorted(used)
    mean = power_mean([present[k] for k in names], [used[k] for k in names], params.power)
    mean = min(1.0, max(0.0, mean))      # float noise only: a power mean of [0, 1] values stays in [0, 1]
    mult = {}
    for k in MULTIPLIERS:
        v = components.get(k)
        mult[k] = 1.0 if v is None else _check_unit(k, v)
    value = mean * mult["shaping"] * mult["safety"]
    detail = {"task": task, "power": params.power, "mean": mean, **mult,
              "dropped": sorted(k for k, w in weights.items() if w > 0 and k not in present),
              "ignored": sorted(k for k in present if weights.get(k, 0) <= 0)}
    return Fused(value, used, detail)


def _pstdev(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def dynamic_weights(history: Mapping[str, Sequence[float | None]], base: Mapping[str, float],
                    params: FusionParams = FusionParams()) -> dict[str, float]:
    """Per-task weights adapted to the recent group: w_c = base_c * clip(std_c / target_std, min_share, 1),
    renormalised to sum to 1. std_c is the population standard deviation of component c's recent values
    (None values skipped); a component with fewer than 2 values keeps its base weight (no evidence that
    it is flat). Why: a component that gives every completion of a group the same score adds no
    advantage signal in group-relative RL, only noise-free offset, so its share goes to the components
    that discriminate."""
    raw = {}
    for c, w in base.items():
        xs = [float(x) for x in history.get(c, ()) if x is not None]
        share = 1.0 if len(xs) < 2 else min(1.0, max(params.min_share, _pstdev(xs) / params.target_std))
        raw[c] = w * share
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"base weights must have a positive sum: {dict(base)}")
    return {c: w / total for c, w in raw.items()}


def expert_rank(components: Mapping[str, float | None], primary: Sequence[str] = PRIMARY) -> int:
    """The expert baseline's class of one completion: 0 unsafe (safety gate 0), then by the primary
    component (the first of rule / instruct / rubric present): >= 0.999 -> 3 safe-and-correct,
    >= 0.5 -> 2 safe-partly-correct, else 1 safe-wrong. With no primary component the correctness is
    unknown and the class is 1 (no ordering claim above the wrong ones)."""
    safety = components.get("safety")
    if safety is not None and safety <= 0.0:
        return 0
    main = next((components[k] for k in primary if components.get(k) is not None), None)
    if main is None:
        return 1
    return 3 if main >= 0.999 else 2 if main >= 0.5 else 1


def partial_order_correct(values: Sequence[float], ranks: Sequence[int]) -> list[float]:
    """Fused values of one group corrected to be non-decreasing in the expert class: the L2 isotonic
    regression under the class order, computed by pool-adjacent-violators. Completions are ordered by
    class and, within a class, by value (no order is claimed inside a class: Kruskal's primary approach
    to ties, for which PAV on this order is exact); each violating run is replaced by its mean. Values
    already consistent (every value of a class <= every value of a higher class) come back unchanged."""
    if len(values) != len(ranks):
        raise ValueError(f"values and ranks differ in length: {len(values)} != {len(ranks)}")
    order = sorted(range(len(values)), key=lambda i: (ranks[i], values[i], i))
    blocks: list[list[float]] = []          # [sum, count] per pooled block, in order
    members: list[list[int]] = []
    for i in order:
        blocks.append([float(values[i]), 1.0])
        members.append([i])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            members[-2].extend(members.pop())
    out = [float(v) for v in values]
    for (s, n), idx in zip(blocks, members):
        if len(idx) > 1:
            for i in idx:
                out[i] = s / n
    return out
