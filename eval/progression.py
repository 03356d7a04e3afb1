"""Progression over checkpoints: which training stage moved which benchmark.

    python -m eval progression --root data/eval --out data/eval_progression
    python -m tasks.eval_progression [root=data/eval out=data/eval_progression]     (the DVC stage)

Reads `<root>/<checkpoint>/metrics.json` (one directory per checkpoint, as the `eval` stage writes
them), orders checkpoints by the pipeline (base, cpt, mid, sft, rl; unknown names after, by name)
and writes:
- progression.json   one row per (checkpoint, benchmark, mode) with its step index (long format);
- progression_plot.json  DVC plots data: one row per checkpoint, one field per benchmark (wide);
- progression_metrics.json  DVC metrics: <checkpoint>.<benchmark>.<mode> and the delta over the
  previous checkpoint (what that stage changed);
- progression.md, progression.csv, progression.png (one line per benchmark over checkpoints,
  category macro-averages, named category:<name>, dashed).

Imports nothing of the harness but `eval/__init__.py` (MODES, PRIMARY), so the `eval_progression`
stage's code dependencies are this file, that one and tasks/common.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from eval import MODES, PRIMARY
from tasks.common.io import write_json

STAGE_ORDER = ("base", "cpt", "mid", "mid_train", "sft", "rl")


@dataclasses.dataclass
class ProgressionConfig:
    """The `eval_progression:` params section."""
    root: str = "data/eval"                 # one <checkpoint>/metrics.json per evaluated checkpoint
    out: str = "data/eval_progression"


def checkpoint_order(names: list[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(STAGE_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def collect(root: str | Path) -> dict[str, dict]:
    root = Path(root)
    found = {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/metrics.json"))}
    return {n: found[n] for n in checkpoint_order(list(found))}


def table(metrics_by_ckpt: dict[str, dict]) -> list[dict]:
    rows = []
    for step, (ckpt, m) in enumerate(metrics_by_ckpt.items()):
        for name, entry in m.get("benchmarks", {}).items():
            for mode in MODES:
                if mode in entry:
                    rows.append({"checkpoint": ckpt, "step": step, "benchmark": name, "mode": mode,
                                 "score": round(entry[mode][PRIMARY[mode]], 6),
                                 "chance": round(entry[mode]["chance"], 6)})
        for cat, c in m.get("categories", {}).items():
            for mode in MODES:
                if mode in c:
                    rows.append({"checkpoint": ckpt, "step": step, "benchmark": f"category:{cat}", "mode": mode,
                                 "score": round(c[mode], 6), "chance": round(c.get(f"{mode}_chance", 0.0), 6)})
    return rows


def deltas(rows: list[dict]) -> dict:
    """<checkpoint>.<benchmark>.<mode>: {score, delta (vs the previous checkpoint that has it)}."""
    out: dict = {}
    last: dict[tuple[str, str], float] = {}
    for r in sorted(rows, key=lambda r: r["step"]):
        key = (r["benchmark"], r["mode"])
        cell = {"score": r["score"]}
        if key in last:
            cell["delta"] = round(r["score"] - last[key], 6)
        last[key] = r["score"]
        out.setdefault(r["checkpoint"], {}).setdefault(r["benchmark"], {})[r["mode"]] = cell
    return out


def wide(rows: list[dict]) -> list[dict]:
    """One row per checkpoint, one field per benchmark (generate score; `loglik_<name>` for acc_norm):
    the shape DVC plots draws as one line per field (`y: {file: [medqa, pubmedqa, ...]}`)."""
    out: dict[str, dict] = {}
    for r in rows:
        row = out.setdefault(r["checkpoint"], {"checkpoint": r["checkpoint"], "step": r["step"]})
        name = r["benchmark"].replace("category:", "category_")
        row[name if r["mode"] == "generate" else f"loglik_{name}"] = r["score"]
    return sorted(out.values(), key=lambda r: r["step"])


def markdown(rows: list[dict], ckpts: list[str]) -> str:
    lines = ["# Benchmark progression over checkpoints", "",
             "Scores in %; in brackets the change from the previous checkpoint (what that stage moved).", ""]
    for mode in MODES:
        mrows = [r for r in rows if r["mode"] == mode]
        if not mrows:
            continue
        lines += [f"## {mode} ({PRIMARY[mode]})", "", "| benchmark | chance | " + " | ".join(ckpts) + " |",
                  "|---|---|" + "---|" * len(ckpts)]
        for bench in dict.fromkeys(r["benchmark"] for r in mrows):
            cells, prev = [], None
            chance = next(r["chance"] for r in mrows if r["benchmark"] == bench)
            for c in ckpts:
                r = next((r for r in mrows if r["benchmark"] == bench and r["checkpoint"] == c), None)
                if r is None:
                    cells.append("")
                    continue
                d = "" if prev is None else f" ({100 * (r['score'] - prev):+.1f})"
                cells.append(f"{100 * r['score']:.1f}{d}")
                prev = r["score"]
            lines.append(f"| {bench} | {100 * chance:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], ckpts: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        mrows = [r for r in rows if r["mode"] == mode]
        for bench in dict.fromkeys(r["benchmark"] for r in mrows):
            pts = sorted((r["step"], 100 * r["score"]) for r in mrows if r["benchmark"] == bench)
            style = "--" if bench.startswith("category:") else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=bench)
        ax.set_xticks(range(len(ckpts)), ckpts)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"{mode} ({PRIMARY[mode]})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_progression(root: str | Path, out_dir: str | Path) -> dict:
    metrics = collect(root)
    if not metrics:
        raise FileNotFoundError(f"no <checkpoint>/metrics.json under {root}")
    ckpts = list(metrics)
    rows = table(metrics)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "progression.json", rows)
    write_json(out / "progression_plot.json", wide(rows))
    result = deltas(rows)
    write_json(out / "progression_metrics.json", result)
    (out / "progression.md").write_text(markdown(rows, ckpts), encoding="utf-8")
    with open(out / "progression.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["checkpoint", "step", "benchmark", "mode", "score", "chance"])
        w.writeheader()
        w.writerows(rows)
    plot(rows, ckpts, out / "progression.png")
    return {"checkpoints": ckpts, "rows": len(rows), "metrics": result}
