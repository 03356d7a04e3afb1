"""The hybrid reward as TRL reward functions, with the decomposition logged per step.

    fns = TRLRewards(reward, prompts_by_id)
    GRPOTrainer(..., reward_funcs=fns.functions(), args=GRPOConfig(reward_weights=fns.weights(), ...))

`fused` is the only weighted function: the hybrid reward for each completion, the expert partial-order
correction applied within each prompt's group of completions. Each component (rule, instruct, rubric,
pairwise, process, shaping, safety) is a further function with weight 0: it returns the value the
fused call computed (NaN where it does not apply), so TRL logs `rewards/<component>/mean` and `/std`
every step beside `rewards/fused/mean` without computing anything twice.
"""

from __future__ import annotations

import math
from collections import Counter

from tasks.reward.hybrid import COMPONENTS, HybridReward, item_for


class TRLRewards:
    def __init__(self, reward: HybridReward, prompts_by_id: dict[str, dict]):
        self.reward, self.by_id = reward, prompts_by_id
        self.last: list = []
        self.passes = Counter()           # gate passes / completions scored, for the run summary

    def fused(self, prompts, completions, rid, **_):
        items = [item_for(self.by_id[r], c if isinstance(c, str) else c[0]["content"])
                 for r, c in zip(rid, completions)]
        out: list = []
        start = 0
        while start < len(items):   # TRL lays out each prompt's generations consecutively
            end = start
            while end < len(items) and rid[end] == rid[start]:
                end += 1
            out += self.reward.score_group(items[start:end])
            start = end
        self.last = out
        self.passes["scored"] += len(out)
        self.passes["passed"] += sum(self.reward.passes(b) for b in out)
        return [b.fused for b in out]

    def _component(self, name: str):
        def fn(prompts, completions, **_):
            if len(self.last) != len(completions):
                raise RuntimeError(f"component {name}: the fused reward was not computed for this batch")
            return [math.nan if b.components.get(name) is None else float(b.components[name]) for b in self.last]
        fn.__name__ = name
        return fn

    def functions(self) -> list:
        return [self.fused, *(self._component(c) for c in COMPONENTS)]

    def weights(self) -> list[float]:
        return [1.0, *(0.0 for _ in COMPONENTS)]
