"""The difficulty band (paper §5.2.1): keep prompts the current policy solves sometimes, not always.

    rates = pass_rates(prompts, sampled, reward)        # sampled: k completions per prompt (policy.py)
    out = band_filter(prompts, rates, low=0.6, high=0.8)      # GateOutcome; the rest rejected by rate

A prompt's pass rate is the share of `k` sampled completions of the SFT policy that pass the hybrid
reward's gate (tasks/reward/hybrid.py `passes`: the primary grader says correct and the safety gate
holds). Prompts always solved teach nothing; prompts never solved give GRPO groups with no reward
variance, so no gradient: the band keeps the ones in between.
"""

from __future__ import annotations

from tasks.mid_synthesis.samples import GateOutcome
from tasks.reward.hybrid import HybridReward, item_for


def pass_rates(prompts: list[dict], sampled: list[list[str]], reward: HybridReward) -> dict[str, dict]:
    """{prompt id: {"passes", "k", "pass_rate", "mean_reward", "best"}} over each prompt's sampled
    completions; `best` indexes the highest fused reward (computed without a reference: the pairwise
    grader needs one, so the band is graded before the reference exists)."""
    rates: dict[str, dict] = {}
    for p, completions in zip(prompts, sampled):
        k = len(completions)
        scored = reward.score_group([item_for(p, c) for c in completions])
        passes = sum(reward.passes(b) for b in scored)
        # the best-of-N reference: highest fused reward, then expert class, then the uncorrected value
        # (the partial-order correction can pool classes to one value), then the first
        best = max(range(k), key=lambda i: (scored[i].fused, scored[i].rank, scored[i].raw_fused, -i))
        rates[p["id"]] = {"passes": passes, "k": k, "pass_rate": passes / k,
                          "mean_reward": sum(b.fused for b in scored) / k, "best": best}
    return rates


def band_filter(prompts: list[dict], rates: dict[str, dict], low: float, high: float) -> GateOutcome:
    out = GateOutcome()
    for p in prompts:
        out.read += 1
        r = rates[p["id"]]
        p["meta"].update(pass_rate=r["pass_rate"], passes=r["passes"], k=r["k"], sft_mean_reward=r["mean_reward"])
        if r["pass_rate"] < low - 1e-9:
            out.reject("band", "too_hard", f"pass rate {r['pass_rate']:.2f} < {low}", p["id"])
        elif r["pass_rate"] > high + 1e-9:
            out.reject("band", "too_easy", f"pass rate {r['pass_rate']:.2f} > {high}", p["id"])
        else:
            out.kept.append(p)
    return out
