"""kg_overview.png: edges per relation type and source kind (log scale) and the node degree distribution."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from tasks.knowledge_graph.relations import ALL_RELATIONS
from tasks.knowledge_graph.sources import KINDS

_COLORS = {"cid": "#d1495b", "medquad": "#edae49", "pattern": "#00798c", "llm": "#66a182",
           "cooccurrence": "#8d96a3"}


def overview_plot(edges: list[dict], degrees: np.ndarray, path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter((e["relation"], e["kind"]) for e in edges)
    relations = [r for r in ALL_RELATIONS if any(counts[(r, k)] for k in KINDS)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    kinds = [k for k in KINDS if any(counts[(r, k)] for r in relations)]
    height = 0.8 / max(len(kinds), 1)
    y = np.arange(len(relations), dtype=float)
    for j, k in enumerate(kinds):               # grouped, not stacked: stacks mislead on a log axis
        rows = [(i, counts[(r, k)]) for i, r in enumerate(relations) if counts[(r, k)]]
        ax1.barh([y[i] + (j - (len(kinds) - 1) / 2) * height for i, _ in rows], [v for _, v in rows],
                 height=height, color=_COLORS[k], label=k)
    ax1.set_yticks(y, relations)
    ax1.set_xscale("log")
    ax1.invert_yaxis()
    ax1.set_xlabel("edges")
    if kinds:                                    # below the panels: no bar is hidden behind it
        fig.legend(*ax1.get_legend_handles_labels(), loc="lower center", ncol=len(kinds), fontsize=8)
    ax1.set_title("edges by relation and source")

    deg = degrees[degrees > 0]
    if len(deg):
        values, freq = np.unique(deg, return_counts=True)
        ax2.loglog(values, freq, "o", ms=3, color="#00798c")
    ax2.set_xlabel("degree (incident edges)")
    ax2.set_ylabel("nodes")
    ax2.set_title(f"degree distribution ({int((degrees == 0).sum())} isolated nodes)")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
