"""What `sft_data` writes beside the samples: the consensus chart, the coverage grid as a table and a heat-map,
previews per source, and the summary's tables.

    write_outputs(built, out_dir, cfg) -> (summary parts, MLflow artifacts)
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tasks.common.io import write_json, write_jsonl
from tasks.sft_synthesis import grid as gr
from tasks.sft_synthesis.consensus import consensus_histogram


def consensus_chart(hist: dict, path) -> None:
    """Bar chart of the consensus scores of the voted candidates (agree / total per candidate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges, counts = hist["edges"], hist["counts"]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.bar([(a + b) / 2 for a, b in zip(edges, edges[1:])], counts, width=(edges[1] - edges[0]) * 0.9,
           color="#4c72b0")
    ax.set_xlabel("consensus (share of voting experts agreeing with the candidate's answer)")
    ax.set_ylabel("candidates")
    ax.set_title(f"{hist['scored']} candidates voted, {hist['unanimous']} unanimous")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write_outputs(built, out: Path, cfg) -> tuple[dict, list[tuple[str, str]]]:
    """consensus.jsonl, decontamination_report.jsonl, coverage_grid.csv/.png, grid_table.json, previews/ and
    consensus_histogram.png under `out`; returns the summary's consensus, grid and decontamination parts and
    the previews to log."""
    write_jsonl(out / "consensus.jsonl", built.records)
    write_jsonl(out / "decontamination_report.jsonl", built.decontam_report)
    with open(out / "coverage_grid.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["site", "disease", "band", "before", "after"])
        w.writeheader()
        w.writerows({k: r[k] for k in w.fieldnames} for r in built.grid_rows)
    gr.heatmap(built.grid_rows, out / "coverage_grid.png", cfg.grid.heatmap_top)
    previews = []
    for src in sorted({s["family"] for s in built.samples}):
        write_jsonl(out / "previews" / f"{src}.jsonl", [s for s in built.samples if s["family"] == src][: cfg.previews])
        previews.append((f"previews/{src}.jsonl", "sft_data/previews"))
    g = built.grid_table
    before_bands, after_bands = Counter(), Counter()
    for r in built.grid_rows:
        before_bands[r["band"]] += r["before"]
        after_bands[r["band"]] += r["after"]
    hist = consensus_histogram(built.records)
    consensus_chart(hist, out / "consensus_histogram.png")
    parts = {
        # the histogram as named bins (MLflow keeps numbers under names, not lists)
        "consensus": {**{k: hist[k] for k in ("scored", "no_votes", "mean_score", "unanimous")},
                      "histogram": {f"{lo:.1f}-{hi:.1f}": n for lo, hi, n in
                                    zip(hist["edges"], hist["edges"][1:], hist["counts"])}},
        "review_queue": built.queue,
        "grid": {"cells_before": len(g["before"]), "cells_after": sum(1 for v in g["after"].values() if v),
                 "target": g["target"], "tail_threshold": g["tail_threshold"], "repeats": g["repeats"],
                 "trained_rows": len(built.samples) + g["repeats"],
                 "rows_before_by_band": dict(sorted(before_bands.items())),
                 "rows_after_by_band": dict(sorted(after_bands.items()))},
        "decontamination": {"collisions": len(built.decontam_report),
                            "by_benchmark": dict(sorted(Counter(r["benchmark"] for r in built.decontam_report).items()))},
    }
    write_json(out / "grid_table.json", built.grid_rows)
    return parts, previews
