"""The knowledge graph on disk and the loader later stages walk it with.

Files (data/kg/):
    nodes.jsonl   one line per tree entity, line i = node i (nodes sorted by norm): norm, name, type,
                  tree_node, tree_path (category names below the root), frequency, corpus mentions/docs,
                  degree, weighted_degree
    edges.jsonl   one line per edge, line i = edge i: head/tail (norm and node index), relation, kind,
                  directed, support, weight, provenance (doc ids, supporting sentences, pattern names,
                  qtypes, MeSH pairs, npmi ...)
    graph.npz     CSR adjacency over nodes: indptr (n+1), indices (neighbour node), edge_ids, weights,
                  forward (1 where the row node is the edge's head), cum_weights (running sum of
                  `weights` over the whole array, float64, for O(log d) weighted sampling)
    rejected_edges/part-*.jsonl   edges whose relation's type signature their head / tail types
                  break (tasks/knowledge_graph/signatures.py): one rejection entry per edge (reason,
                  detail, the edge with its provenance and node types as the record); never in
                  edges.jsonl or graph.npz
    edge_precision.json, edge_review_sample.jsonl   edge precision against held-out CID gold and
                  from reviewed labels; the sample to review (tasks/knowledge_graph/heldout.py, review.py)

Every edge appears in the rows of both its ends (walks go either way along a relation; `forward`
keeps the direction), so a row lists all incident edges, sorted by (neighbour, edge id).

Why CSR + one global running sum: a weighted step is one binary search inside the row's slice of
`cum_weights`, and many walks advance together as a handful of numpy operations per step
(`random_walks`); bench/bench_kg.py measures this against a plain dict-of-lists walker.
"""

from __future__ import annotations

import bisect
import dataclasses
import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tasks.common.io import dumps, read_jsonl

GRAPH_FILE, NODES_FILE, EDGES_FILE = "graph.npz", "nodes.jsonl", "edges.jsonl"


def build_csr(n_nodes: int, heads: Sequence[int], tails: Sequence[int], weights: Sequence[float]) -> dict:
    """CSR arrays for edges (heads[i], tails[i], weights[i]) = edge i, both directions per edge."""
    heads = np.asarray(heads, dtype=np.int64)
    tails = np.asarray(tails, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    eid = np.arange(len(heads), dtype=np.int64)
    loops = heads == tails
    if loops.any():
        raise ValueError(f"self-loop edges are not allowed: {eid[loops][:5].tolist()}")
    if (w <= 0).any() or not np.isfinite(w).all():
        raise ValueError("edge weights must be finite and > 0")
    rows = np.concatenate([heads, tails])
    cols = np.concatenate([tails, heads])
    ids = np.concatenate([eid, eid])
    fwd = np.concatenate([np.ones(len(heads), np.int8), np.zeros(len(heads), np.int8)])
    order = np.lexsort((ids, cols, rows))
    rows, cols, ids, fwd = rows[order], cols[order], ids[order], fwd[order]
    ww = w[ids]
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_nodes), out=indptr[1:])
    return {"indptr": indptr, "indices": cols.astype(np.int32), "edge_ids": ids.astype(np.int32),
            "weights": ww, "forward": fwd, "cum_weights": np.cumsum(ww)}


def write_graph(out: Path, nodes: list[dict], edges: list[dict]) -> dict:
    """nodes.jsonl, edges.jsonl and graph.npz; returns the CSR arrays."""
    csr = build_csr(len(nodes), [e["head_idx"] for e in edges], [e["tail_idx"] for e in edges],
                    [e["weight"] for e in edges])
    for name, rows in ((NODES_FILE, nodes), (EDGES_FILE, edges)):
        with open(out / name, "w", encoding="utf-8") as f:
            f.writelines(dumps(r) + "\n" for r in rows)
    save_npz(out / GRAPH_FILE, csr)
    return csr


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but byte-identical across runs: np.savez stamps each member with the
    current time, which would change the file's hash (and DVC's cache key) on every run."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


@dataclasses.dataclass(frozen=True)
class Neighbor:
    node: int
    edge: int
    weight: float
    forward: bool       # True: the edge runs from the queried node to `node`


@dataclasses.dataclass
class Walk:
    nodes: list[int]    # start first; shorter than length + 1 when the walk reached a node without edges
    edges: list[int]    # edges[i] joins nodes[i] and nodes[i + 1]


@dataclasses.dataclass
class Subgraph:
    nodes: list[int]
    edges: list[int]    # every edge with both ends in `nodes`, sorted


class KnowledgeGraph:
    """Read-only view of data/kg: `KnowledgeGraph.load(dir)`; nodes by index or norm."""

    def __init__(self, csr: dict, nodes: list[dict] | None = None, edges_path: Path | None = None):
        self.indptr = csr["indptr"]
        self.indices = csr["indices"]
        self.edge_ids = csr["edge_ids"]
        self.weights = csr["weights"]
        self.forward = csr["forward"]
        self.cum = csr["cum_weights"]
        self.n_nodes = len(self.indptr) - 1
        self.nodes = nodes
        self._by_norm = {n["norm"]: i for i, n in enumerate(nodes)} if nodes else {}
        self._edges_path = edges_path
        self._edges: list[dict] | None = None
        self._py: tuple[list, ...] | None = None
        # running sum before each row, so a row's total is cum[end-1] - base[row]
        self._base = np.concatenate([[0.0], self.cum])[self.indptr[:-1]]
        self._total = np.concatenate([[0.0], self.cum])[self.indptr[1:]] - self._base

    @classmethod
    def load(cls, directory: str | Path) -> KnowledgeGraph:
        d = Path(directory)
        with np.load(d / GRAPH_FILE) as z:
            csr = {k: z[k] for k in z.files}
        nodes = read_jsonl(d / NODES_FILE)
        if len(nodes) != len(csr["indptr"]) - 1:
            raise ValueError(f"{d}: {len(nodes)} nodes in {NODES_FILE} but the CSR has {len(csr['indptr']) - 1}")
        return cls(csr, nodes, d / EDGES_FILE)

    # -- lookups ----------------------------------------------------------------------------
    def node_index(self, node: int | str) -> int:
        if isinstance(node, (int, np.integer)):
            if not 0 <= node < self.n_nodes:
                raise KeyError(f"node index {node} out of range 0..{self.n_nodes - 1}")
            return int(node)
        if node not in self._by_norm:
            raise KeyError(f"no node with norm {node!r}")
        return self._by_norm[node]

    def edge(self, edge_id: int) -> dict:
        """The edge record (line `edge_id` of edges.jsonl, read on first use)."""
        if self._edges is None:
            if self._edges_path is None:
                raise ValueError("this graph was built without edges.jsonl")
            self._edges = read_jsonl(self._edges_path)
        return self._edges[edge_id]

    def degree(self, node: int | str) -> int:
        i = self.node_index(node)
        return int(self.indptr[i + 1] - self.indptr[i])

    def neighbors(self, node: int | str) -> list[Neighbor]:
        i = self.node_index(node)
        a, b = self.indptr[i], self.indptr[i + 1]
        return [Neighbor(int(n), int(e), float(w), bool(f)) for n, e, w, f in
                zip(self.indices[a:b], self.edge_ids[a:b], self.weights[a:b], self.forward[a:b])]

    # -- walks ------------------------------------------------------------------------------
    @staticmethod
    def _rng(rng) -> np.random.Generator:
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def _step(self, cur: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Positions in the CSR arrays chosen for nodes `cur` (all with edges) by uniforms `u`."""
        target = self._base[cur] + u * self._total[cur]
        pos = np.searchsorted(self.cum, target, side="right")
        # float rounding at a row's upper edge: stay inside the row
        return np.minimum(np.maximum(pos, self.indptr[cur]), self.indptr[cur + 1] - 1)

    def _lists(self) -> tuple[list, ...]:
        """The CSR as Python lists, built on first use: a single walk steps through them with
        bisect (C-level, no numpy scalar overhead per step), on the same float64 values as the
        batched walker, so both choose the same edges."""
        if self._py is None:
            self._py = (self.indptr.tolist(), self.cum.tolist(), self.indices.tolist(),
                        self.edge_ids.tolist(), self._base.tolist(), self._total.tolist())
        return self._py

    def random_walk(self, start: int | str, length: int, rng=None) -> Walk:
        """A weighted random walk of at most `length` steps from `start` (seeded by `rng`: a
        numpy Generator or a seed). The next edge is drawn with probability proportional to its
        weight among the current node's incident edges; same draws -> same walk as random_walks."""
        gen = self._rng(rng)
        cur = self.node_index(start)
        nodes, edges = [cur], []
        indptr, cum, indices, eids, base, total = self._lists()
        for u in gen.random(length).tolist():
            a, b = indptr[cur], indptr[cur + 1]
            if a == b:
                break
            pos = min(bisect.bisect_right(cum, base[cur] + u * total[cur], a, b), b - 1)
            edges.append(eids[pos])
            cur = indices[pos]
            nodes.append(cur)
        return Walk(nodes, edges)

    def random_walks(self, starts: Iterable[int | str], length: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
        """Many walks at once: (nodes [n, length+1], edges [n, length]), -1 after a walk ends."""
        gen = self._rng(rng)
        cur = np.array([self.node_index(s) for s in starts], dtype=np.int64)
        n = len(cur)
        nodes = np.full((n, length + 1), -1, dtype=np.int64)
        edges = np.full((n, length), -1, dtype=np.int64)
        nodes[:, 0] = cur
        alive = np.arange(n)
        for t in range(length):
            u = gen.random(n)                     # one draw per walk and step, alive or not: seeded layout
            alive = alive[self.indptr[cur[alive] + 1] > self.indptr[cur[alive]]]
            if not len(alive):
                break
            pos = self._step(cur[alive], u[alive])
            cur[alive] = self.indices[pos]
            nodes[alive, t + 1] = cur[alive]
            edges[alive, t] = self.edge_ids[pos]
        return nodes, edges

    def subgraph(self, nodes: Iterable[int | str]) -> Subgraph:
        """The induced subgraph: the given nodes and every edge between two of them."""
        idx = sorted({self.node_index(n) for n in nodes})
        inside = np.zeros(self.n_nodes, dtype=bool)
        inside[idx] = True
        found: set[int] = set()
        for i in idx:
            a, b = self.indptr[i], self.indptr[i + 1]
            sel = inside[self.indices[a:b]] & (self.forward[a:b] == 1)   # each edge once, from its head
            found.update(int(e) for e in self.edge_ids[a:b][sel])
        return Subgraph(idx, sorted(found))
