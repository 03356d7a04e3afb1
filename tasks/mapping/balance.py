"""Entity-balanced sampling weights, distribution statistics, sparse domains, the long-tail plot.

Weights (tempered inverse frequency): for a document d with distinct entities E_d,
    raw(d) = mean_{e in E_d} freq(e)^(-T)
with freq(e) the entity's corpus mention count and T the temperature (0 = uniform, 1 = full inverse).
Raw weights of documents with entities are scaled so they average 1; documents without entities
get weight 1, so the whole manifest averages 1 and an entity-free document is sampled as before.
"Before" / "after" distributions: f(e) = sum_d c_{d,e} and f_w(e) = sum_d w_d c_{d,e}.
"""

from __future__ import annotations

import math

import numpy as np

from tasks.common.stats import gini


def doc_weights(doc_entities: list[dict[str, int]], freq: dict[str, int], temperature: float) -> list[float]:
    """`doc_entities[i]` = {norm: count in doc i}; returns one weight per document."""
    raw = []
    for ents in doc_entities:
        raw.append(float(np.mean([freq[e] ** (-temperature) for e in ents])) if ents else None)
    vals = [r for r in raw if r is not None]
    scale = (len(vals) / sum(vals)) if vals and sum(vals) > 0 else 1.0
    return [1.0 if r is None else r * scale for r in raw]


def entropy(values) -> tuple[float, float]:
    """(Shannon entropy in bits, normalised by log2(n))."""
    x = np.asarray(list(values), dtype=np.float64)
    x = x[x > 0]
    if len(x) == 0:
        return 0.0, 0.0
    p = x / x.sum()
    h = float(-(p * np.log2(p)).sum())
    return h, (h / math.log2(len(x)) if len(x) > 1 else 1.0)


def distribution_stats(doc_entities: list[dict[str, int]], weights: list[float]) -> dict:
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    for ents, w in zip(doc_entities, weights):
        for e, c in ents.items():
            before[e] = before.get(e, 0) + c
            after[e] = after.get(e, 0) + w * c
    out = {}
    for name, dist in (("before", before), ("after", after)):
        h, hn = entropy(dist.values())
        out[name] = {"gini": round(gini(dist.values()), 4), "entropy_bits": round(h, 4),
                     "entropy_norm": round(hn, 4)}
    return out


def sparse_domains(tree, node_docs: dict[str, int], node_mentions: dict[str, int], bottom_n: int) -> list[dict]:
    """Category nodes (root excluded) with the fewest documents mapped under them, ties by id."""
    rows = []
    for n in tree.nodes.values():
        if n.kind != "category" or n.parent is None:
            continue
        n_ent = 0
        stack = [n.id]
        while stack:
            c = stack.pop()
            for ch in tree.children.get(c, []):
                if tree.nodes[ch].kind == "entity":
                    n_ent += 1
                else:
                    stack.append(ch)
        rows.append({"node": n.id, "path": tree.path(n.id), "tier": n.tier, "docs": node_docs.get(n.id, 0),
                     "mentions": node_mentions.get(n.id, 0), "entities_in_subtree": n_ent,
                     "tree_frequency": n.frequency})
    rows.sort(key=lambda r: (r["docs"], r["mentions"], r["node"]))
    return rows[:bottom_n]


def long_tail_plot(counts: list[int], path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = sorted((c for c in counts if c > 0), reverse=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if y:
        ax.loglog(np.arange(1, len(y) + 1), y, marker=".", linestyle="-", markersize=3)
    ax.set_xlabel("entity rank")
    ax.set_ylabel("mentions in corpus")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
