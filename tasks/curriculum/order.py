"""The §3.4 curriculum over clusters: compactness ranking, noise placement, mixed transitions, replay.

    from tasks.curriculum.order import rank_clusters, place_noise, build_schedule, ScheduleParams
    labels, is_noise = place_noise(hdbscan_labels, umap_coords, mode="nearest_centroid")
    ranking = rank_clusters(embeddings, hdbscan_labels, labels, sample_size=200, seed=1234)
    entries = build_schedule(ranking, ScheduleParams(mix_fraction=0.15, replay_fraction=0.1), seed=1234)

Everything here works on numpy arrays (sample positions 0..n-1), so it is tested on synthetic
embeddings without a model. The choices, and why:

- Compactness (the paper's definition): the mean pairwise Euclidean distance between the pooled
  embeddings (not the UMAP coordinates: UMAP does not preserve distances) of at most `sample_size`
  members drawn with a seeded RNG. It is computed on HDBSCAN's own members only: noise points
  placed into a cluster afterwards are outliers by definition and would make every cluster that
  receives them look harder. Lower score = more compact = easier = earlier. Ties break by cluster
  size (larger first), then by label, so the order is total and reproducible.
- Noise points are placed, never dropped. `nearest_centroid` (default) gives each noise point the
  cluster whose centroid (in the space HDBSCAN clustered, the UMAP coordinates) is nearest: the
  point trains next to its closest semantic neighbourhood. `final_region` keeps the noise points
  together as one last pseudo-cluster (label -1): the hardest, least typical material comes last,
  after a transition like any other cluster. If HDBSCAN finds no cluster at all, every sample is
  one pseudo-cluster (label -1) and the schedule is a seeded shuffle.
- Within a cluster, members are shuffled (seeded): the paper orders clusters, not samples.
- Transitions: between consecutive clusters A -> B, the last `mix_fraction` of A's shuffled members
  and the first `mix_fraction` of B's form a mixed region (at least one of each when both clusters
  have >= 2 members), shuffled together, so the data shifts gradually instead of at a wall.
- Replay: each mixed region adds ceil(replay_fraction x region size) replayed samples, drawn
  without replacement from everything already scheduled before the region (the earlier clusters,
  A's core included). A replay is an extra manifest entry (`replay: true`) for a sample that
  already appeared; it reduces forgetting while the model moves on. Every sample still appears
  exactly once as a non-replay entry.
- General replay (forgetting control, paper §3.4 and the mid-training "replay buffer of general-domain
  data"): every region, the first cluster's core included, also gets a `general_share` of entries
  from a separate pool of natural medical text (corpus documents kept out of the clustering), drawn
  in a seeded order that cycles through the pool. A run of any length therefore never trains on
  templated material alone, which is what made a short CPT run forget how to answer questions.
  These entries carry `general: true` and index the pool, not the clustered samples.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
from scipy.spatial.distance import pdist

NOISE = -1


@dataclasses.dataclass
class ScheduleParams:
    mix_fraction: float = 0.15       # share of each cluster that goes into each adjacent transition
    replay_fraction: float = 0.10    # replayed samples per transition, as a share of its size
    general_share: float = 0.0       # share of every region drawn from the general-text pool

    def __post_init__(self):
        if not 0.0 <= self.mix_fraction <= 0.5:
            raise ValueError(f"mix_fraction must be in [0, 0.5], got {self.mix_fraction}")
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise ValueError(f"replay_fraction must be in [0, 1], got {self.replay_fraction}")
        if not 0.0 <= self.general_share < 1.0:
            raise ValueError(f"general_share must be in [0, 1), got {self.general_share}")


@dataclasses.dataclass
class ClusterRank:
    """One cluster in curriculum order."""
    label: int                       # HDBSCAN label (-1: the noise pseudo-cluster)
    rank: int                        # position in the curriculum (0 = first, easiest)
    members: np.ndarray              # sample positions, HDBSCAN members and placed noise points
    compactness: float               # mean pairwise distance of sampled HDBSCAN members (nan: none)
    n_core: int                      # members HDBSCAN gave the cluster
    n_noise: int                     # noise points placed into it

    def report(self) -> dict:
        return {"label": self.label, "rank": self.rank, "size": len(self.members),
                "hdbscan_members": self.n_core, "noise_placed": self.n_noise,
                "compactness": None if math.isnan(self.compactness) else round(float(self.compactness), 6)}


def compactness(embeddings: np.ndarray, members: np.ndarray, sample_size: int,
                rng: np.random.Generator) -> float:
    """Mean pairwise Euclidean distance between at most `sample_size` randomly drawn members."""
    if len(members) < 2:
        return 0.0 if len(members) == 1 else float("nan")
    if sample_size and len(members) > sample_size:
        members = rng.choice(members, size=sample_size, replace=False)
    return float(pdist(np.asarray(embeddings[np.sort(members)], dtype=np.float64)).mean())


def place_noise(labels: np.ndarray, coords: np.ndarray,
                mode: Literal["nearest_centroid", "final_region"] = "nearest_centroid"
                ) -> tuple[np.ndarray, np.ndarray]:
    """(placed labels, is_noise): every HDBSCAN noise point gets a cluster (see module docstring)."""
    labels = np.asarray(labels).copy()
    is_noise = labels == NOISE
    clusters = sorted(set(labels[~is_noise].tolist()))
    if mode not in ("nearest_centroid", "final_region"):
        raise ValueError(f"unknown noise placement {mode!r}")
    if not is_noise.any() or not clusters or mode == "final_region":
        return labels, is_noise
    centroids = np.stack([coords[labels == c].mean(axis=0) for c in clusters])
    d = ((coords[is_noise][:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    labels[is_noise] = np.asarray(clusters)[d.argmin(axis=1)]
    return labels, is_noise


def rank_clusters(embeddings: np.ndarray, hdbscan_labels: np.ndarray, placed_labels: np.ndarray,
                  *, sample_size: int, seed: int) -> list[ClusterRank]:
    """Clusters from most to least compact; the noise pseudo-cluster (if any) always last."""
    hdbscan_labels = np.asarray(hdbscan_labels)
    placed_labels = np.asarray(placed_labels)
    rng = np.random.default_rng(seed)
    ranked = []
    for label in sorted(set(placed_labels.tolist())):
        members = np.flatnonzero(placed_labels == label)
        core = np.flatnonzero(hdbscan_labels == label) if label != NOISE else members
        score = compactness(embeddings, core, sample_size, rng)
        n_noise = int((hdbscan_labels[members] == NOISE).sum())
        ranked.append(ClusterRank(label, 0, members, score, len(core) if label != NOISE else 0, n_noise))

    def key(c: ClusterRank):
        last = c.label == NOISE
        return (last, math.inf if math.isnan(c.compactness) else c.compactness, -len(c.members), c.label)

    ranked.sort(key=key)
    for i, c in enumerate(ranked):
        c.rank = i
    return ranked


def _split_sizes(n: int, fraction: float, has_prev: bool, has_next: bool) -> tuple[int, int]:
    """(head, tail): members a cluster gives to the previous and the next transition."""
    want = round(fraction * n)
    head = max(1, want) if has_prev and fraction > 0 else 0
    tail = max(1, want) if has_next and fraction > 0 else 0
    while head + tail > n:      # tiny clusters: give up the tail first, then the head
        if tail > head or (tail and not head):
            tail -= 1
        else:
            head -= 1
    return head, tail


class GeneralStream:
    """Positions 0..n-1 of the general-text pool in seeded order, reshuffled at each pass."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.queue = n, rng, []

    def take(self, k: int) -> list[int]:
        out = []
        while self.n and len(out) < k:
            if not self.queue:
                self.queue = self.rng.permutation(self.n).tolist()
            out.append(self.queue.pop(0))
        return out


def general_count(region_size: int, share: float) -> int:
    """General entries that make up `share` of a region with `region_size` curriculum entries."""
    return round(region_size * share / (1.0 - share)) if region_size and share else 0


def build_schedule(ranking: list[ClusterRank], params: ScheduleParams, *, seed: int,
                   general_pool: int = 0) -> list[dict]:
    """Manifest entries in training order.

    Each entry: {index (sample position), cluster (label), rank, region ("cluster" | "transition"),
    region_index, replay (bool), general (bool)}; transitions also carry `between` [rank_a, rank_b].
    A general entry's index is a position in the general-text pool of `general_pool` samples (its
    cluster is None, its rank the region's).
    """
    rng = np.random.default_rng(seed)
    general = GeneralStream(general_pool, np.random.default_rng([seed, 1]))
    shuffled = [rng.permutation(c.members) for c in ranking]
    rank_of = {}
    for c in ranking:
        for m in c.members.tolist():
            rank_of[m] = c.rank
    label_of = {c.rank: c.label for c in ranking}
    parts = []
    for i, members in enumerate(shuffled):
        head, tail = _split_sizes(len(members), params.mix_fraction, i > 0, i < len(shuffled) - 1)
        parts.append((members[:head], members[head:len(members) - tail], members[len(members) - tail:]))

    entries: list[dict] = []
    seen: list[int] = []            # non-replay positions already scheduled (the replay pool)
    region_index = 0

    def emit(positions, region: str, replay_flags=None, between=None, rank=0):
        nonlocal region_index
        rows = [{"index": int(p), "cluster": label_of[rank_of[int(p)]], "rank": rank_of[int(p)],
                 "replay": bool(replay_flags[j]) if replay_flags is not None else False, "general": False}
                for j, p in enumerate(positions)]
        rows += [{"index": g, "cluster": None, "rank": rank, "replay": True, "general": True}
                 for g in general.take(general_count(len(rows), params.general_share))]
        # general entries spread through the region, not appended as a block
        order = rng.permutation(len(rows)) if general_pool and params.general_share else range(len(rows))
        for j in order:
            e = {**rows[j], "region": region, "region_index": region_index}
            if between is not None:
                e["between"] = list(between)
            entries.append(e)
        region_index += 1

    for i in range(len(shuffled)):
        _, core, tail = parts[i]
        emit(core, "cluster", rank=i)
        seen.extend(int(p) for p in core)
        if i == len(shuffled) - 1:
            break
        mixed = np.concatenate([tail, parts[i + 1][0]])
        n_replay = math.ceil(params.replay_fraction * len(mixed)) if len(mixed) else 0
        n_replay = min(n_replay, len(seen))
        replay = rng.choice(np.asarray(seen), size=n_replay, replace=False) if n_replay else np.array([], int)
        region = np.concatenate([mixed, replay]).astype(int)
        flags = np.concatenate([np.zeros(len(mixed), bool), np.ones(len(replay), bool)])
        perm = rng.permutation(len(region))
        emit(region[perm], "transition", flags[perm], between=(i, i + 1), rank=i + 1)
        seen.extend(int(p) for p in mixed)
    return entries


def shuffled_schedule(entries: list[dict], *, seed: int) -> list[dict]:
    """The same entries (replays included: same samples, same step count) in a seeded random order:
    the `order: shuffle` baseline the curriculum is compared against."""
    perm = np.random.default_rng(seed).permutation(len(entries))
    return [entries[i] for i in perm]


def check_schedule(entries: list[dict], n_samples: int, general_pool: int = 0) -> None:
    """Every sample exactly once as a non-replay entry; replays only of samples already seen;
    general entries inside the pool."""
    seen = np.zeros(n_samples, dtype=bool)
    for pos, e in enumerate(entries):
        i = e["index"]
        if e.get("general"):
            if not 0 <= i < general_pool:
                raise AssertionError(f"entry {pos}: general-pool position {i} outside a pool of {general_pool}")
            continue
        if e["replay"]:
            if not seen[i]:
                raise AssertionError(f"entry {pos}: replay of sample {i} before its first appearance")
            continue
        if seen[i]:
            raise AssertionError(f"entry {pos}: sample {i} scheduled twice")
        seen[i] = True
    if not seen.all():
        raise AssertionError(f"{int((~seen).sum())} samples never scheduled")
