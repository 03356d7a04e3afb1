"""Curriculum vs shuffle (paper §3.4): train the `cpt` stage twice on the same ordered manifest,
once in curriculum order and once in a seeded random order, and print held-out perplexity.

    python bench/compare_order.py [key=value ...]   # overrides go to both runs, e.g. train.max_steps=80

Needs data/cpt_order (run `dvc repro cpt_order` first). Each run writes to a scratch directory under
.cache/compare_order/ (not DVC outputs), logs no model and keeps no checkpoint. The same comparison as a
DVC experiment: `dvc exp run -S cpt.order=shuffle` next to the baseline, then `dvc exp show`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(order: str, overrides: list[str]) -> dict:
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
    return summary


def main() -> None:
    overrides = sys.argv[1:]
    rows = {order: train(order, overrides) for order in ("curriculum", "shuffle")}
    print(f"\n{'order':<11} {'steps':>6} {'ppl before':>11} {'ppl after':>10} {'tokens/s':>9} {'wall s':>7}")
    for order, s in rows.items():
        print(f"{order:<11} {s['global_step']:>6} {s['heldout_ppl_before']:>11.2f} {s['heldout_ppl_after']:>10.2f} "
              f"{s.get('tokens_per_s') or float('nan'):>9.0f} {s['wall_s']:>7.0f}")
    c, r = rows["curriculum"]["heldout_ppl_after"], rows["shuffle"]["heldout_ppl_after"]
    print(f"curriculum / shuffle held-out perplexity ratio: {c / r:.3f} (< 1: the curriculum helps)")


if __name__ == "__main__":
    main()
