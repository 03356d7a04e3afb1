"""Reporting: per-benchmark scores beside their chance baseline, parse-failure rates, category
macro-averages (paper §6: "macro-averaged across benchmarks within a category to avoid a single
large dataset dominating"), and a decontamination section.

Files written by `write_report(result, out_dir, decontam)`:
- metrics.json   DVC metrics, numbers only: benchmarks.<name>.<mode>.{score, chance, parse_failure_rate,
                 acc, acc_norm, exact_match, f1, ...}, .subsets.<subset>.<mode>, categories.<cat>.<mode>,
                 overall.<mode>, decontamination.<name>.{flagged, flagged_rate, score_clean, score_flagged};
- summary.json   what is not a number: model identity, fingerprint, families, categories, accounting,
                 quarantine and skip reasons;
- scores_plot.json  DVC plots data, one row per (benchmark, mode): score and chance;
- table.csv, report.md, scores.png  (MLflow table artifact, human report, bar chart).

Accounting checked before anything is written: per benchmark, read = valid + quarantined and
selected = scored + skipped for every mode that applies.

Paths in summary.json, report.md and quarantine.jsonl (model path, decontamination report, details)
are relative to the project root (or `${data_root}/...`): no output depends on where the checkout lives.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from eval import MODES, PRIMARY
from eval.runner import EvalResult
from eval.scoring import aggregate
from tasks.common.io import path_prefixes, read_jsonl, relative_paths, write_json


def _mode_applies(result: EvalResult, name: str, mode: str) -> bool:
    return any(r["benchmark"] == name and r["mode"] == mode for r in result.rows)


def benchmark_table(result: EvalResult) -> dict[str, dict]:
    out: dict[str, dict] = {}
    skipped = Counter(s["benchmark"] for s in result.skipped)
    quarantined = Counter(q["benchmark"] for q in result.quarantined)
    for spec in result.specs:
        name = spec.name
        rows = [r for r in result.rows if r["benchmark"] == name]
        entry: dict[str, Any] = {"read": result.read[name], "valid": result.valid[name],
                                 "quarantined": quarantined[name], "selected": len(result.selected[name]),
                                 "skipped": skipped[name]}
        if entry["read"] != entry["valid"] + entry["quarantined"]:
            raise RuntimeError(f"{name}: read {entry['read']} != valid {entry['valid']} + "
                               f"quarantined {entry['quarantined']}")
        for mode in MODES:
            mrows = [r for r in rows if r["mode"] == mode]
            if not mrows:
                continue
            agg = aggregate(mrows)
            entry[mode] = agg
            subsets = sorted({r["subset"] for r in mrows if r["subset"]})
            for sub in subsets:
                entry.setdefault("subsets", {}).setdefault(sub, {})[mode] = {
                    k: v for k, v in aggregate([r for r in mrows if r["subset"] == sub]).items()
                    if k in ("n", "score", "chance", "acc", "acc_norm", "parse_failure_rate")}
        n_gen = entry.get("generate", {}).get("n", 0)
        if "generate" in entry and n_gen + entry["skipped"] != entry["selected"]:
            raise RuntimeError(f"{name}: selected {entry['selected']} != scored {n_gen} + skipped {entry['skipped']}")
        out[name] = entry
    return out


def category_table(result: EvalResult, benchmarks: dict[str, dict]) -> dict[str, dict]:
    cats: dict[str, dict] = defaultdict(lambda: {"benchmarks": 0})
    for spec in result.specs:
        entry = benchmarks[spec.name]
        cat = cats[spec.category]
        cat["benchmarks"] += 1
        for mode in MODES:
            if mode in entry:
                cat.setdefault(f"_{mode}", []).append(entry[mode][PRIMARY[mode]])
                cat.setdefault(f"_{mode}_chance", []).append(entry[mode]["chance"])
    out = {}
    for name, cat in sorted(cats.items()):
        row = {"benchmarks": cat["benchmarks"]}
        for mode in MODES:
            if f"_{mode}" in cat:
                row[mode] = statistics.fmean(cat[f"_{mode}"])
                row[f"{mode}_chance"] = statistics.fmean(cat[f"_{mode}_chance"])
        out[name] = row
    return out


def overall(categories: dict[str, dict]) -> dict[str, float]:
    out = {}
    for mode in MODES:
        vals = [c[mode] for c in categories.values() if mode in c]
        if vals:
            out[mode] = statistics.fmean(vals)
    return out


# ---- decontamination --------------------------------------------------------------------------
def load_decontam(report_path: str | Path, kept_dirs: list[str | Path] = ()) -> dict | None:
    """Index of the clean stage's decontamination report: (benchmark, item) -> [(kind, record id)],
    and which flagged records are still in the kept (training) data."""
    path = Path(report_path)
    if not path.is_file():
        return {"path": str(path), "available": False}
    index: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    records: set[str] = set()
    for row in read_jsonl(path):
        item = row.get("benchmark_item", row.get("item"))
        index[(row["benchmark"], str(item))].append((row["kind"], row["record_id"]))
        records.add(row["record_id"])
    kept: set[str] = set()
    for d in kept_dirs:
        for shard in sorted(Path(d).glob("*.jsonl")):
            kept.update(r["id"] for r in read_jsonl(shard) if r.get("id") in records)
    return {"path": str(path), "available": True, "index": index, "kept": kept, "kept_checked": bool(kept_dirs)}


def decontamination(result: EvalResult, decontam: dict | None) -> dict[str, dict]:
    if not decontam or not decontam["available"]:
        return {}
    out = {}
    gen = {(r["benchmark"], r["id"]): r["score"] for r in result.rows if r["mode"] == "generate"}
    for name, items in result.selected.items():
        kinds: Counter = Counter()
        records: set[str] = set()
        flagged, clean = [], []
        for it in items:
            hits = [h for key in sorted(it.decontam_keys) for h in decontam["index"].get((name, key), [])]
            (flagged if hits else clean).append(it)
            for kind, rid in hits:
                kinds[kind] += 1
                records.add(rid)
        row: dict[str, Any] = {"evaluated": len(items), "flagged": len(flagged),
                               "flagged_rate": len(flagged) / max(len(items), 1),
                               "training_records": len(records), "by_kind": dict(sorted(kinds.items()))}
        if decontam["kept_checked"]:
            row["records_in_kept_data"] = len(records & decontam["kept"])
        for label, group in (("score_flagged", flagged), ("score_clean", clean)):
            scores = [gen[(name, it.id)] for it in group if (name, it.id) in gen]
            if scores:
                row[label] = statistics.fmean(scores)
        out[name] = row
    return out


# ---- writing ----------------------------------------------------------------------------------
def build(result: EvalResult, decontam: dict | None = None, data_root: str | Path | None = None) -> tuple[dict, dict]:
    """(metrics, summary); `data_root` (default: params.yaml's) is written as `${data_root}`."""
    benchmarks = benchmark_table(result)
    categories = category_table(result, benchmarks)
    metrics = {"benchmarks": benchmarks, "categories": categories, "overall": overall(categories),
               "decontamination": decontamination(result, decontam)}
    summary = {"model": result.model, "fingerprint": result.fingerprint,
               "benchmarks": {s.name: {"family": s.family, "category": s.category, "description": s.description}
                              for s in result.specs},
               "quarantine_reasons": dict(Counter(f"{q['benchmark']}:{q['reason']}" for q in result.quarantined)),
               "skip_reasons": dict(Counter(f"{s['benchmark']}:{s['reason']}" for s in result.skipped)),
               "decontamination_report": decontam["path"] if decontam else None,
               "adapter_stats": result.adapter_stats}
    return metrics, relative_paths(summary, path_prefixes(data_root))


def plot_rows(metrics: dict) -> list[dict]:
    rows = []
    for name, entry in metrics["benchmarks"].items():
        for mode in MODES:
            if mode in entry:
                rows.append({"benchmark": name, "mode": mode, "score": round(entry[mode][PRIMARY[mode]], 6),
                             "chance": round(entry[mode]["chance"], 6)})
    return rows


def write_table_csv(metrics: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "mode", "n", "score", "chance", "parse_failure_rate", "acc", "acc_norm"])
        for name, entry in metrics["benchmarks"].items():
            for mode in MODES:
                if mode in entry:
                    e = entry[mode]
                    w.writerow([name, mode, e["n"], f"{e['score']:.4f}", f"{e['chance']:.4f}",
                                f"{e['parse_failure_rate']:.4f}", f"{e['acc']:.4f}" if "acc" in e else "",
                                f"{e['acc_norm']:.4f}" if "acc_norm" in e else ""])


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def markdown(metrics: dict, summary: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Model: `{json.dumps(summary['model'], sort_keys=True)}`  ",
             f"Run fingerprint: `{summary['fingerprint']}`", "",
             "## Benchmarks (scores in %, chance = uniform random guess)", "",
             "| benchmark | category | n | Pass@1 | chance | parse fail | loglik acc | acc_norm | quarantined | skipped |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in metrics["benchmarks"].items():
        g, ll = e.get("generate", {}), e.get("loglik", {})
        cat = summary["benchmarks"][name]["category"]
        lines.append(f"| {name} | {cat} | {g.get('n', ll.get('n', 0))} | {_pct(g.get('score'))} | "
                     f"{_pct(g.get('chance', ll.get('chance')))} | {_pct(g.get('parse_failure_rate'))} | "
                     f"{_pct(ll.get('acc'))} | {_pct(ll.get('acc_norm'))} | {e['quarantined']} | {e['skipped']} |")
        for sub, s in sorted(e.get("subsets", {}).items()):
            sg, sl = s.get("generate", {}), s.get("loglik", {})
            lines.append(f"| &nbsp;&nbsp;{name}/{sub} | | {sg.get('n', sl.get('n', 0))} | {_pct(sg.get('score'))} | "
                         f"{_pct(sg.get('chance', sl.get('chance')))} | {_pct(sg.get('parse_failure_rate'))} | "
                         f"{_pct(sl.get('acc'))} | {_pct(sl.get('acc_norm'))} | | |")
    lines += ["", "## Categories (macro-average over benchmarks)", "",
              "| category | benchmarks | Pass@1 | chance | loglik acc_norm | chance |", "|---|---|---|---|---|---|"]
    for cat, c in metrics["categories"].items():
        lines.append(f"| {cat} | {c['benchmarks']} | {_pct(c.get('generate'))} | {_pct(c.get('generate_chance'))} | "
                     f"{_pct(c.get('loglik'))} | {_pct(c.get('loglik_chance'))} |")
    ov = metrics["overall"]
    lines += ["", (f"Overall (macro over categories): Pass@1 {_pct(ov.get('generate'))}, "
                  f"loglik acc_norm {_pct(ov.get('loglik'))}"), ""]
    failures = {n: e["generate"]["failure_reasons"] for n, e in metrics["benchmarks"].items()
                if e.get("generate", {}).get("failure_reasons")}
    if failures:
        lines += ["## Parse failures (scored as wrong)", ""]
        lines += [f"- {n}: " + ", ".join(f"{k} {v}" for k, v in r.items()) for n, r in failures.items()]
        lines.append("")
    lines += ["## Decontamination", ""]
    dec = metrics["decontamination"]
    if not dec:
        lines.append(f"No decontamination report found (looked for `{summary['decontamination_report']}`).")
    else:
        lines += [(f"From `{summary['decontamination_report']}`: evaluated items that share a 13-gram or an image "
                  "with a corpus record."), "",
                  ("| benchmark | evaluated | flagged | flagged % | records | still in kept data | by kind | "
                  "Pass@1 clean | Pass@1 flagged |"), "|---|---|---|---|---|---|---|---|---|"]
        for n, d in dec.items():
            kinds = ", ".join(f"{k} {v}" for k, v in d["by_kind"].items())
            lines.append(f"| {n} | {d['evaluated']} | {d['flagged']} | {_pct(d['flagged_rate'])} | "
                         f"{d['training_records']} | {d.get('records_in_kept_data', 'n/a')} | {kinds} | "
                         f"{_pct(d.get('score_clean'))} | {_pct(d.get('score_flagged'))} |")
    if summary["quarantine_reasons"] or summary["skip_reasons"]:
        lines += ["", "## Quarantined and skipped items", ""]
        lines += [f"- quarantined {k}: {v}" for k, v in sorted(summary["quarantine_reasons"].items())]
        lines += [f"- skipped {k}: {v}" for k, v in sorted(summary["skip_reasons"].items())]
    return "\n".join(lines) + "\n"


def bar_chart(plot: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["benchmark"] for r in plot))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 4))
    width = 0.38
    for j, mode in enumerate(MODES):
        xs = [i + (j - 0.5) * width for i, n in enumerate(names)
              if any(r["benchmark"] == n and r["mode"] == mode for r in plot)]
        rows = [r for n in names for r in plot if r["benchmark"] == n and r["mode"] == mode]
        if rows:
            ax.bar(xs, [100 * r["score"] for r in rows], width, label=f"{mode} ({PRIMARY[mode]})")
            ax.scatter(xs, [100 * r["chance"] for r in rows], marker="_", s=400, color="black", zorder=3,
                       label="chance" if j == 0 else None)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: EvalResult, out_dir: str | Path, *, decontam: dict | None = None,
                 title: str = "Evaluation", data_root: str | Path | None = None) -> tuple[dict, dict]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, summary = build(result, decontam, data_root)
    write_json(out / "metrics.json", metrics)
    write_json(out / "summary.json", summary)
    plot = plot_rows(metrics)
    write_json(out / "scores_plot.json", plot)
    write_table_csv(metrics, out / "table.csv")
    (out / "report.md").write_text(markdown(metrics, summary, title), encoding="utf-8")
    if plot:
        bar_chart(plot, out / "scores.png", title)
    if result.quarantined:
        with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(q, sort_keys=True) + "\n"
                         for q in relative_paths(result.quarantined, path_prefixes(data_root)))
    return metrics, summary
