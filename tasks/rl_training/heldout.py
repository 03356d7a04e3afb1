"""The held-out reward: the policy's completions on prompts RL never trains on, scored by the same
hybrid reward (no hints), with 95% intervals.

    report = heldout_reward(policy, prompts, reward, cfg.heldout, seed)   # {"mean", "ci", "pass_rate", ...}

Per prompt: `samples` completions (sampled as rl_data's band is, by default), the mean fused reward; the summary is the mean
over prompts with a bootstrap interval, the pass rate (the reward's gate) with a Wilson interval, and
both per task. Changes between checkpoints are read from the intervals (eval/intervals.py).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from eval.intervals import bootstrap, wilson
from tasks.reward.hybrid import HybridReward, item_for


def _stats(values: list[float], passes: list[bool]) -> dict:
    n = len(values)
    lo, hi = bootstrap(values) if n > 1 else (values[0], values[0]) if n else (None, None)
    plo, phi = wilson(sum(passes), n) if n else (None, None)
    return {"n": n, "mean": float(np.mean(values)) if n else None, "ci": [lo, hi],
            "pass_rate": sum(passes) / n if n else None, "pass_ci": [plo, phi]}


def heldout_reward(policy, prompts: list[dict], reward: HybridReward, params, seed: int,
                   thinking: bool = True) -> tuple[dict, list[dict]]:
    """(summary, one row per prompt with its completions' scores)."""
    if not prompts:
        return {"n": 0, "mean": None, "ci": [None, None], "pass_rate": None, "pass_ci": [None, None],
                "by_task": {}}, []
    texts = policy.render([p["messages"] for p in prompts], thinking=thinking)
    sampled = policy.sample(texts, n=params.samples, max_new_tokens=params.max_new_tokens,
                            temperature=params.temperature, seed=seed, batch_prompts=params.batch_prompts,
                            salt="heldout")
    rows, by_task = [], defaultdict(lambda: ([], []))
    for p, completions in zip(prompts, sampled):
        scored = reward.score_group([item_for(p, c) for c in completions])
        fused = float(np.mean([b.fused for b in scored]))
        passed = sum(reward.passes(b) for b in scored) / len(scored) >= 0.5
        comps = {k: [b.components[k] for b in scored] for k in scored[0].components}
        rows.append({"id": p["id"], "task": p["task"], "fused": fused, "passed": passed,
                     "components": {k: (float(np.mean([x for x in v if x is not None]))
                                        if any(x is not None for x in v) else None) for k, v in comps.items()},
                     "completion": completions[0][:600]})
        by_task[p["task"]][0].append(fused)
        by_task[p["task"]][1].append(passed)
    summary = _stats([r["fused"] for r in rows], [r["passed"] for r in rows])
    summary["by_task"] = {t: _stats(v, ps) for t, (v, ps) in sorted(by_task.items())}
    comps = sorted({k for r in rows for k in r["components"]})
    summary["components"] = {k: float(np.mean(vals)) for k in comps
                             if (vals := [r["components"][k] for r in rows if r["components"][k] is not None])}
    return summary, rows
