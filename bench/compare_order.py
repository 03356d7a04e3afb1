"""Curriculum vs shuffle (paper §3.4): train the `cpt` stage twice on the same manifest, once in
curriculum order and once in a seeded random order of exactly the same entries, and print held-out
perplexity overall and per data kind, with 95% bootstrap intervals.

    python bench/compare_order.py [--reuse] [key=value ...]   # overrides go to both runs, e.g. train.learning_rate=1e-4

--reuse (no overrides): the curriculum side is the pipeline's own data/cpt run (the same params).

Needs data/cpt_order (run `dvc repro cpt_order` first). `cpt` trains one full pass over the manifest
(the manifest is the budget: cpt_order.max_samples), so both runs see every entry, replays and
general text included, and differ only in order. Each run writes to a scratch directory under
.cache/compare_order/ (not DVC outputs), logs no model and keeps no checkpoint. The same comparison as
a DVC experiment: `dvc exp run -S cpt.order=shuffle` next to the baseline, then `dvc exp show`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(order: str, overrides: list[str], reuse: bool = False) -> dict:
    if reuse and order == "curriculum" and not overrides and (ROOT / "data/cpt/summary.json").is_file():
        # the pipeline's own cpt run is the curriculum run with these params
        summary = json.loads((ROOT / "data/cpt/summary.json").read_text())
        metrics = json.loads((ROOT / "data/cpt/metrics.json").read_text())
        return {**summary, "wall_s": 0.0, "tokens_per_s": None,
                "heldout_after": metrics["heldout_after"], "heldout_before": metrics["heldout_before"]}
    out = Path(".cache/compare_order") / order
    cmd = [sys.executable, "-m", "tasks.cpt", f"order={order}", f"out_dir={out}",
           f"checkpoint_root=.cache/compare_order/ckpt-{order}", "mlflow.log_model=false", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"cpt ({order}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads((ROOT / out / "summary.json").read_text())
    summary["wall_s"] = time.perf_counter() - t0
    # wall-clock figures stay out of DVC outputs; the stage prints its training tokens/s
    found = re.search(r"tokens/s=([0-9.]+)", proc.stdout)
    summary["tokens_per_s"] = float(found.group(1)) if found else None
    metrics = json.loads((ROOT / out / "metrics.json").read_text())
    summary["heldout_after"] = metrics["heldout_after"]
    summary["heldout_before"] = metrics["heldout_before"]
    return summary


def cell(r: dict) -> str:
    return f"{r['ppl']:8.2f} [{r['ppl_ci_low']:.2f}, {r['ppl_ci_high']:.2f}]"


def main() -> None:
    reuse = "--reuse" in sys.argv[1:]
    overrides = [a for a in sys.argv[1:] if a != "--reuse"]
    # shuffle first: with --reuse the curriculum side is read last, once the pipeline's cpt has finished
    rows = {order: train(order, overrides, reuse) for order in ("shuffle", "curriculum")}
    c, s = rows["curriculum"], rows["shuffle"]
    if c["unique_samples"] != s["unique_samples"] or c["kept"] != s["kept"]:
        sys.exit("the two runs did not train the same entries")
    print(f"\nboth orders: {c['kept']} entries ({c['unique_samples']} samples), {c['global_step']} steps; "
          f"tokens/s curriculum {c.get('tokens_per_s') or float('nan'):.0f}, "
          f"shuffle {s.get('tokens_per_s') or float('nan'):.0f}")
    kinds = ["overall", *sorted(c["heldout_after"].get("by_group", {}))]
    print(f"{'held-out kind':<18} {'samples':>7}  {'base':>24}  {'curriculum':>24}  {'shuffle':>24}  cur/shuf")
    for kind in kinds:
        pick = (lambda r: r) if kind == "overall" else (lambda r, k=kind: r["by_group"][k])
        b, cur, shuf = pick(c["heldout_before"]), pick(c["heldout_after"]), pick(s["heldout_after"])
        print(f"{kind:<18} {cur['samples']:>7}  {cell(b):>24}  {cell(cur):>24}  {cell(shuf):>24}  "
              f"{cur['ppl'] / shuf['ppl']:.3f}")
    print("ratio < 1: the curriculum's perplexity is lower; a difference counts only where the intervals "
          "do not overlap")


if __name__ == "__main__":
    main()
