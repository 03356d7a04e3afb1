"""The training plan of each paradigm: a list of segments (an RFT phase or a GRPO phase), with the
prompts each GRPO phase draws, and the hints it carries (paper §5.2.3).

    segments = plan(cfg, train_prompts)     # [Segment], in training order

Paradigms, on the same prompts and the same GRPO budget (3 x iterations x grpo.steps_per_phase steps):
- iterative (the paper's): `iterations` rounds of an RFT phase, then Foundation -> Specialization ->
  Alignment, the hint density decayed linearly over the rounds, from `density` to 0 in the last;
- staged: the three phases once, in sequence, each with a third of the budget; no RFT; the density
  decayed linearly over the phases, from `density` to 0;
- fusion: one GRPO run over all training prompts mixed; no RFT; hints at half the initial density (the
  mean of the linear decay the other two apply).

Phases draw from the prompts' `meta.phase` (rl_data): Foundation the short closed prompts; Specialization
the long-horizon ones, the long ones `curriculum.long_weight` times as likely; Alignment instruction
following and the conflict scenarios (`safety_weight`), plus a `replay_share` of general replay from the
other two. Hints (the dynamic hint curriculum): a share `density` of a phase's distinct prompts carry a
hint, the lowest SFT pass rates first; the depth (1-3 levels of hints, coarse to near-answer) grows with
the density, so early phases get more and deeper help and the last round none. All three paradigms get
the same mean density, `density / 2` (one iteration of the iterative paradigm: `density / 2` throughout).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tasks.rl_synthesis.prompts import PHASES, words


@dataclasses.dataclass
class Segment:
    round: int                 # 1-based iteration (staged and fusion: 1)
    kind: str                  # "rft" | "grpo"
    phase: str                 # foundation | specialization | alignment | mixed | rft
    steps: int                 # GRPO optimizer steps (rft: 0, its steps follow from the kept samples)
    prompt_ids: list[str]      # the draw, in order (GRPO: steps x prompts_per_step; RFT: the sampled prompts)
    hint_density: float
    hinted: dict[str, int] = dataclasses.field(default_factory=dict)   # prompt id -> hint levels

    @property
    def name(self) -> str:
        return f"r{self.round}-{self.phase}"


def _weights(prompts: list[dict], phase: str, cfg) -> tuple[list[dict], np.ndarray]:
    c = cfg.curriculum
    if phase == "mixed":
        pool = list(prompts)
        w = np.ones(len(pool))
    elif phase == "alignment":
        own = [p for p in prompts if p["meta"].get("phase") == "alignment"]
        other = [p for p in prompts if p["meta"].get("phase") != "alignment"]
        pool = own + other
        w_own = np.array([c.safety_weight if p["task"] == "conflict" else 1.0 for p in own])
        w_own = w_own / w_own.sum() * (1 - c.replay_share) if len(own) else w_own
        w_other = np.full(len(other), (c.replay_share if own else 1.0) / max(1, len(other)))
        w = np.concatenate([w_own, w_other]) if len(pool) else np.ones(0)
    else:
        pool = [p for p in prompts if p["meta"].get("phase") == phase] or list(prompts)
        w = np.array([c.long_weight if phase == "specialization" and words(p) >= c.long_words else 1.0
                      for p in pool])
    return pool, w / w.sum() if len(w) and w.sum() > 0 else w


def _draw(prompts: list[dict], phase: str, n: int, cfg, rng) -> list[str]:
    pool, w = _weights(prompts, phase, cfg)
    if not pool:
        return []
    idx = rng.choice(len(pool), size=n, replace=True, p=w)
    return [pool[i]["id"] for i in idx]


def hint_levels(density: float) -> int:
    return 0 if density <= 0 else min(3, max(1, math.ceil(3 * density)))


def assign_hints(prompt_ids: list[str], by_id: dict[str, dict], density: float) -> dict[str, int]:
    distinct = sorted(set(prompt_ids), key=lambda i: (by_id[i]["meta"].get("pass_rate", 0.0), i))
    n = math.ceil(density * len(distinct)) if density > 0 else 0
    return {i: hint_levels(density) for i in distinct[:n]}


def plan(cfg, prompts: list[dict]) -> list[Segment]:
    """The segments of cfg.paradigm over the training prompts (split == train)."""
    by_id = {p["id"]: p for p in prompts}
    g, it = cfg.grpo, max(1, cfg.iterations)
    per_step = g.prompts_per_step
    d0 = cfg.hints.density
    segs: list[Segment] = []
    if cfg.paradigm == "iterative":
        for r in range(1, it + 1):
            density = d0 * (it - r) / (it - 1) if it > 1 else d0 / 2
            rng = np.random.default_rng([cfg.seed, r])
            if cfg.rft.enabled:
                ids = sorted(by_id)
                pick = sorted(rng.permutation(len(ids))[: cfg.rft.prompts].tolist())
                segs.append(Segment(r, "rft", "rft", 0, [ids[i] for i in pick], 0.0))
            for phase in PHASES:
                segs.append(Segment(r, "grpo", phase, g.steps_per_phase,
                                    _draw(prompts, phase, g.steps_per_phase * per_step, cfg, rng), density))
    elif cfg.paradigm == "staged":
        rng = np.random.default_rng([cfg.seed, 1])
        for k, phase in enumerate(PHASES):
            steps = g.steps_per_phase * it
            segs.append(Segment(1, "grpo", phase, steps, _draw(prompts, phase, steps * per_step, cfg, rng),
                                d0 * (1 - k / (len(PHASES) - 1))))
    elif cfg.paradigm == "fusion":
        rng = np.random.default_rng([cfg.seed, 1])
        steps = g.steps_per_phase * it * len(PHASES)
        segs.append(Segment(1, "grpo", "mixed", steps, _draw(prompts, "mixed", steps * per_step, cfg, rng), d0 / 2))
    else:
        raise ValueError(f"unknown paradigm {cfg.paradigm!r}")
    for s in segs:
        if s.kind == "grpo":
            s.hinted = assign_hints(s.prompt_ids, by_id, s.hint_density)
    return segs


def with_hint(prompt: dict, levels: int) -> list[dict]:
    """The prompt's messages with `levels` hints appended to the query (the held-out set never has any)."""
    messages = [dict(m) for m in prompt["messages"]]
    if levels > 0 and prompt.get("hints"):
        messages[-1]["content"] = messages[-1]["content"] + "\nHint: " + " ".join(prompt["hints"][:levels])
    return messages
