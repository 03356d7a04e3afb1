"""The paper's claim, tested: the iterative RFT + curriculum paradigm against Fusion and Staged (§5.2.3).

Run:   python -m tasks.rl_paradigms [--paradigms fusion,staged,iterative] [--no-eval] [--set rl.iterations=3 ...]
       python -m tasks.rl_paradigms --table-only      (the table again from comparison.json)
Out:   reports/rl_paradigms/comparison.md + comparison.json (tracked in git), eval/<paradigm>/ (scores)

Each paradigm is a DVC experiment of the `rl` stage (`dvc exp run rl -S rl.paradigm=<p>`): the same
prompts (data/rl_data), the same starting policy (data/sft/model) and the same GRPO budget (rl/plan.py:
3 x iterations x steps_per_phase optimizer steps; the iterative paradigm's RFT phases come on top and are
counted in the table as completions sampled). `dvc exp show` lists them afterwards. `dvc exp run`
resets the branch to the commit it started from: commit nothing while the comparison runs. After each
run its policy is scored by
- the held-out reward (the rl stage's held-out split, no hints): mean with a bootstrap interval, pass
  rate with a Wilson interval;
- the benchmark harness (`python -m tasks.eval`) on the text benchmarks: generation Pass@1 in the
  thinking style and option log-likelihood accuracy, each with its Wilson interval; the settings are the
  `EVAL` list below (shorter thinking budget than the default eval stage so three checkpoints fit);
  the SFT policy is scored the same way, as the row before RL.
Differences against the iterative paradigm carry a 95% interval (held-out reward: a paired bootstrap
over the same held-out prompts; Pass@1: Newcombe), and a change is called one only when that interval
excludes 0. The iterative paradigm runs last, so the workspace ends on the default params
and the pipeline's own `rl` outputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from eval.intervals import bootstrap, newcombe, significant
from tasks.common.config import project_root

PARADIGMS = ("fusion", "staged", "iterative")
TEXT = ("medqa", "medmcqa", "mmlu_medical", "pubmedqa")
EVAL = ["benchmarks=[medqa,medmcqa,mmlu_medical,pubmedqa]", "modes=[generate,loglik]", "style=thinking",
        "max_new_tokens_thinking=160", "instruct.enabled=false", "perplexity.heldout="]


def _run(cmd: list[str], root: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=root, check=True)


def run_paradigm(p: str, root: Path, sets: list[str], out: Path, evaluate: bool) -> dict:
    _run(["dvc", "exp", "run", "rl", "--name", f"rl-{p}", "-S", f"rl.paradigm={p}",
          *[a for s in sets for a in ("-S", s)]], root)
    summary = json.loads((root / "data/rl/summary.json").read_text())
    row = {"paradigm": p, "grpo_steps": summary["grpo_steps"], "rft_steps": summary["rft_steps"],
           "completions_sampled": summary["completions_sampled"], "rft_kept": summary["rft"]["kept"],
           "entropy_bonus_activations": summary["entropy_bonus_activations"],
           "heldout_before": summary["heldout"]["before"], "heldout": summary["heldout"]["final"],
           "heldout_by_prompt": {r["id"]: r["fused"] for r in map(json.loads, (root / "data/rl/heldout.jsonl")
                                                                   .read_text().splitlines())
                                 if r["checkpoint"] == "final"}}
    if evaluate:
        row["benchmarks"] = benchmark_scores(f"rl_{p}", "data/rl/model", root, out)
    return row


def benchmark_scores(name: str, model_path: str, root: Path, out: Path) -> dict:
    """The eval harness on `model_path` (the EVAL settings): Pass@1 and acc_norm per text benchmark."""
    if not (out / "eval" / name / "metrics.json").is_file():
        _run([sys.executable, "-m", "tasks.eval", f"checkpoint={name}", f"model_path={model_path}",
              f"out_root={out / 'eval'}", *EVAL], root)
    metrics = json.loads((out / "eval" / name / "metrics.json").read_text())["benchmarks"]
    return {b: {"generate": {k: metrics[b]["generate"].get(k) for k in
                             ("score", "score_ci_low", "score_ci_high", "score_correct", "n", "parse_failure_rate")},
                "loglik": {k: metrics[b]["loglik"].get(k) for k in
                           ("acc_norm", "acc_norm_ci_low", "acc_norm_ci_high", "acc_norm_correct", "n")}}
            for b in TEXT if b in metrics}


def _ci(mean, lo, hi, pct: bool = False) -> str:
    if mean is None:
        return "n/a"
    f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3f}")
    return f"{f(mean)} [{f(lo)}, {f(hi)}]"


def table(rows: list[dict], sft: dict | None = None) -> str:
    ref = next((r for r in rows if r["paradigm"] == "iterative"), rows[-1])
    lines = ["| paradigm | GRPO steps | completions sampled | RFT kept | held-out reward | vs iterative | "
             "held-out pass rate | " + " | ".join(f"{b} Pass@1" for b in TEXT) + " |",
             "|---" * (7 + len(TEXT)) + "|"]
    for r in rows:
        h, g = r["heldout"], ref["heldout"]
        if r is ref or h["mean"] is None:
            change = "-"
        else:
            ids = sorted(set(r["heldout_by_prompt"]) & set(ref["heldout_by_prompt"]))
            lo, hi = bootstrap([r["heldout_by_prompt"][i] - ref["heldout_by_prompt"][i] for i in ids])
            change = f"{h['mean'] - g['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]{' *' if significant(lo, hi) else ''}"
        cells = []
        for b in TEXT:
            x = (r.get("benchmarks") or {}).get(b, {}).get("generate")
            y = (ref.get("benchmarks") or {}).get(b, {}).get("generate")
            if not x or x.get("n") is None:
                cells.append("n/a")
                continue
            cell = _ci(x["score"], x["score_ci_low"], x["score_ci_high"], pct=True)
            if r is not ref and y:
                d, lo, hi = newcombe(x["score_correct"], x["n"], y["score_correct"], y["n"])
                cell += f" ({100 * d:+.0f}{' *' if significant(lo, hi) else ''})"
            cells.append(cell)
        lines.append(f"| {r['paradigm']} | {r['grpo_steps']} | {r['completions_sampled']} | {r['rft_kept']} | "
                     f"{_ci(h['mean'], *h['ci'])} | {change} | {_ci(h['pass_rate'], *h['pass_ci'], pct=True)} | "
                     + " | ".join(cells) + " |")
    if sft:
        cells = [_ci(x["score"], x["score_ci_low"], x["score_ci_high"], pct=True) if (x := sft.get(b, {})
                 .get("generate")) else "n/a" for b in TEXT]
        lines.append("| sft (before RL) | 0 | - | - | " + _ci(ref["heldout_before"]["mean"], *ref["heldout_before"]["ci"])
                     + " | - | " + _ci(ref["heldout_before"]["pass_rate"], *ref["heldout_before"]["pass_ci"], pct=True)
                     + " | " + " | ".join(cells) + " |")
    before = ref["heldout_before"]
    lines.append(f"\nThe SFT policy before RL: held-out reward {_ci(before['mean'], *before['ci'])}, pass rate "
                 f"{_ci(before['pass_rate'], *before['pass_ci'], pct=True)}. `*`: the 95% interval of the "
                 "difference against the iterative paradigm excludes 0.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paradigms", default=",".join(PARADIGMS))
    ap.add_argument("--set", action="append", default=[], help="extra params, e.g. rl.iterations=3")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--out", default="reports/rl_paradigms")
    ap.add_argument("--table-only", action="store_true", help="rebuild the table from comparison.json")
    args = ap.parse_args(argv)
    root = project_root()
    out = root / args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        rows = json.loads((out / "comparison.json").read_text())
        return _write(out, rows, None if args.no_eval else benchmark_scores("sft", "data/sft/model", root, out))
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=root, capture_output=True, text=True).stdout
    rows = [run_paradigm(p, root, args.set, out, not args.no_eval) for p in args.paradigms.split(",")]
    # `dvc exp run -S` rewrites params.yaml in its own style (comments moved, the quoted "no"/"on" stop
    # keys left bare, which YAML 1.1 readers take as booleans). The last run is the committed paradigm,
    # so the committed file comes back (DVC locks values, and the values are the committed ones)
    last = args.paradigms.split(",")[-1]
    if committed and not args.set and (yaml.safe_load(committed).get("rl") or {}).get("paradigm") == last:
        (root / "params.yaml").write_text(committed)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    return _write(out, rows, None if args.no_eval else benchmark_scores("sft", "data/sft/model", root, out))


def _write(out: Path, rows: list[dict], sft: dict | None) -> int:
    text = table(rows, sft)
    (out / "comparison.md").write_text("# RL paradigms on the same prompts and GRPO budget\n\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
