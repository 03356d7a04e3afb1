"""Benchmark the knowledge graph's weighted random walks: steps/s of the CSR walkers vs a plain
dict-of-lists walker, measured in the same run on the same graph and start nodes.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_kg.py [--kg data/kg] [--walks 20000] [--length 8]

- csr batched: KnowledgeGraph.random_walks (all walks advance together; one searchsorted per step);
- csr single:  KnowledgeGraph.random_walk, one walk at a time (what a caller looping in Python gets);
- dict-of-lists: {node: [(neighbour, edge, weight), ...]} with random.choices(weights=...) per step;
- dict + cum:  the same dict with precomputed per-node cumulative weights (random.choices(cum_weights=)),
               the strongest pure-Python baseline.
Without --kg (or if data/kg does not exist) a seeded synthetic graph with power-law degrees is used.
Each number is the best of --repeats; the ratio is csr / dict-of-lists.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.knowledge_graph.graph import KnowledgeGraph, build_csr


def synthetic(n_nodes: int, n_edges: int, seed: int) -> KnowledgeGraph:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_nodes + 1) ** 0.8            # a few hubs, a long tail
    p /= p.sum()
    heads = rng.choice(n_nodes, n_edges, p=p)
    tails = rng.choice(n_nodes, n_edges, p=p)
    keep = heads != tails
    return KnowledgeGraph(build_csr(n_nodes, heads[keep], tails[keep], rng.uniform(0.2, 3.0, keep.sum())))


def dict_of_lists(g: KnowledgeGraph) -> dict[int, list[tuple[int, int, float]]]:
    adj: dict[int, list[tuple[int, int, float]]] = {}
    for i in range(g.n_nodes):
        a, b = g.indptr[i], g.indptr[i + 1]
        adj[i] = list(zip(g.indices[a:b].tolist(), g.edge_ids[a:b].tolist(), g.weights[a:b].tolist()))
    return adj


def dict_walks(adj, starts, length: int, seed: int, cum: dict | None = None) -> int:
    rnd = random.Random(seed)
    steps = 0
    for s in starts:
        cur = s
        for _ in range(length):
            nbrs = adj[cur]
            if not nbrs:
                break
            if cum is None:
                cur = rnd.choices(nbrs, weights=[w for _, _, w in nbrs])[0][0]
            else:
                cur = rnd.choices(nbrs, cum_weights=cum[cur])[0][0]
            steps += 1
    return steps


def best(fn, repeats: int) -> tuple[float, int]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        steps = fn()
        out.append((time.perf_counter() - t0, steps))
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kg", default="data/kg")
    ap.add_argument("--walks", type=int, default=20000)
    ap.add_argument("--length", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    if Path(args.kg, "graph.npz").exists():
        g, what = KnowledgeGraph.load(args.kg), f"{args.kg}"
    else:
        g, what = synthetic(20000, 150000, args.seed), "synthetic (20k nodes, 150k edges)"
    has_edges = np.flatnonzero(np.diff(g.indptr) > 0)
    rng = np.random.default_rng(args.seed)
    starts = rng.choice(has_edges, args.walks).tolist()
    adj = dict_of_lists(g)
    cum = {i: list(itertools.accumulate(w for _, _, w in nbrs)) for i, nbrs in adj.items()}

    def csr_batched():
        _, edges = g.random_walks(starts, args.length, args.seed)
        return int((edges >= 0).sum())

    def csr_single():
        gen = np.random.default_rng(args.seed)
        return sum(len(g.random_walk(s, args.length, gen).edges) for s in starts)

    rows = {"csr batched": best(csr_batched, args.repeats),
            "csr single": best(csr_single, args.repeats),
            "dict-of-lists": best(lambda: dict_walks(adj, starts, args.length, args.seed), args.repeats),
            "dict + cum": best(lambda: dict_walks(adj, starts, args.length, args.seed, cum), args.repeats)}
    print(f"graph: {what}: {g.n_nodes} nodes, {len(g.indices) // 2} edges; {args.walks} walks x {args.length} steps")
    base = rows["dict-of-lists"][1] / rows["dict-of-lists"][0]
    for name, (sec, steps) in rows.items():
        rate = steps / sec
        print(f"  {name:14s} {rate / 1e6:8.3f} M steps/s   ({steps} steps in {sec:.3f} s)   x{rate / base:.2f}")


if __name__ == "__main__":
    main()
