"""The CSR graph and its loader: consistency with the edge list, seeded weighted walks, subgraphs,
byte-identical graph.npz."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tasks.knowledge_graph.graph import KnowledgeGraph, build_csr, save_npz, write_graph

# 0 -- 1 (w 1), 0 -- 2 (w 3), 1 -- 2 (w 1), 2 -- 3 (w 2); node 4 isolated
HEADS, TAILS, WEIGHTS = [0, 0, 1, 3], [1, 2, 2, 2], [1.0, 3.0, 1.0, 2.0]


def small_graph(tmp_path=None) -> KnowledgeGraph:
    nodes = [{"norm": f"n{i}"} for i in range(5)]
    if tmp_path is None:
        return KnowledgeGraph(build_csr(5, HEADS, TAILS, WEIGHTS), nodes)
    edges = [{"id": i, "head_idx": h, "tail_idx": t, "weight": w}
             for i, (h, t, w) in enumerate(zip(HEADS, TAILS, WEIGHTS))]
    write_graph(tmp_path, nodes, edges)
    return KnowledgeGraph.load(tmp_path)


def test_csr_lists_every_edge_in_both_rows(tmp_path):
    g = small_graph(tmp_path)
    assert g.indptr.tolist() == [0, 2, 4, 7, 8, 8]
    assert [(n.node, n.edge, n.weight, n.forward) for n in g.neighbors("n2")] == [
        (0, 1, 3.0, False), (1, 2, 1.0, False), (3, 3, 2.0, False)]
    assert [(n.node, n.forward) for n in g.neighbors(3)] == [(2, True)]
    assert g.neighbors("n4") == [] and g.degree(0) == 2
    assert np.allclose(g.cum, np.cumsum(g.weights))
    with pytest.raises(KeyError):
        g.neighbors("nope")
    with pytest.raises(ValueError, match="self-loop"):
        build_csr(2, [0], [0], [1.0])
    with pytest.raises(ValueError, match="> 0"):
        build_csr(2, [0], [1], [0.0])


def test_random_walk_is_seeded_and_follows_edges():
    g = small_graph()
    a = g.random_walk("n0", 20, 7)
    assert a == g.random_walk(0, 20, np.random.default_rng(7))
    assert a != g.random_walk(0, 20, 8)
    assert len(a.nodes) == 21 and len(a.edges) == 20
    pairs = {frozenset((h, t)): i for i, (h, t) in enumerate(zip(HEADS, TAILS))}
    for x, y, e in zip(a.nodes, a.nodes[1:], a.edges):
        assert pairs[frozenset((x, y))] == e
    assert g.random_walk("n4", 5, 1).nodes == [4]                # no edges: the walk stays put and ends


def test_batched_walks_match_single_walks_and_weights():
    g = small_graph()
    nodes, edges = g.random_walks([0], 15, 3)
    single = g.random_walk(0, 15, 3)
    assert nodes[0].tolist() == single.nodes and edges[0].tolist() == single.edges
    nodes, edges = g.random_walks([4, 1, 1], 4, 5)
    assert nodes[0].tolist() == [4, -1, -1, -1, -1] and edges[0].tolist() == [-1] * 4
    again = g.random_walks([4, 1, 1], 4, 5)
    assert (again[0] == nodes).all() and (again[1] == edges).all()
    # one step from node 2: neighbours 0, 1, 3 with weights 3, 1, 2
    steps, _ = g.random_walks([2] * 60_000, 1, 11)
    freq = Counter(steps[:, 1].tolist())
    assert [round(freq[k] / 60_000, 2) for k in (0, 1, 3)] == pytest.approx([0.5, 0.167, 0.333], abs=0.01)


def test_subgraph_is_induced():
    g = small_graph()
    sub = g.subgraph(["n2", 0, "n1"])
    assert sub.nodes == [0, 1, 2] and sub.edges == [0, 1, 2]
    assert g.subgraph([3, 4]).edges == []


def test_npz_is_byte_identical_and_loadable(tmp_path):
    arrays = build_csr(5, HEADS, TAILS, WEIGHTS)
    save_npz(tmp_path / "a.npz", arrays)
    save_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        assert sorted(z.files) == sorted(arrays) and (z["indices"] == arrays["indices"]).all()
