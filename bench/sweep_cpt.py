"""CPT forgetting-control sweep (paper §3.4): what general-text replay and per-component learning rates
do to held-out medical perplexity and to benchmark log-likelihood, against the base model.

    python bench/sweep_cpt.py [--points default,no_general_replay,old_recipe] [--items 80] [--reuse]

Needs the default pipeline up to `cpt_order`; with --reuse the `base` and `default` rows come from
the pipeline's own `eval@base`, `cpt` and `eval@cpt` outputs (same items, same protocol). Points (each one full pass over the same ordered samples):
- default            params.yaml: decoder at `cpt.train.component_lr.decoder`, vision tower and adapter at
                     `train.learning_rate`, cosine to `min_lr_ratio`, general text at
                     `cpt_order.schedule.general_share` of every region (data/cpt when --reuse);
- no_general_replay  the default's manifest with its general-text entries removed (the curriculum
                     entries and their order otherwise unchanged), default learning rates;
- old_recipe         no general replay, one learning rate (3e-4) for every component, cosine to 0:
                     the recipe before forgetting control.
Each point trains `tasks.cpt` into .cache/sweep/<point>/ (no model logged) and is evaluated by the
`eval` stage's code (`python -m tasks.eval`, log-likelihood on the four text benchmarks, `--items` per
benchmark, and held-out perplexity) into .cache/sweep/eval/<point>/. Printed: held-out perplexity
overall and per data kind with 95% bootstrap intervals, the text category's log-likelihood acc_norm
macro-average with its 95% interval, and its change against base with the interval of the change
(significant when it excludes 0). Wall times are printed, not stored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.intervals import diff_normal, significant  # noqa: E402

SWEEP = Path(".cache/sweep")
TEXT = "medqa,medmcqa,mmlu_medical,pubmedqa"
OLD_LR = ["train.learning_rate=3.0e-4", "train.component_lr.decoder=0", "train.min_lr_ratio=0"]
POINTS = {
    "default": {"general": True, "overrides": []},
    "no_general_replay": {"general": False, "overrides": []},
    "old_recipe": {"general": False, "overrides": OLD_LR},
}


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def manifest_without_general(src: Path, dst: Path) -> Path:
    """The ordered manifest minus its general-text entries, positions renumbered; held-out copied."""
    dst.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (src / "manifest.jsonl").read_text().splitlines() if line.strip()]
    kept = [r for r in sorted(rows, key=lambda r: r["position"]) if not r.get("general")]
    (dst / "manifest.jsonl").write_text("".join(json.dumps({**r, "position": i}) + "\n" for i, r in enumerate(kept)))
    shutil.copy(src / "heldout.jsonl", dst / "heldout.jsonl")
    return dst


def train(point: str, spec: dict, reuse: bool) -> tuple[Path, float]:
    if point == "default" and reuse and (ROOT / "data/cpt/model").is_dir():
        return Path("data/cpt"), 0.0
    order_dir = "data/cpt_order"
    if not spec["general"]:
        order_dir = str(manifest_without_general(ROOT / "data/cpt_order", ROOT / SWEEP / "order_no_general")
                        .relative_to(ROOT))
    out = SWEEP / point
    wall = run(["-m", "tasks.cpt", f"order_dir={order_dir}", f"out_dir={out}",
                f"checkpoint_root={SWEEP}/ckpt-{point}", "mlflow.log_model=false", *spec["overrides"]])
    return out, wall


# the pipeline's own evaluations of the base model and of the default CPT (same items, same protocol)
REUSE_EVAL = {"base": "data/eval/base/metrics.json", "default": "data/eval/cpt/metrics.json"}


def evaluate(name: str, model: Path, items: int, reuse: bool) -> tuple[dict, float]:
    if reuse and name in REUSE_EVAL and (ROOT / REUSE_EVAL[name]).is_file():
        return json.loads((ROOT / REUSE_EVAL[name]).read_text()), 0.0
    wall = run(["-m", "tasks.eval", f"checkpoint=sweep-{name}", f"model_path={model / 'model' if name != 'base' else model}",
                f"out_root={SWEEP}/eval", "modes=[loglik]", f"benchmarks=[{TEXT}]", f"mode_limits.loglik={items}"])
    return json.loads((ROOT / SWEEP / "eval" / f"sweep-{name}" / "metrics.json").read_text()), wall


def ppl_cell(r: dict) -> str:
    return f"{r['ppl']:.2f} [{r['ppl_ci_low']:.2f}, {r['ppl_ci_high']:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=",".join(POINTS))
    ap.add_argument("--items", type=int, default=80)
    ap.add_argument("--reuse", action="store_true", help="take data/eval/base and data/cpt when present")
    args = ap.parse_args()
    results, walls = {}, {}
    for point in args.points.split(","):
        out, t_train = train(point, POINTS[point], args.reuse)
        results[point] = evaluate(point, out, args.items, args.reuse)
        walls[point] = (t_train, results[point][1])
    # base last: with --reuse its row comes from eval@base, which may finish while the points train
    results = {"base": evaluate("base", Path("data/base_model/model"), args.items, args.reuse), **results}
    base = results["base"][0]["categories"]["medical_text"]
    kinds = sorted(set(results["base"][0].get("heldout_perplexity", {})) - {"overall"})
    print(f"\n{'point':<18} {'text loglik acc_norm':>24} {'change vs base':>28}  held-out ppl: overall | "
          + " | ".join(kinds))
    for name, (m, _) in results.items():
        c = m["categories"]["medical_text"]
        cell = f"{100 * c['loglik']:.1f} [{100 * c['loglik_ci_low']:.1f}, {100 * c['loglik_ci_high']:.1f}]"
        change = ""
        if name != "base":
            lo, hi = diff_normal(c["loglik"], c["loglik_ci_low"], c["loglik_ci_high"],
                                 base["loglik"], base["loglik_ci_low"], base["loglik_ci_high"])
            mark = ("▲" if lo > 0 else "▼") if significant(lo, hi) else "~"
            change = f"{100 * (c['loglik'] - base['loglik']):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] {mark}"
        ppl = m.get("heldout_perplexity", {})
        cells = [ppl_cell(ppl[k]) if k in ppl else "-" for k in ["overall", *kinds]]
        print(f"{name:<18} {cell:>24} {change:>28}  " + " | ".join(cells))
    for point, (t_train, t_eval) in walls.items():
        print(f"wall: {point} train {t_train:.0f} s, eval {t_eval:.0f} s")


if __name__ == "__main__":
    main()
