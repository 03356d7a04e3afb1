"""Progression over checkpoints: which training stage moved which benchmark, and whether the move is
larger than the noise.

    python -m eval progression --root data/eval --out data/eval_progression
    python -m tasks.eval_progression [root=data/eval out=data/eval_progression]     (the DVC stage)

Reads `<root>/<checkpoint>/metrics.json` (one directory per checkpoint, as the `eval` stage writes
them), orders checkpoints by the pipeline (base, cpt, mid, sft, rl; unknown names after, by name)
and writes:
- progression.json   one row per (checkpoint, benchmark, mode) with its step index (long format): the
  score with its 95% interval, and the delta over the previous checkpoint with the interval of the
  difference and whether it is significant;
- progression_plot.json  DVC plots data: one row per checkpoint, one field per benchmark (wide);
- progression_metrics.json  DVC metrics: <checkpoint>.<benchmark>.<mode>.{score, score_ci_low,
  score_ci_high, delta, delta_ci_low, delta_ci_high, delta_significant (0/1)}: what that stage changed
  (also <checkpoint>.<benchmark>.<mode>_parse_failure_rate.{...} and <checkpoint>.instruct.<score>.{...});
- held-out medical perplexity (metrics.json `heldout_perplexity`, eval/heldout.py) as rows of the
  pseudo-mode `perplexity`, benchmark `heldout:<data kind>`: lower is better, the change tested on
  the log scale;
- parse failures per benchmark and mode (metrics.json `parse_failures` of `n`) as rows of the
  pseudo-mode `<mode>_parse_failure_rate`: a proportion with its Wilson interval, the change with
  Newcombe's (lower is better);
- instruction following (metrics.json `instruct`, eval/instruct.py) as rows of benchmark `instruct`,
  one pseudo-mode per score (`INSTRUCT_METRICS`: IFEval's prompt / instruction strict / loose and the
  multi-turn persistence strict / loose), proportions as above; a checkpoint evaluated before the
  instruction-following benchmark existed shows "n/a";
- progression.md, progression.csv, progression.png (one line per benchmark over checkpoints with its
  interval band; category macro-averages, named category:<name>, dashed).

The interval of a delta (eval/intervals.py): Newcombe's hybrid score interval when both scores are
proportions (metrics.json has `<score>_correct`, k of n, beside them), else the normal approximation
from the two bootstrap intervals. A change is significant when that interval excludes 0. Checkpoints
answer the same items but only their intervals are read here, so the scores are treated as
independent: conservative, never overclaiming. A metrics.json without intervals (an older eval
output) still gives scores and deltas, without intervals or marks.

Imports nothing of the harness but `eval/__init__.py` (MODES, PRIMARY) and `eval/intervals.py`
(standard library and numpy), so the `eval_progression` stage's code dependencies are this file,
those two and tasks/common.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

from eval import MODES, PRIMARY
from eval.intervals import diff_normal, newcombe_from_intervals, significant, wilson
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


def _row(ckpt: str, step: int, bench: str, mode: str, e: dict, key: str, chance: float, proportion: bool) -> dict:
    row = {"checkpoint": ckpt, "step": step, "benchmark": bench, "mode": mode, "score": round(e[key], 6),
           "chance": round(chance, 6)}
    if f"{key}_ci_low" in e and f"{key}_ci_high" in e:
        row.update(score_ci_low=round(e[f"{key}_ci_low"], 6), score_ci_high=round(e[f"{key}_ci_high"], 6),
                   interval="wilson" if proportion else "bootstrap")
    return row


def table(metrics_by_ckpt: dict[str, dict]) -> list[dict]:
    """One row per (checkpoint, benchmark or category, mode), each with the change over the previous
    checkpoint that has the same benchmark and mode (`add_deltas`)."""
    rows = []
    for step, (ckpt, m) in enumerate(metrics_by_ckpt.items()):
        for name, entry in m.get("benchmarks", {}).items():
            for mode in MODES:
                if mode in entry:
                    e, key = entry[mode], PRIMARY[mode]
                    # `<key>_correct` (k of n) marks a proportion: its interval is Wilson's
                    rows.append(_row(ckpt, step, name, mode, e, key, e["chance"], f"{key}_correct" in e))
        for cat, c in m.get("categories", {}).items():
            for mode in MODES:
                if mode in c:
                    rows.append(_row(ckpt, step, f"category:{cat}", mode, c, mode, c.get(f"{mode}_chance", 0.0),
                                     proportion=False))
        for kind, e in m.get("heldout_perplexity", {}).items():
            row = _row(ckpt, step, f"heldout:{kind}", PERPLEXITY, e, "ppl", 0.0, proportion=False)
            rows.append({**row, "interval": "bootstrap_log"} if "score_ci_low" in row else row)
        rows += parse_failure_rows(ckpt, step, m) + instruct_rows(ckpt, step, m)
    return add_deltas(rows)


PARSE_SUFFIX = "_parse_failure_rate"     # pseudo-mode of the parse-failure rows: <mode>_parse_failure_rate


def parse_failure_rows(ckpt: str, step: int, m: dict) -> list[dict]:
    """Per benchmark and mode: the parse-failure rate (k of n) with its Wilson interval. k is
    `parse_failures`, or the rate x n for a metrics.json that stored only the rate."""
    rows = []
    for name, entry in m.get("benchmarks", {}).items():
        for mode in MODES:
            e = entry.get(mode) or {}
            n = e.get("n", 0)
            k = e.get("parse_failures", round(e["parse_failure_rate"] * n) if "parse_failure_rate" in e else None)
            if not n or k is None:
                continue
            lo, hi = wilson(k, n)
            rows.append({"checkpoint": ckpt, "step": step, "benchmark": name, "mode": mode + PARSE_SUFFIX,
                         "score": round(k / n, 6), "chance": 0.0, "score_ci_low": round(lo, 6),
                         "score_ci_high": round(hi, 6), "interval": "wilson"})
    return rows


INSTRUCT = "instruct"                    # the benchmark name of the instruction-following rows
# metric -> where it sits in metrics.json `instruct` (eval/instruct.py aggregate)
INSTRUCT_METRICS = {"prompt_strict": (), "prompt_loose": (), "instruction_strict": (), "instruction_loose": (),
                    "persistence_strict": ("multi_turn",), "persistence_loose": ("multi_turn",)}


def instruct_rows(ckpt: str, step: int, m: dict) -> list[dict]:
    """The instruction-following scores of one checkpoint (none when its metrics.json has no `instruct`
    or nothing was scored); `<metric>_correct` marks a proportion (Wilson, Newcombe for the change)."""
    rows = []
    for metric, path in INSTRUCT_METRICS.items():
        e = m.get(INSTRUCT) or {}
        for key in path:
            e = e.get(key) or {}
        if metric in e:
            rows.append(_row(ckpt, step, INSTRUCT, metric, e, metric, 0.0, f"{metric}_correct" in e))
    return rows


# Held-out perplexity (eval/heldout.py) rides along as a pseudo-mode: lower is better, and its
# bootstrap interval is skewed, so the change is tested on the log scale (a ratio of perplexities).
PERPLEXITY = "perplexity"


def add_deltas(rows: list[dict]) -> list[dict]:
    """Each row's delta over the previous checkpoint with the same (benchmark, mode), and, when both
    have intervals, the interval of that difference and whether it excludes 0."""
    last: dict[tuple[str, str], dict] = {}
    for r in sorted(rows, key=lambda r: r["step"]):
        key = (r["benchmark"], r["mode"])
        prev = last.get(key)
        last[key] = r
        if prev is None:
            continue
        r["delta"] = round(r["score"] - prev["score"], 6)
        if "score_ci_low" not in r or "score_ci_low" not in prev:
            continue
        both = (r["score"], r["score_ci_low"], r["score_ci_high"], prev["score"], prev["score_ci_low"],
                prev["score_ci_high"])
        if r["interval"] == prev["interval"] == "wilson":
            lo, hi = newcombe_from_intervals(*both)
        elif r["interval"] == prev["interval"] == "bootstrap_log":
            log_lo, log_hi = diff_normal(*(math.log(max(v, 1e-12)) for v in both))
            lo, hi = prev["score"] * math.expm1(log_lo), prev["score"] * math.expm1(log_hi)
        else:
            lo, hi = diff_normal(*both)
        r.update(delta_ci_low=round(lo, 6), delta_ci_high=round(hi, 6), delta_significant=int(significant(lo, hi)))
    return rows


DELTA_KEYS = ("delta", "delta_ci_low", "delta_ci_high", "delta_significant")


def deltas(rows: list[dict]) -> dict:
    """<checkpoint>.<benchmark>.<mode>: {score, its interval, delta (vs the previous checkpoint that has
    it), the interval of the delta, delta_significant (1: the interval excludes 0)}."""
    out: dict = {}
    for r in sorted(rows, key=lambda r: r["step"]):
        cell = {k: r[k] for k in ("score", "score_ci_low", "score_ci_high", *DELTA_KEYS) if k in r}
        out.setdefault(r["checkpoint"], {}).setdefault(r["benchmark"], {})[r["mode"]] = cell
    return out


def wide(rows: list[dict]) -> list[dict]:
    """One row per checkpoint, one field per benchmark (generate score; `loglik_<name>` for acc_norm):
    the shape DVC plots draws as one line per field (`y: {file: [medqa, pubmedqa, ...]}`)."""
    out: dict[str, dict] = {}
    for r in rows:
        row = out.setdefault(r["checkpoint"], {"checkpoint": r["checkpoint"], "step": r["step"]})
        if r["benchmark"] == INSTRUCT and r["mode"] in INSTRUCT_METRICS:
            row[f"{INSTRUCT}_{r['mode']}"] = r["score"]
            continue
        prefix = {"generate": "", "loglik": "loglik_", PERPLEXITY: "ppl_"}.get(r["mode"])
        if prefix is None:              # parse-failure rates: in the long table and the metrics only
            continue
        name = r["benchmark"].replace("category:", "category_")
        row[prefix + name.replace("heldout:", "")] = r["score"]
    return sorted(out.values(), key=lambda r: r["step"])


MARKS = {1: "▲", -1: "▼", 0: "~"}


def mark(row: dict) -> str:
    """▲ / ▼: the change's interval lies above / below 0; ~: it contains 0; "" when there is no interval."""
    if "delta_significant" not in row:
        return ""
    return MARKS[0 if not row["delta_significant"] else 1 if row["delta"] > 0 else -1]


def cell(row: dict, scale: float = 100.0, digits: int = 1) -> str:
    """`50.0 [43.1, 56.9] (+20.0 [10.3, 29.7] ▲)`: score, interval, change, its interval, mark (in %
    by default; perplexities with scale 1 and two digits)."""
    def ci(lo: str, hi: str) -> str:
        return f" [{scale * row[lo]:.{digits}f}, {scale * row[hi]:.{digits}f}]" if lo in row else ""

    text = f"{scale * row['score']:.{digits}f}{ci('score_ci_low', 'score_ci_high')}"
    if "delta" in row:
        m = mark(row)
        text += f" ({scale * row['delta']:+.{digits}f}{ci('delta_ci_low', 'delta_ci_high')}{' ' + m if m else ''})"
    return text


def markdown(rows: list[dict], ckpts: list[str]) -> str:
    lines = ["# Benchmark progression over checkpoints", "",
             "Scores in % with their 95% interval in brackets; in parentheses the change from the previous "
             "checkpoint (what that stage moved) with the 95% interval of the change.", "",
             "▲ significant rise, ▼ significant fall, ~ not significant (the change's interval contains 0).", ""]
    for mode in MODES:
        mrows = [r for r in rows if r["mode"] == mode]
        if not mrows:
            continue
        lines += [f"## {mode} ({PRIMARY[mode]})", "", "| benchmark | chance | " + " | ".join(ckpts) + " |",
                  "|---|---|" + "---|" * len(ckpts)]
        for bench in dict.fromkeys(r["benchmark"] for r in mrows):
            cells = []
            chance = next(r["chance"] for r in mrows if r["benchmark"] == bench)
            for c in ckpts:
                r = next((r for r in mrows if r["benchmark"] == bench and r["checkpoint"] == c), None)
                cells.append("" if r is None else cell(r))
            lines.append(f"| {bench} | {100 * chance:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    prows = [r for r in rows if r["mode"] == PERPLEXITY]
    if prows:
        lines += ["## held-out medical perplexity (lower is better)", "",
                  "The CPT corpus's held-out split, never trained on, per data kind; the change's interval "
                  "is computed on the log scale.", "", "| data kind | " + " | ".join(ckpts) + " |",
                  "|---|" + "---|" * len(ckpts)]
        for kind in dict.fromkeys(r["benchmark"] for r in prows):
            cells = [next((cell(r, scale=1.0, digits=2) for r in prows if r["benchmark"] == kind and r["checkpoint"] == c), "")
                     for c in ckpts]
            lines.append(f"| {kind.removeprefix('heldout:')} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _parse_failure_lines(rows, ckpts) + _instruct_lines(rows, ckpts)
    return "\n".join(lines)


def _cell_or_na(rows: list[dict], ckpt: str, bench: str, mode: str) -> str:
    r = next((r for r in rows if r["checkpoint"] == ckpt and r["benchmark"] == bench and r["mode"] == mode), None)
    return "n/a" if r is None else cell(r)


def _parse_failure_lines(rows: list[dict], ckpts: list[str]) -> list[str]:
    prows = [r for r in rows if r["mode"].endswith(PARSE_SUFFIX)]
    if not prows:
        return []
    lines = ["## Parse failures (rate in %, lower is better)", "",
             "Answers the parser could not read (scored as wrong), per benchmark and mode; here ▲ is a "
             "significant rise in failures. n/a: the checkpoint has no such result.", "",
             "| benchmark | mode | " + " | ".join(ckpts) + " |", "|---|---|" + "---|" * len(ckpts)]
    for bench, mode in dict.fromkeys((r["benchmark"], r["mode"]) for r in prows):
        cells = [_cell_or_na(prows, c, bench, mode) for c in ckpts]
        lines.append(f"| {bench} | {mode.removesuffix(PARSE_SUFFIX)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _instruct_lines(rows: list[dict], ckpts: list[str]) -> list[str]:
    irows = [r for r in rows if r["benchmark"] == INSTRUCT and r["mode"] in INSTRUCT_METRICS]
    if not irows:
        return []
    lines = ["## Instruction following (IFEval-style, %)", "",
             "Prompt: every constraint of a single-turn prompt holds; instruction: each constraint; "
             "persistence: every turn-1 constraint of a conversation still holds in turn 3. Strict: the reply "
             "as given; loose: IFEval's loose variants. n/a: the checkpoint was not evaluated on it.", "",
             "| score | " + " | ".join(ckpts) + " |", "|---|" + "---|" * len(ckpts)]
    for metric in INSTRUCT_METRICS:
        if any(r["mode"] == metric for r in irows):
            lines.append(f"| {metric} | " + " | ".join(_cell_or_na(irows, c, INSTRUCT, metric) for c in ckpts) + " |")
    return lines + [""]



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
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=bench)
            band = sorted((r["step"], 100 * r["score_ci_low"], 100 * r["score_ci_high"]) for r in mrows
                          if r["benchmark"] == bench and "score_ci_low" in r)
            if len(band) == len(pts):
                ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                                color=line.get_color(), alpha=0.12, linewidth=0)
        ax.set_xticks(range(len(ckpts)), ckpts)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"{mode} ({PRIMARY[mode]})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CSV_COLUMNS = ("checkpoint", "step", "benchmark", "mode", "score", "chance", "score_ci_low", "score_ci_high",
               "interval", *DELTA_KEYS)


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
        w = csv.DictWriter(f, CSV_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    plot(rows, ckpts, out / "progression.png")
    return {"checkpoints": ckpts, "rows": len(rows), "metrics": result}
