"""The mid-training schedule: four curriculum phases, a CPT replay buffer, a rising reasoning share.

    entries, heldout = build_schedule(samples, replay_ids, CurriculumParams(), seed=1234)
    entries[k] = {"id", "position", "phase", "family", "replay": bool}

1. held-out: `heldout_per_family` samples of every data family are set aside (seeded) and never
   trained: the stage measures loss per family on them before and after;
2. phases in order (paper §4.2): 1 foundational logic (short KG paths, reverse CoT on text), 2
   long-horizon deduction (multi-hop chains), 3 perceptual-logic alignment (image CoT, zoom/rotate
   trajectories), 4 hybrid fusion (search trajectories, rejection-sampled answers) plus a replay of
   `fusion_replay` of its size drawn from phases 1-3, so the last phase mixes every skill;
   within a phase the samples are in a seeded order;
3. progressive distribution warm-up: CPT replay entries are interleaved so the reasoning share of
   the stream rises linearly from `start_share` to `end_share` (at position t of T the running share
   tracks start + (end - start) * t / T). Why: a model that only ever saw pre-training text meets
   chat-formatted <think> data gradually instead of all at once, and the replay buffer keeps the
   CPT knowledge in the gradient throughout (the forgetting control CPT already uses, §3.4).

Deterministic: the same samples, replay pool and seed give the same schedule.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from tasks.mid_training.config import CurriculumParams


def stable_seed(*parts) -> int:
    """A seed from the run seed and a purpose, stable across processes (no Python hash())."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:4], "little")


def split_heldout(samples: list[dict], per_family: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout): `per_family` seeded samples of each family held out (at most half of it)."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s["id"]):
        by_family[s["family"]].append(s)
    held: set[str] = set()
    for fam, rows in sorted(by_family.items()):
        n = min(per_family, len(rows) // 2)
        rng = np.random.default_rng(stable_seed(seed, "heldout", fam))
        held |= {rows[i]["id"] for i in rng.permutation(len(rows))[:n]}
    return [s for s in samples if s["id"] not in held], [s for s in samples if s["id"] in held]


def reasoning_stream(train: list[dict], p: CurriculumParams, seed: int) -> list[dict]:
    """Phase by phase, seeded within a phase; phase 4 with its replay of phases 1-3."""
    by_phase: dict[int, list[dict]] = defaultdict(list)
    for s in sorted(train, key=lambda s: s["id"]):
        by_phase[s["phase"]].append(s)
    stream: list[dict] = []
    earlier: list[dict] = []
    for phase in p.phases:
        rows = by_phase.get(phase, [])
        rng = np.random.default_rng(stable_seed(seed, "phase", phase))
        rows = [rows[i] for i in rng.permutation(len(rows))]
        if p.max_per_phase:
            rows = rows[: p.max_per_phase]
        entries = [{"id": s["id"], "phase": phase, "family": s["family"], "replay": False} for s in rows]
        if phase == 4 and earlier and p.fusion_replay > 0:
            k = min(len(earlier), int(round(p.fusion_replay * max(len(rows), 1))))
            picks = [earlier[i] for i in sorted(rng.choice(len(earlier), size=k, replace=False))]
            mixed = entries + [{**e, "phase": 4, "fusion_replay": True} for e in picks]
            entries = [mixed[i] for i in rng.permutation(len(mixed))]
        stream += entries
        earlier += [e for e in entries if not e.get("fusion_replay")]
    return stream


def replay_count(n_reasoning: int, p: CurriculumParams) -> int:
    """CPT entries needed for the mean reasoning share (start + end) / 2 over the run."""
    mean = (p.start_share + p.end_share) / 2
    return int(round(n_reasoning * (1 - mean) / mean))


def interleave(stream: list[dict], replay_ids: list[str], p: CurriculumParams) -> list[dict]:
    """Replay entries placed so the running reasoning share follows the linear warm-up."""
    total = len(stream) + len(replay_ids)
    out: list[dict] = []
    r = c = 0
    expected = 0.0                # reasoning entries the warm-up asks for up to position t
    for t in range(total):
        expected += p.start_share + (p.end_share - p.start_share) * t / max(total - 1, 1)
        # reasoning while the count so far is below what the share asks for (Bresenham)
        take_reasoning = r < len(stream) and (c >= len(replay_ids) or r < expected)
        if take_reasoning:
            out.append(stream[r])
            r += 1
        else:
            out.append({"id": replay_ids[c], "phase": 0, "family": "cpt_replay", "replay": True})
            c += 1
    return [{**e, "position": k} for k, e in enumerate(out)]


def build_schedule(samples: list[dict], replay_pool: list[str], p: CurriculumParams,
                   seed: int) -> tuple[list[dict], list[dict]]:
    train, heldout = split_heldout(samples, p.heldout_per_family, seed)
    stream = reasoning_stream(train, p, seed)
    pool = sorted(replay_pool)
    if p.replay_pool:
        pool = pool[: p.replay_pool]
    need = replay_count(len(stream), p)
    rng = np.random.default_rng(stable_seed(seed, "replay"))
    # drawn with replacement only when the pool is smaller than what the warm-up needs
    picks = rng.choice(len(pool), size=need, replace=need > len(pool)).tolist() if pool and need else []
    return interleave(stream, [pool[i] for i in picks], p), heldout
