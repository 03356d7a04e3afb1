"""The SFT schedule: held-out samples per source, then the rest in seeded order, epoch by epoch.

    entries, heldout = build_schedule(samples, SFTScheduleParams(), seed=1234)
    entries[k] = {"id", "position", "epoch", "family", "repeat", "replay": False}

A sample and the copies made of it by sft_data (a rewritten prompt: meta.rewrite_of; a coverage
repeat: meta.repeat_of) form one group: a group is held out whole or trained whole, so no held-out
question is trained under another wording. The pools also share sources across families (an
instruction-following sample is built on a MedQuAD answer, a mid-training sample on a VQA-RAD or KG
question): a training sample that shares a source id with a held-out sample is set aside too
(`shadowed`, counted), so the held-out loss is measured on questions the run never saw. A sample of a long-tail or high-risk cell of the coverage
grid carries meta.coverage_repeats = k: it is trained 1 + k times per epoch, each time at its own
seeded position (sft_data's balancing, applied here so every record is stored and counted once).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tasks.mid_training.schedule import stable_seed
from tasks.sft_training.config import SFTScheduleParams


def group_of(sample: dict) -> str:
    meta = sample.get("meta") or {}
    return meta.get("repeat_of") or meta.get("rewrite_of") or sample["id"]


def split_heldout(samples: list[dict], per_source: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, heldout, shadowed): `per_source` seeded groups of each source held out (at most half the
    groups); of a held-out group one sample is measured (the original, else the smallest id left); the
    training samples that share a source id with a measured one are `shadowed` (neither trained nor
    measured)."""
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for s in sorted(samples, key=lambda s: s["id"]):
        groups[s["family"]][group_of(s)].append(s)
    held: set[str] = set()
    for source, by_group in sorted(groups.items()):
        keys = sorted(by_group)
        n = min(per_source, len(keys) // 2)
        rng = np.random.default_rng(stable_seed(seed, "sft-heldout", source))
        held |= {keys[i] for i in rng.permutation(len(keys))[:n]}
    members: dict[str, list[dict]] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s["id"]):
        if group_of(s) in held:
            members[group_of(s)].append(s)
    heldout = [next((s for s in rows if s["id"] == g), rows[0]) for g, rows in sorted(members.items())]
    held_sources = {x for s in heldout for x in s["source_ids"]}
    rest = [s for s in samples if group_of(s) not in held]
    train = [s for s in rest if not held_sources & set(s["source_ids"])]
    shadowed = [s for s in rest if held_sources & set(s["source_ids"])]
    return train, heldout, shadowed


def build_schedule(samples: list[dict], p: SFTScheduleParams,
                   seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(entries, heldout, shadowed): module docstring."""
    train, heldout, shadowed = split_heldout(samples, p.heldout_per_source, seed)
    train = sorted(train, key=lambda s: s["id"])
    if p.max_samples and len(train) > p.max_samples:
        rng = np.random.default_rng(stable_seed(seed, "sft-subset"))
        train = [train[i] for i in sorted(rng.choice(len(train), size=p.max_samples, replace=False))]
    rows = [(s, k) for s in train for k in range(1 + int((s.get("meta") or {}).get("coverage_repeats") or 0))]
    entries = []
    for epoch in range(p.epochs):
        rng = np.random.default_rng(stable_seed(seed, "sft-epoch", epoch))
        entries += [{"id": rows[i][0]["id"], "epoch": epoch, "family": rows[i][0]["family"], "repeat": rows[i][1],
                     "replay": False} for i in rng.permutation(len(rows))]
    return [{**e, "position": k} for k, e in enumerate(entries)], heldout, shadowed
