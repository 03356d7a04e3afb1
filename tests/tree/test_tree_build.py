"""Core tree construction on synthetic embeddings: silhouette picks the planted k, the tree keeps
to five tiers, every entity appears exactly once, and the build is deterministic."""

from __future__ import annotations

import numpy as np

from tasks.tree.attach import LocalAttacher, attach_all
from tasks.tree.build import BuildParams, FrozenCore, aggregate, build_core, choose_k, k_range, select_core
from tasks.tree.conflicts import EvidenceIndex, LocalResolver
from tasks.tree.embed import Entity, normalize_rows
from tasks.tree.model import ENTITY, validate_tree


def blobs(n_clusters: int, per: int, dim: int = 64, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = normalize_rows(rng.normal(size=(n_clusters, dim)))
    x = np.concatenate([c + spread * rng.normal(size=(per, dim)) for c in centers])
    return normalize_rows(x), np.repeat(np.arange(n_clusters), per)


def test_silhouette_picks_the_planted_k():
    for planted in (3, 5, 7):
        x, truth = blobs(planted, 12, seed=planted)
        k, labels, scores = choose_k(x, list(range(2, 11)), seed=0, n_init=4)
        assert k == planted, scores
        # the clusters found are the planted ones (a bijection between labels)
        pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
        assert len(pairs) == planted


def test_k_range_follows_branching_bounds():
    p = BuildParams(min_branching=3, max_branching=20, k_candidates=100)
    assert k_range(20, p) == []                 # small enough to hang under its parent
    assert k_range(60, p) == list(range(3, 21))
    p = BuildParams(min_branching=3, max_branching=20, k_candidates=5, branching_slack=0)
    ks = k_range(600, p)
    assert len(ks) <= 5 and ks[0] == 30 and ks[-1] == 200
    # with the tier budget: a band around the balanced branching b = 1000 ** (1/3) = 10
    p = BuildParams(min_branching=3, max_branching=20, k_candidates=100, branching_slack=2.0)
    ks = k_range(1000, p, levels_left=2)
    assert ks[0] == 50 and ks[-1] == 200
    assert k_range(1000, p, levels_left=1)[0] == 50      # clipped by max_branching
    assert k_range(1000, p, levels_left=1)[-1] == 63     # 1000 * 2 / sqrt(1000)


def test_aggregation_is_frequency_weighted():
    x = normalize_rows(np.array([[1.0, 0.0], [0.0, 1.0]]))
    v = aggregate(x, np.array([9.0, 1.0]))
    assert v[0] > 0.99 * np.hypot(*v) * 0.99 and v[0] > v[1] * 8
    assert abs(np.linalg.norm(v) - 1) < 1e-6


def synthetic_entities(n_clusters=6, per=30, seed=0):
    x, truth = blobs(n_clusters, per, spread=0.08, seed=seed)
    rng = np.random.default_rng(seed)
    ents = []
    for i in range(len(x)):
        count = int(rng.integers(1, 60))
        t = "Disease" if truth[i] % 2 == 0 else "Chemical"
        ents.append(Entity(f"ent {truth[i]} {i}", f"Ent {truth[i]} {i}", t, count, 1,
                           [{"text": f"Ent {truth[i]} {i}", "type": t, "count": count}]))
    order = sorted(range(len(ents)), key=lambda i: (-ents[i].count, ents[i].norm))
    return [ents[i] for i in order], x[order]


def build_and_attach(ents, x, p: BuildParams, seed=0):
    core_idx, _ = select_core(ents, p)
    core = build_core(ents, x, core_idx, p, seed)
    frozen = FrozenCore.freeze(core, p.type_tier)
    working = core.tree.copy()
    rest = [i for i in range(len(ents)) if i not in set(core_idx)]
    att = LocalAttacher(frozen, min_similarity=0.2, beam=2, conflict_margin=0.02)
    res = attach_all([ents[i] for i in rest], x[rest], frozen, working, att,
                     LocalResolver(frozen.tree, EvidenceIndex([])), batch_size=16, max_tiers=p.max_tiers)
    working.refresh()
    return core, frozen, working, res, core_idx


def test_tree_has_at_most_five_tiers_and_every_entity_once():
    ents, x = synthetic_entities()
    for type_tier in (True, False):
        p = BuildParams(core_top_n=90, core_min_count=1, type_tier=type_tier, min_branching=2,
                        max_branching=4, k_candidates=4, kmeans_n_init=2)
        core, frozen, working, res, core_idx = build_and_attach(ents, x, p)
        tree = validate_tree(working.to_json())          # the contract entity_map relies on
        assert max(tree.tiers()) <= 4 and len(tree.tiers()) <= 5
        norms = [n.members[0] for n in tree.nodes.values() if n.kind == ENTITY]
        unclassified = {u["entity"] for u in res.unclassified}
        assert len(norms) == len(set(norms))                      # exactly once in the tree
        assert set(norms) | unclassified == {e.norm for e in ents}  # ... or recorded as unclassified
        assert not set(norms) & unclassified
        assert sum(n.core for n in tree.nodes.values() if n.kind == ENTITY) == len(core_idx) == 90
        assert len(res.attachments) + len(res.unclassified) == len(ents) - 90
        # the budget forced clustering at every allowed level; entity leaves at the deepest tier
        assert 4 in tree.tiers() and core.levels and all(lv["chosen_k"] >= 2 for lv in core.levels)
        # the frozen core did not change while attaching
        assert frozen.tree.fingerprint() == frozen.fingerprint == core.tree.fingerprint()
        # frequencies aggregate bottom-up
        assert tree.root.frequency == sum(e.count for e in ents if e.norm in set(norms))


def test_build_is_deterministic_and_names_are_valid_paths():
    ents, x = synthetic_entities(seed=3)
    p = BuildParams(core_top_n=120, core_min_count=1, min_branching=3, max_branching=8,
                    k_candidates=4, kmeans_n_init=2)
    a = build_core(ents, x, select_core(ents, p)[0], p, seed=7)
    b = build_core(ents, x.copy(), select_core(ents, p)[0], p, seed=7)
    assert a.tree.fingerprint() == b.tree.fingerprint() and a.levels == b.levels
    tree = validate_tree(a.tree.to_json())
    for n in tree.nodes.values():
        if n.kind == "category" and n.parent is not None:
            assert tree.resolve_names(tree.path_names(n.id)) == n.id   # names form unique paths


def test_small_types_leave_the_core():
    ents, x = synthetic_entities()
    ents[0].type = "Rare"
    core, excluded = select_core(ents, BuildParams(core_top_n=50, core_min_count=1, min_type_size=5))
    assert excluded == [0] and 0 not in core and len(core) == 49
