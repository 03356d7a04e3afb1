"""Reporting: per-benchmark scores beside their chance baseline, parse-failure rates, category
macro-averages (paper §6: "macro-averaged across benchmarks within a category to avoid a single
large dataset dominating"), and a decontamination section. Every score carries a 95% interval
(eval/intervals.py): Wilson for accuracies, a seeded bootstrap otherwise, a bootstrap stratified by
benchmark for the category and overall macro-averages.

Files written by `write_report(result, out_dir, decontam)`:
- metrics.json   DVC metrics, numbers only: benchmarks.<name>.<mode>.{score, chance, parse_failure_rate,
                 acc, acc_norm, exact_match, f1, ...} each score with <key>_ci_low / <key>_ci_high (and
                 <key>_correct, k of n, for a proportion), .subsets.<subset>.<mode>,
                 categories.<cat>.{<mode>, <mode>_ci_low, <mode>_ci_high, <mode>_chance},
                 overall.{<mode>, <mode>_ci_low, <mode>_ci_high},
                 decontamination.<name>.{checked, flagged, flagged_rate, score_clean, score_flagged, ...},
                 instruct.{prompt_strict, prompt_loose, instruction_strict, instruction_loose (+ _ci_low,
                 _ci_high, _correct), categories.<cat>.{strict, loose}, kinds.<kind>.{strict, loose},
                 multi_turn.{persistence_strict, persistence_loose, instruction_*}} (eval/instruct.py);
- summary.json   what is not a number: model identity, fingerprint, families, categories, accounting,
                 quarantine and skip reasons, how intervals are computed, which benchmarks the
                 clean stage checked for contamination, the instruction-following benchmark's version,
                 vocabulary, style and token budget (`instruct`);
- scores_plot.json  DVC plots data, one row per (benchmark, mode): score, its interval, chance;
- table.csv, report.md, scores.png  (MLflow table artifact, human report, bar chart with interval bars).

Accounting checked before anything is written: per benchmark, read = valid + quarantined and
selected = scored + skipped for every mode that applies.

Decontamination: a benchmark counts as checked only when the clean stage's
decontamination_summary.json (beside its decontamination_report.jsonl) lists it under
`benchmarks_checked`; any other benchmark (a bring-your-own one the clean stage never saw, or every
benchmark when that summary predates the key) is reported as not checked, with no flagged count:
"0 flagged" would claim a check that never ran.

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

from eval import MODES, PRIMARY, intervals
from eval.runner import EvalResult
from eval.scoring import BINARY_KINDS, aggregate, interval_keys
from tasks.common.io import path_prefixes, read_jsonl, relative_paths, write_json

# What a subset row keeps of its aggregate: the primary scores with their intervals, chance, failures.
SUBSET_KEYS = frozenset({"n", "chance", "parse_failure_rate"} | {
    f"{k}{suffix}" for k in ("score", "acc", "acc_norm") for suffix in ("", "_ci_low", "_ci_high", "_correct")})


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
                    if k in SUBSET_KEYS}
        # per mode, over that mode's own slice (mode_limits) and the items it applies to (loglik: closed)
        for mode, acc in result.accounting.get(name, {}).items():
            n = entry.get(mode, {}).get("n", 0)
            if n + acc["skipped"] != acc["selected"]:
                raise RuntimeError(f"{name} {mode}: selected {acc['selected']} != scored {n} + "
                                   f"skipped {acc['skipped']}")
        out[name] = entry
    return out


def _primary_values(result: EvalResult, name: str, mode: str) -> list[float]:
    """Per-item values of a benchmark's primary score in `mode` (what its macro-average averages)."""
    key = PRIMARY[mode]
    return [r["score"] if key == "score" else r["metrics"][key]
            for r in result.rows if r["benchmark"] == name and r["mode"] == mode]


def category_table(result: EvalResult, benchmarks: dict[str, dict]) -> dict[str, dict]:
    """Per category and mode: the macro-average of its benchmarks' primary scores, its interval (a
    bootstrap that resamples items within each benchmark) and the average chance."""
    cats: dict[str, dict] = defaultdict(lambda: {"benchmarks": 0})
    for spec in result.specs:
        entry = benchmarks[spec.name]
        cat = cats[spec.category]
        cat["benchmarks"] += 1
        for mode in MODES:
            if mode in entry:
                cat.setdefault(f"_{mode}", []).append(entry[mode][PRIMARY[mode]])
                cat.setdefault(f"_{mode}_chance", []).append(entry[mode]["chance"])
                cat.setdefault(f"_{mode}_items", []).append(_primary_values(result, spec.name, mode))
    out = {}
    for name, cat in sorted(cats.items()):
        row = {"benchmarks": cat["benchmarks"]}
        for mode in MODES:
            if f"_{mode}" in cat:
                row[mode] = statistics.fmean(cat[f"_{mode}"])
                row[f"{mode}_ci_low"], row[f"{mode}_ci_high"] = intervals.stratified_bootstrap(cat[f"_{mode}_items"])
                row[f"{mode}_chance"] = statistics.fmean(cat[f"_{mode}_chance"])
        out[name] = row
    return out


def overall(categories: dict[str, dict], result: EvalResult | None = None) -> dict[str, float]:
    """The macro-average over categories per mode; with `result`, its interval: a bootstrap resampling
    items within each benchmark, each benchmark weighted 1 / (categories x benchmarks in its category)."""
    out = {}
    for mode in MODES:
        vals = [c[mode] for c in categories.values() if mode in c]
        if not vals:
            continue
        out[mode] = statistics.fmean(vals)
        if result is None:
            continue
        by_cat: dict[str, list[str]] = defaultdict(list)
        for spec in result.specs:
            if _mode_applies(result, spec.name, mode):
                by_cat[spec.category].append(spec.name)
        groups = [_primary_values(result, n, mode) for names in by_cat.values() for n in names]
        weights = [1 / (len(by_cat) * len(names)) for names in by_cat.values() for _ in names]
        out[f"{mode}_ci_low"], out[f"{mode}_ci_high"] = intervals.stratified_bootstrap(groups, weights)
    return out


# ---- decontamination --------------------------------------------------------------------------
DECONTAM_SUMMARY = "decontamination_summary.json"     # the clean stage writes it beside its report


def _benchmarks_checked(summary_path: Path) -> tuple[dict[str, dict] | None, str | None]:
    """(benchmark name -> {items, source}, None) from the clean stage's decontamination summary, or
    (None, why not) when it cannot say which benchmarks were checked."""
    if not summary_path.is_file():
        return None, "the clean stage wrote no decontamination summary beside its report"
    checked = json.loads(summary_path.read_text(encoding="utf-8")).get("benchmarks_checked")
    if not isinstance(checked, dict):
        return None, ("the clean stage's decontamination summary has no `benchmarks_checked` (written before "
                      "the clean stage recorded which benchmarks it checked; re-run it)")
    return checked, None


def load_decontam(report_path: str | Path, kept_dirs: list[str | Path] = ()) -> dict | None:
    """Index of the clean stage's decontamination report: (benchmark, item) -> [(kind, record id)],
    which flagged records are still in the kept (training) data, and which benchmarks the clean
    stage checked at all (`checked`: name -> {items, source}; None with `unchecked_reason` when its
    summary does not say)."""
    path = Path(report_path)
    summary_path = path.with_name(DECONTAM_SUMMARY)
    if not path.is_file():
        return {"path": str(path), "summary_path": str(summary_path), "available": False}
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
    checked, why = _benchmarks_checked(summary_path)
    return {"path": str(path), "summary_path": str(summary_path), "available": True, "index": index, "kept": kept,
            "kept_checked": bool(kept_dirs), "checked": checked, "unchecked_reason": why}


def decontamination(result: EvalResult, decontam: dict | None) -> dict[str, dict]:
    """Per evaluated benchmark: `checked` 1/0; when checked, flagged items, their training records,
    and Pass@1 on the clean and the flagged items (each with its interval)."""
    if not decontam or not decontam["available"]:
        return {}
    out = {}
    gen = {(r["benchmark"], r["id"]): r for r in result.rows if r["mode"] == "generate"}
    checked = decontam.get("checked") or {}
    for name, items in result.selected.items():
        if name not in checked:
            out[name] = {"checked": 0, "evaluated": len(items)}
            continue
        kinds: Counter = Counter()
        records: set[str] = set()
        flagged, clean = [], []
        for it in items:
            hits = [h for key in sorted(it.decontam_keys) for h in decontam["index"].get((name, key), [])]
            (flagged if hits else clean).append(it)
            for kind, rid in hits:
                kinds[kind] += 1
                records.add(rid)
        row: dict[str, Any] = {"checked": 1, "evaluated": len(items), "flagged": len(flagged),
                               "flagged_rate": len(flagged) / max(len(items), 1),
                               "training_records": len(records), "by_kind": dict(sorted(kinds.items()))}
        if decontam["kept_checked"]:
            row["records_in_kept_data"] = len(records & decontam["kept"])
        for label, group in (("score_flagged", flagged), ("score_clean", clean)):
            rows = [gen[(name, it.id)] for it in group if (name, it.id) in gen]
            if rows:
                scores = [r["score"] for r in rows]
                row[label] = statistics.fmean(scores)
                row.update(interval_keys(label, scores, all(r["kind"] in BINARY_KINDS for r in rows)))
        out[name] = row
    return out


# ---- writing ----------------------------------------------------------------------------------
# How the intervals are computed, for summary.json (metrics.json holds numbers only).
INTERVALS = {"level": intervals.LEVEL,
             "accuracy": "Wilson score interval (Pass@1 on closed and short-answer items, acc, acc_norm, exact match)",
             "other": "percentile bootstrap over items (F1, ROUGE-L, BLEU, rubric, 1-CER, ...)",
             "macro_average": "percentile bootstrap resampling items within each benchmark (categories, overall)",
             "bootstrap_resamples": intervals.RESAMPLES, "bootstrap_seed": intervals.SEED}
INTERVAL_NOTE = ("In brackets: 95% interval (Wilson score interval for accuracies: Pass@1 on closed and "
                 f"short-answer items, loglik acc and acc_norm; percentile bootstrap, {intervals.RESAMPLES} "
                 "seeded resamples of the items, for other scores and, resampling within each benchmark, for "
                 "the category and overall macro-averages).")


def build(result: EvalResult, decontam: dict | None = None, data_root: str | Path | None = None,
          heldout: dict | None = None, instruct=None) -> tuple[dict, dict]:
    """(metrics, summary); `data_root` (default: params.yaml's) is written as `${data_root}`;
    `heldout` is eval/heldout.py's held-out perplexity (or why it was not measured); `instruct` the
    instruction-following result (eval/instruct.py InstructResult: its .metrics and .summary)."""
    benchmarks = benchmark_table(result)
    categories = category_table(result, benchmarks)
    metrics = {"benchmarks": benchmarks, "categories": categories, "overall": overall(categories, result),
               "decontamination": decontamination(result, decontam)}
    if heldout and heldout.get("measured"):
        metrics["heldout_perplexity"] = {"overall": heldout["overall"], **heldout["by_kind"]}
    summary = {"model": result.model, "fingerprint": result.fingerprint,
               "benchmarks": {s.name: {"family": s.family, "category": s.category, "description": s.description}
                              for s in result.specs},
               "quarantine_reasons": dict(Counter(f"{q['benchmark']}:{q['reason']}" for q in result.quarantined)),
               "skip_reasons": dict(Counter(f"{s['benchmark']}:{s['reason']}" for s in result.skipped)),
               "decontamination_report": decontam["path"] if decontam else None,
               "adapter_stats": result.adapter_stats, "intervals": INTERVALS,
               "heldout_perplexity": ({k: heldout[k] for k in ("samples", "missing", "rejected")}
                                      if heldout and heldout.get("measured") else
                                      {"not_measured": heldout["reason"]} if heldout else None)}
    if decontam and decontam["available"]:
        checked = decontam["checked"]
        summary["decontamination_summary"] = decontam["summary_path"]
        summary["decontamination_checked"] = (None if checked is None else
                                              {n: checked[n] for n in sorted(result.selected) if n in checked})
        summary["decontamination_not_checked_reason"] = decontam["unchecked_reason"]
    if instruct is not None:
        metrics["instruct"] = instruct.metrics
        summary["instruct"] = instruct.summary
    return metrics, relative_paths(summary, path_prefixes(data_root))


def plot_rows(metrics: dict) -> list[dict]:
    rows = []
    for name, entry in metrics["benchmarks"].items():
        for mode in MODES:
            if mode in entry:
                e, key = entry[mode], PRIMARY[mode]
                rows.append({"benchmark": name, "mode": mode, "score": round(e[key], 6),
                             "score_ci_low": round(e[f"{key}_ci_low"], 6),
                             "score_ci_high": round(e[f"{key}_ci_high"], 6), "chance": round(e["chance"], 6)})
    return rows


TABLE_COLUMNS = ("benchmark", "mode", "n", "score", "score_ci_low", "score_ci_high", "chance", "parse_failure_rate",
                 "acc", "acc_ci_low", "acc_ci_high", "acc_norm", "acc_norm_ci_low", "acc_norm_ci_high")


def write_table_csv(metrics: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(TABLE_COLUMNS)
        for name, entry in metrics["benchmarks"].items():
            for mode in MODES:
                if mode in entry:
                    e = {"benchmark": name, "mode": mode, **entry[mode]}
                    w.writerow([e[c] if c in ("benchmark", "mode", "n") else f"{e[c]:.4f}" if c in e else ""
                                for c in TABLE_COLUMNS])


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _pct_ci(e: dict, key: str) -> str:
    """`38.8 [30.1, 47.9]`: the score `key` of `e` in % with its interval (the score alone when it has none)."""
    if key not in e:
        return ""
    lo, hi = e.get(f"{key}_ci_low"), e.get(f"{key}_ci_high")
    return _pct(e[key]) if lo is None or hi is None else f"{_pct(e[key])} [{_pct(lo)}, {_pct(hi)}]"


def markdown(metrics: dict, summary: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Model: `{json.dumps(summary['model'], sort_keys=True)}`  ",
             f"Run fingerprint: `{summary['fingerprint']}`", "",
             "## Benchmarks (scores in %, chance = uniform random guess)", "", INTERVAL_NOTE, "",
             "| benchmark | category | n | Pass@1 | chance | parse fail | loglik acc | acc_norm | quarantined | skipped |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in metrics["benchmarks"].items():
        g, ll = e.get("generate", {}), e.get("loglik", {})
        cat = summary["benchmarks"][name]["category"]
        lines.append(f"| {name} | {cat} | {g.get('n', ll.get('n', 0))} | {_pct_ci(g, 'score')} | "
                     f"{_pct(g.get('chance', ll.get('chance')))} | {_pct(g.get('parse_failure_rate'))} | "
                     f"{_pct_ci(ll, 'acc')} | {_pct_ci(ll, 'acc_norm')} | {e['quarantined']} | {e['skipped']} |")
        for sub, s in sorted(e.get("subsets", {}).items()):
            sg, sl = s.get("generate", {}), s.get("loglik", {})
            lines.append(f"| &nbsp;&nbsp;{name}/{sub} | | {sg.get('n', sl.get('n', 0))} | {_pct_ci(sg, 'score')} | "
                         f"{_pct(sg.get('chance', sl.get('chance')))} | {_pct(sg.get('parse_failure_rate'))} | "
                         f"{_pct_ci(sl, 'acc')} | {_pct_ci(sl, 'acc_norm')} | | |")
    lines += ["", "## Categories (macro-average over benchmarks)", "",
              "| category | benchmarks | Pass@1 | chance | loglik acc_norm | chance |", "|---|---|---|---|---|---|"]
    for cat, c in metrics["categories"].items():
        lines.append(f"| {cat} | {c['benchmarks']} | {_pct_ci(c, 'generate')} | {_pct(c.get('generate_chance'))} | "
                     f"{_pct_ci(c, 'loglik')} | {_pct(c.get('loglik_chance'))} |")
    ov = metrics["overall"]
    labels = {"generate": "Pass@1", "loglik": "loglik acc_norm"}
    lines += ["", "Overall (macro over categories): " + ", ".join(
        f"{labels[m]} {_pct_ci(ov, m)}" for m in MODES if m in ov), ""]
    failures = {n: e["generate"]["failure_reasons"] for n, e in metrics["benchmarks"].items()
                if e.get("generate", {}).get("failure_reasons")}
    if failures:
        lines += ["## Parse failures (scored as wrong)", ""]
        lines += [f"- {n}: " + ", ".join(f"{k} {v}" for k, v in r.items()) for n, r in failures.items()]
        lines.append("")
    lines += _heldout_lines(metrics.get("heldout_perplexity"), summary.get("heldout_perplexity"))
    lines += instruct_lines(metrics.get("instruct"), summary.get("instruct"))
    lines += ["## Decontamination", ""]
    lines += _decontamination_lines(metrics["decontamination"], summary)
    if summary["quarantine_reasons"] or summary["skip_reasons"]:
        lines += ["", "## Quarantined and skipped items", ""]
        lines += [f"- quarantined {k}: {v}" for k, v in sorted(summary["quarantine_reasons"].items())]
        lines += [f"- skipped {k}: {v}" for k, v in sorted(summary["skip_reasons"].items())]
    return "\n".join(lines) + "\n"


def _heldout_lines(ppl: dict | None, info: dict | None) -> list[str]:
    """The held-out medical perplexity section (eval/heldout.py), or why it is absent."""
    if info is None:
        return []
    lines = ["## Held-out medical perplexity (lower is better)", ""]
    if not ppl:
        return lines + [f"Not measured: {info.get('not_measured', 'unknown reason')}.", ""]
    lines += ["The CPT corpus's held-out split (never trained on), encoded as in training; 95% bootstrap "
              "interval over samples.", "", "| data kind | samples | tokens | perplexity |", "|---|---|---|---|"]
    for kind, r in ppl.items():
        lines.append(f"| {kind} | {r['samples']} | {r['tokens']} | {r['ppl']:.2f} "
                     f"[{r['ppl_ci_low']:.2f}, {r['ppl_ci_high']:.2f}] |")
    return lines + [""]


def _lvl_row(label: str, n: int, m: dict, strict: str, loose: str) -> str:
    return f"| {label} | {n} | {_pct_ci(m, strict) or 'n/a'} | {_pct_ci(m, loose) or 'n/a'} |"


def instruct_lines(m: dict | None, info: dict | None) -> list[str]:
    """The instruction-following section (eval/instruct.py): IFEval's four, multi-turn persistence,
    per category and kind; or why nothing was scored."""
    if m is None or info is None:
        return []
    lines = ["## Instruction following (IFEval-style)", "",
             (f"Benchmark version `{info['version']}`: {info['single_items']} single-turn medical requests and "
              f"{info['multi_turn_items']} three-turn conversations (topics: {info['topics']} MeSH terms from "
              f"`{info['vocabulary']}`), constraints of the `{info['split']}` split only (never used to build "
              f"SFT data). Style {info['style']}, at most {info['max_new_tokens']} new tokens; a <think> block "
              "is removed before checking. Strict: the reply as given; loose: IFEval's loose variants (markdown "
              "asterisks, first or last line removed). In %, 95% Wilson interval in brackets."), ""]
    if not m["scored"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(info.get("skip_reasons", {}).items()))
        return lines + [f"Not scored: {m['skipped']} item(s) skipped ({reasons or 'no items'}).", ""]
    mt = m["multi_turn"]
    lines += ["| level | n | strict | loose |", "|---|---|---|---|",
              _lvl_row("prompt (every constraint of a prompt)", m["prompts"], m, "prompt_strict", "prompt_loose"),
              _lvl_row("instruction (each constraint)", m["instructions"], m, "instruction_strict",
                       "instruction_loose"),
              _lvl_row("multi-turn persistence (turn-1 constraints in turn 3)", mt["prompts"], mt,
                       "persistence_strict", "persistence_loose"),
              _lvl_row("multi-turn instruction", mt["instructions"], mt, "instruction_strict", "instruction_loose"),
              ""]
    for title, key in (("category", "categories"), ("constraint kind", "kinds")):
        lines += [f"| {title} (single-turn) | instructions | strict | loose |", "|---|---|---|---|"]
        lines += [_lvl_row(name, e["instructions"], e, "strict", "loose") for name, e in m[key].items()]
        lines.append("")
    if m["failures"]:
        lines += [f"Items without a usable reply (scored as failing every constraint): {m['failures']}.", ""]
    return lines


def _decontamination_lines(dec: dict, summary: dict) -> list[str]:
    if not dec:
        return [f"No decontamination report found (looked for `{summary['decontamination_report']}`)."]
    checked = summary.get("decontamination_checked") or {}
    lines = [(f"From `{summary['decontamination_report']}`: evaluated items that share a 13-gram or an image "
              "with a corpus record. A benchmark the clean stage did not check is `not checked`: no flagged "
              "count is claimed for it."), "",
             ("| benchmark | checked against | evaluated | flagged | flagged % | records | still in kept data | "
              "by kind | Pass@1 clean | Pass@1 flagged |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for n, d in dec.items():
        if not d["checked"]:
            lines.append(f"| {n} | not checked | {d['evaluated']} | | | | | | | |")
            continue
        info = checked.get(n, {})
        against = f"{info.get('source', '?')}, {info.get('items', '?')} items"
        kinds = ", ".join(f"{k} {v}" for k, v in d["by_kind"].items())
        lines.append(f"| {n} | {against} | {d['evaluated']} | {d['flagged']} | {_pct(d['flagged_rate'])} | "
                     f"{d['training_records']} | {d.get('records_in_kept_data', 'n/a')} | {kinds} | "
                     f"{_pct_ci(d, 'score_clean')} | {_pct_ci(d, 'score_flagged')} |")
    unchecked = [n for n, d in dec.items() if not d["checked"]]
    where = f"`{summary.get('decontamination_summary')}`"
    if summary.get("decontamination_not_checked_reason"):
        lines += ["", f"Not checked: every benchmark, because {summary['decontamination_not_checked_reason']} ({where})."]
    elif unchecked:
        lines += ["", (f"Not checked: {', '.join(unchecked)}: absent from `benchmarks_checked` in {where}, so the "
                       "clean stage never compared their items with the corpus (e.g. a bring-your-own benchmark "
                       "added after it ran).")]
    return lines


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
            # interval bars; clipped at 0 because a percentile interval need not contain its estimate
            yerr = [[max(0.0, 100 * (r["score"] - r["score_ci_low"])) for r in rows],
                    [max(0.0, 100 * (r["score_ci_high"] - r["score"])) for r in rows]]
            ax.bar(xs, [100 * r["score"] for r in rows], width, yerr=yerr, capsize=3, error_kw={"lw": 0.8},
                   label=f"{mode} ({PRIMARY[mode]}, 95% interval)")
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
                 title: str = "Evaluation", data_root: str | Path | None = None,
                 heldout: dict | None = None, instruct=None) -> tuple[dict, dict]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, summary = build(result, decontam, data_root, heldout, instruct)
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
