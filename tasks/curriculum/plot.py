"""The curriculum map: the 2-D UMAP projection coloured by cluster, annotated with the order.

    plot_order_map(coords_2d, placed_labels, is_noise, ranking, out / "order_map.png", title="...")

Each cluster is one colour (tab20, cycled); HDBSCAN noise points keep their assigned cluster's
colour but are drawn as small crosses, so the placement is visible. The curriculum position of
each cluster (1 = first, most compact) is written at its centroid, and arrows join the centroids
in training order: the path the schedule walks through the corpus.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from tasks.curriculum.order import NOISE, ClusterRank


def plot_order_map(coords: np.ndarray, labels: np.ndarray, is_noise: np.ndarray,
                   ranking: list[ClusterRank], path: str | Path, *, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 7))
    cmap = plt.get_cmap("tab20")
    centroids = []
    for c in ranking:
        members = c.members
        if not len(members):
            continue
        colour = (0.55, 0.55, 0.55, 1.0) if c.label == NOISE else cmap(c.rank % 20)
        core = members[~is_noise[members]] if c.label != NOISE else np.array([], int)
        noise = members[is_noise[members]]
        if len(core):
            ax.scatter(coords[core, 0], coords[core, 1], s=9, color=colour, alpha=0.75, linewidths=0,
                       label=f"#{c.rank + 1} cluster {c.label} (n={len(members)})")
        if len(noise):
            ax.scatter(coords[noise, 0], coords[noise, 1], s=14, color=colour, marker="x", alpha=0.8,
                       linewidths=0.8, label=None if len(core) else f"#{c.rank + 1} noise (n={len(noise)})")
        centre = coords[members].mean(axis=0)
        centroids.append(centre)
        ax.annotate(str(c.rank + 1), centre, fontsize=11, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "circle,pad=0.25", "fc": "white", "ec": colour[:3], "alpha": 0.9})
    for a, b in itertools.pairwise(centroids):
        ax.annotate("", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "black", "alpha": 0.5,
                                                    "shrinkA": 10, "shrinkB": 10})
    n_noise = int(is_noise.sum())
    ax.set_title(title or f"curriculum over {len(ranking)} clusters, {len(labels)} samples, "
                          f"{n_noise} noise points placed (x)")
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    if len(ranking) <= 20:
        ax.legend(fontsize=7, loc="best", markerscale=1.5, title="order: cluster (size)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
