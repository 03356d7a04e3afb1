"""Draw the top tiers of the entity tree (tree_top.png) with matplotlib.

Left-to-right layout: tier = column, one row per displayed leaf, a parent centred on its children.
Only category nodes down to `max_tier` are drawn; a node shows at most `max_children` children by
frequency, the rest folded into a "+N more" stub, so the figure stays readable for any tree size.
"""

from __future__ import annotations

from pathlib import Path

from tasks.tree.model import CATEGORY, Tree


def render_top(tree: Tree, path: str | Path, *, max_tier: int = 2, max_children: int = 10,
               title: str = "Medical Entity Tree") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[tuple[str, int, str, int]] = []     # (key, tier, label, n entities)
    edges: list[tuple[str, str]] = []
    pos: dict[str, float] = {}
    leaves = [0]

    def next_leaf() -> float:
        leaves[0] += 1
        return float(leaves[0] - 1)

    def walk(nid: str) -> float:
        n = tree.nodes[nid]
        kids = [c for c in tree.sorted_children(nid) if tree.nodes[c].kind == CATEGORY] \
            if n.tier < max_tier else []
        shown, hidden = kids[:max_children], kids[max_children:]
        ys = [walk(c) for c in shown]
        for c in shown:
            edges.append((nid, c))
        if hidden:
            key = f"{nid}/more"
            pos[key] = next_leaf()
            rows.append((key, n.tier + 1, f"+{len(hidden)} more", sum(tree.nodes[h].frequency for h in hidden)))
            edges.append((nid, key))
            ys.append(pos[key])
        if ys:
            pos[nid] = sum(ys) / len(ys)
        else:
            pos[nid] = next_leaf()
        entities = len(n.members) if n.kind == CATEGORY else 1
        label = f"{n.name} ({n.frequency})"
        rows.append((nid, n.tier, label, entities))
        return pos[nid]

    walk(tree.root.id)
    n_leaves = max(1, leaves[0])
    fig_h = min(60.0, 0.32 * n_leaves + 1.5)
    fig, ax = plt.subplots(figsize=(4.2 * (max_tier + 1) + 1, fig_h))
    tiers = {key: tier for key, tier, _, _ in rows}
    for a, b in edges:
        ax.plot([tiers[a], tiers[b]], [pos[a], pos[b]], color="#9aa5b1", lw=0.8, zorder=1)
    colors = ["#1d3557", "#457b9d", "#2a9d8f", "#e9c46a", "#f4a261"]
    for key, tier, label, _ in rows:
        ax.scatter([tier], [pos[key]], s=18, color=colors[tier % len(colors)], zorder=2)
        ax.text(tier + 0.04, pos[key], label if len(label) <= 42 else label[:40] + "…", fontsize=7,
                va="center", ha="left", zorder=3)
    ax.set_xlim(-0.1, max_tier + 0.95)
    ax.set_ylim(n_leaves - 0.5, -0.5)
    ax.set_xticks(range(max_tier + 1), [f"tier {t}" for t in range(max_tier + 1)])
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    tier_counts = tree.tiers()
    ax.set_title(f"{title}: tiers {len(tier_counts)}, nodes per tier "
                 f"{', '.join(f'{t}:{c}' for t, c in tier_counts.items())} (name (frequency))", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)

