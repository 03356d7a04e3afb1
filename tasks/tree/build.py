"""Stage 2 of paper §3.2: the core tree from the most frequent entities.

1. Core = entities with count >= `core_min_count`, the `core_top_n` most frequent of them. With
   `type_tier`, the entity types form tier 1 (the paper's Stage 2 types; types with fewer than
   `min_type_size` core entities are dropped from the core, as the paper filters small types; their
   entities are attached in Stage 3 instead).
2. Bottom-up, per type (or for all entities): K-Means over the current level's embeddings, the cluster
   count chosen by the silhouette coefficient over a candidate range: the branching bounds
   (k in [ceil(n / max_branching), floor(n / min_branching)]) narrowed to a band of +-`branching_slack`
   around the branching that fills the remaining tiers evenly (see `k_range`), at most `k_candidates`
   values, seeded, fixed n_init. Each cluster becomes a parent node whose embedding is the
   frequency-weighted mean of its members' embeddings (re-normalised); the parents are clustered again,
   recursively, until a level has at most `max_branching` nodes or the five-tier budget is used up
   (entities sit at tier <= 4).
3. Names: local = the most central entity of the node's subtree (highest cosine to the node embedding)
   not already naming an ancestor; the LLM namer lives in tree_name.py.

Everything is seeded (K-Means random_state, silhouette sampling) and runs under a fixed thread limit,
so the same entities give the same tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tasks.tree.embed import Entity
from tasks.tree.model import CATEGORY, ENTITY, MAX_TIERS, ROOT_ID, Node, Tree, norm_name

ROOT_NAME = "Medical Entity Tree"


@dataclass
class BuildParams:
    core_top_n: int = 2000
    core_min_count: int = 2
    type_tier: bool = True
    min_type_size: int = 5
    max_tiers: int = MAX_TIERS
    min_branching: int = 3          # average children per node, lower bound (-> largest k tried)
    max_branching: int = 20         # upper bound (-> smallest k tried); a level this small stops
    branching_slack: float = 2.0    # k band around the tier-budget-balanced branching (0 = off)
    k_candidates: int = 8           # silhouette is evaluated on at most this many k values
    kmeans_n_init: int = 4
    silhouette_sample: int = 3000   # silhouette on a seeded sample above this many points
    aggregation_weight: str = "count"   # count | log | uniform: weights of the bottom-up aggregation

    def __post_init__(self):
        if not 2 <= self.max_tiers <= MAX_TIERS:
            raise ValueError(f"max_tiers must be in 2..{MAX_TIERS}")
        if self.min_branching < 2 or self.max_branching < self.min_branching:
            raise ValueError("need 2 <= min_branching <= max_branching")
        if self.branching_slack < 0 or 0 < self.branching_slack < 1:
            raise ValueError("branching_slack must be 0 (off) or >= 1")
        if self.aggregation_weight not in ("count", "log", "uniform"):
            raise ValueError("aggregation_weight must be count, log or uniform")
        if self.core_top_n < 1 or self.k_candidates < 1 or self.kmeans_n_init < 1:
            raise ValueError("core_top_n, k_candidates and kmeans_n_init must be >= 1")


@dataclass
class CoreTree:
    """The built core: the tree, an embedding per category node, and how each level was chosen."""
    tree: Tree
    embeddings: dict[str, np.ndarray]            # category node id -> unit vector
    levels: list[dict] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)   # core-eligible entities moved to Stage 3


def select_core(entities: list[Entity], p: BuildParams) -> tuple[list[int], list[int]]:
    """(core indices, excluded-by-type indices); entities are sorted by (-count, norm)."""
    eligible = [i for i, e in enumerate(entities) if e.count >= p.core_min_count][:p.core_top_n]
    if not p.type_tier:
        return eligible, []
    sizes: dict[str, int] = {}
    for i in eligible:
        sizes[entities[i].type] = sizes.get(entities[i].type, 0) + 1
    core = [i for i in eligible if sizes[entities[i].type] >= p.min_type_size]
    return core, [i for i in eligible if sizes[entities[i].type] < p.min_type_size]


def weights_of(freqs: np.ndarray, how: str) -> np.ndarray:
    freqs = np.asarray(freqs, dtype=np.float64)
    if how == "log":
        return np.log1p(freqs)
    if how == "uniform":
        return np.ones_like(freqs)
    return freqs


def aggregate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Frequency-weighted mean of unit vectors, re-normalised."""
    w = np.asarray(w, dtype=np.float64)
    v = (x.astype(np.float64) * (w / max(w.sum(), 1e-12))[:, None]).sum(axis=0)
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float32)


def k_range(n: int, p: BuildParams, levels_left: int | None = None) -> list[int]:
    """Candidate cluster counts for `n` items (empty: this level is small enough to stop).

    Hard bounds: k in [ceil(n / max_branching), n // min_branching]. With `levels_left` (clustering
    levels still allowed by the tier budget, this one included) the range is narrowed around the
    balanced branching b = n ** (1 / (levels_left + 1)) -- the fan-out that fills the remaining tiers
    evenly -- to k in [n / (b * slack), n / (b / slack)]. Silhouette then chooses inside that band:
    on sentence embeddings it rises almost monotonically with k (near-duplicate surface forms form
    tight tiny clusters), so an unbounded range always yields 3-member clusters and a flat top.
    """
    if n <= p.max_branching or n < 3:
        return []
    lo = max(2, math.ceil(n / p.max_branching))
    hi = min(n - 1, max(lo, n // p.min_branching))
    if levels_left and p.branching_slack > 0:
        b = n ** (1.0 / (levels_left + 1))
        lo = max(lo, min(hi, math.ceil(round(n / (b * p.branching_slack), 6))))
        hi = min(hi, max(lo, math.floor(round(n * p.branching_slack / b, 6))))
    ks = list(range(lo, hi + 1))
    if len(ks) > p.k_candidates:
        ks = sorted({int(round(v)) for v in np.geomspace(lo, hi, p.k_candidates)})
    return ks


def choose_k(x: np.ndarray, ks: list[int], *, seed: int, n_init: int = 4,
             sample: int = 3000) -> tuple[int, np.ndarray, dict[int, float]]:
    """(best k, its labels, silhouette per k): K-Means per candidate, highest silhouette wins
    (ties -> the smaller k). A candidate whose K-Means finds fewer distinct clusters (duplicate
    points) gets no score; if none scores, the smallest candidate is used with silhouette -1."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(x)
    scores: dict[int, float] = {}
    labels_by_k: dict[int, np.ndarray] = {}
    for k in ks:
        if not 2 <= k <= n - 1:
            continue
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
        labels = km.labels_
        labels_by_k[k] = labels
        if not 2 <= len(set(labels.tolist())) <= n - 1:
            continue
        kw = {"sample_size": sample, "random_state": seed} if n > sample else {}
        scores[k] = round(float(silhouette_score(x, labels, metric="euclidean", **kw)), 6)
    if not labels_by_k:
        raise ValueError(f"no valid k among {ks} for {n} points")
    if scores:
        best = max(scores, key=lambda k: (scores[k], -k))
    else:
        best = min(labels_by_k)
    return best, labels_by_k[best], scores


@dataclass
class _Item:
    """A node under construction: an entity or a cluster of items."""
    emb: np.ndarray
    freq: int
    entity: int | None = None            # index into entities for leaves
    children: list["_Item"] = field(default_factory=list)


def _cluster_levels(items: list[_Item], levels_left: int, p: BuildParams, seed: int,
                    group: str, stats: list[dict]) -> list[_Item]:
    """Cluster bottom-up until few enough items remain or the tier budget is spent; returns the
    top-level items (to hang under the group node)."""
    level = 0
    while levels_left > 0:
        ks = k_range(len(items), p, levels_left)
        if not ks:
            break
        x = np.stack([it.emb for it in items])
        k, labels, scores = choose_k(x, ks, seed=seed, n_init=p.kmeans_n_init, sample=p.silhouette_sample)
        level += 1
        stats.append({"group": group, "level": level, "n": len(items), "k_candidates": ks,
                      "silhouette": {str(kk): v for kk, v in sorted(scores.items())},
                      "chosen_k": k, "best_silhouette": scores.get(k, -1.0)})
        parents = []
        for c in sorted(set(labels.tolist())):
            members = [items[i] for i in np.flatnonzero(labels == c)]
            w = weights_of([m.freq for m in members], p.aggregation_weight)
            parents.append(_Item(aggregate(np.stack([m.emb for m in members]), w),
                                 sum(m.freq for m in members), None, members))
        items = parents
        levels_left -= 1
    return items


def build_core(entities: list[Entity], x: np.ndarray, core: list[int], p: BuildParams,
               seed: int, threads: int = 1) -> CoreTree:
    """The core tree over `core` (indices into entities/x), category nodes named locally."""
    from threadpoolctl import threadpool_limits

    stats: list[dict] = []
    groups: dict[str, list[int]] = {}
    for i in core:
        groups.setdefault(entities[i].type if p.type_tier else "", []).append(i)
    # entity leaves end at tier <= max_tiers - 1; categories above them
    group_tier = 1 if p.type_tier else 0
    levels_budget = p.max_tiers - 2 - group_tier
    tops: dict[str, list[_Item]] = {}
    with threadpool_limits(limits=max(1, threads)):
        for g in sorted(groups):
            items = [_Item(x[i], entities[i].count, i) for i in groups[g]]
            tops[g] = _cluster_levels(items, levels_budget, p, seed, g or "all", stats)

    tree = Tree()
    emb: dict[str, np.ndarray] = {}
    root_items = []
    tree.add(Node(ROOT_ID, ROOT_NAME, None, 0))

    def add_items(parent_id: str, tier: int, items: list[_Item]) -> None:
        cats = sorted((it for it in items if it.entity is None), key=lambda it: -it.freq)
        for j, it in enumerate(cats, 1):
            nid = f"{parent_id}.{j}" if parent_id != ROOT_ID else f"c{j}"
            tree.add(Node(nid, nid, parent_id, tier))
            emb[nid] = it.emb
            add_items(nid, tier + 1, it.children)
        for it in items:
            if it.entity is not None:
                e = entities[it.entity]
                tree.add(Node(f"e:{e.norm}", e.text, parent_id, tier, ENTITY, [e.norm], e.count, True))

    if p.type_tier:
        for j, g in enumerate(sorted(groups, key=lambda g: (-sum(it.freq for it in tops[g]), g)), 1):
            nid = f"c{j}"
            tree.add(Node(nid, _clean_name(g) or "Unknown", ROOT_ID, 1))
            w = weights_of([it.freq for it in tops[g]], p.aggregation_weight)
            emb[nid] = aggregate(np.stack([it.emb for it in tops[g]]), w)
            add_items(nid, 2, tops[g])
            root_items.append(_Item(emb[nid], sum(it.freq for it in tops[g])))
    else:
        top = tops.get("", [])
        add_items(ROOT_ID, 1, top)
        root_items = top
    if root_items:
        w = weights_of([it.freq for it in root_items], p.aggregation_weight)
        emb[ROOT_ID] = aggregate(np.stack([it.emb for it in root_items]), w)
    tree.refresh()
    name_locally(tree, emb, entities_by_norm={entities[i].norm: i for i in core}, x=x,
                 fixed={ROOT_ID} | ({n for n in tree.category_children(ROOT_ID)} if p.type_tier else set()))
    return CoreTree(tree, emb, stats)


def _clean_name(name: str) -> str:
    """Category names must be dot-free (insertion paths are dot-joined)."""
    return " ".join(name.replace(".", " ").split())[:80]


def subtree_entities(tree: Tree, node_id: str) -> list[str]:
    """Norms of every entity below `node_id`."""
    out, stack = [], [node_id]
    while stack:
        nid = stack.pop()
        n = tree.nodes[nid]
        if n.kind == ENTITY:
            out.append(n.members[0])
        stack.extend(tree.children.get(nid, []))
    return out


def central_members(tree: Tree, node_id: str, node_emb: np.ndarray, x: np.ndarray,
                    entities_by_norm: dict[str, int], k: int | None = None) -> list[str]:
    """Norms of the node's core subtree entities, most central (cosine to node_emb) first."""
    norms = sorted(n for n in subtree_entities(tree, node_id) if n in entities_by_norm)
    if not norms:
        return []
    sims = x[[entities_by_norm[n] for n in norms]] @ node_emb
    order = sorted(range(len(norms)), key=lambda i: (-round(float(sims[i]), 6), norms[i]))
    return [norms[i] for i in order[:k]]


def name_locally(tree: Tree, emb: dict[str, np.ndarray], entities_by_norm: dict[str, int],
                 x: np.ndarray, fixed: set[str]) -> None:
    """Name each category (except `fixed`) after its most central entity not used by an ancestor;
    names stay unique among siblings."""
    for node in list(tree.iter_preorder()):
        if node.kind != CATEGORY or node.id in fixed:
            continue
        used = {norm_name(tree.nodes[a].name) for a in tree.ancestors(node.id)}
        sibling_names = {norm_name(tree.nodes[s].name) for s in tree.category_children(node.parent)
                         if s != node.id and not tree.nodes[s].name.startswith(s)}
        cands = [_clean_name(tree.nodes[f"e:{norm}"].name)
                 for norm in central_members(tree, node.id, emb[node.id], x, entities_by_norm)]
        cands = [c for c in cands if c and norm_name(c) not in sibling_names]
        # prefer a name no ancestor carries; a path like "X.X" is still unambiguous, so fall back to it
        name = next((c for c in cands if norm_name(c) not in used), cands[0] if cands else None)
        node.name = unique_name(name or f"group {node.id.replace('.', '-')}", sibling_names)


def unique_name(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while norm_name(out) in taken:
        out = f"{name} ({i})"
        i += 1
    return out


@dataclass
class FrozenCore:
    """The core tree as the read-only anchor of Stage 3 (deferred insertion).

    Attachment decisions are made against this object only; insertions go to a separate working
    tree, so the core cannot change while a batch is being decided. `fingerprint` is checked again
    at the end of the stage.
    """
    tree: Tree
    ids: tuple[str, ...]                 # category ids, in preorder
    matrix: np.ndarray                   # unit embeddings of `ids`, read-only
    row: dict[str, int]
    type_nodes: dict[str, str]           # entity type -> tier-1 node id (when type_tier)
    fingerprint: str

    @classmethod
    def freeze(cls, core: CoreTree, type_tier: bool) -> "FrozenCore":
        tree = core.tree.copy()
        ids = tuple(n.id for n in tree.iter_preorder() if n.kind == CATEGORY and n.id in core.embeddings)
        matrix = np.stack([core.embeddings[i] for i in ids]) if ids else np.zeros((0, 384), np.float32)
        matrix = np.array(matrix, dtype=np.float32)
        matrix.setflags(write=False)
        types = {}
        if type_tier:
            types = {tree.nodes[c].name: c for c in tree.category_children(ROOT_ID)}
        return cls(tree, ids, matrix, {i: j for j, i in enumerate(ids)}, types, tree.fingerprint())

    def similarity(self, q: np.ndarray, node_ids: list[str]) -> np.ndarray:
        return self.matrix[[self.row[i] for i in node_ids]] @ q

    def render_paths(self, start: str | None = None, max_chars: int = 0) -> str:
        """Category paths (dot-joined names), one per line, in preorder; optionally one subtree."""
        lines = []
        for nid in self.ids:
            if nid == ROOT_ID:
                continue
            if start and start != ROOT_ID and start not in (nid, *self.tree.ancestors(nid)):
                continue
            lines.append(self.tree.path(nid))
        text = "\n".join(lines)
        if max_chars and len(text) > max_chars:
            text = text[:max_chars].rsplit("\n", 1)[0] + "\n..."
        return text
