"""Stage `eval`: evaluate one checkpoint on the unified Med-VLM benchmark suite (paper §6).

Run:   python -m tasks.eval checkpoint=base model_path=data/base_model/model [key=value ...]
       python -m tasks.eval checkpoint=api endpoint=http://host:8000/v1 endpoint_model=m
       python -m tasks.eval progression [root=data/eval out=data/eval_progression]
DVC:   dvc repro eval          (`foreach` over the top-level param `eval_checkpoints`: one stage per
                                checkpoint, so a new checkpoint is one line that leaves the others'
                                params untouched), then `dvc repro eval_progression`

What (eval/ holds the logic; this is the shell that binds config, output dir and MLflow):
1. reads the `eval:` params section into `eval.harness.EvalConfig` (every key has a default, so the
   stage also runs when the section is absent);
2. evaluates the checkpoint (HF causal LM or vision-language model by path, an OpenAI-compatible
   endpoint, or a predictions file) on every configured benchmark with one protocol: the same
   templates, greedy decoding, deterministic parsing, generation Pass@1 and option log-likelihood;
3. writes data/eval/<checkpoint>/: items.jsonl (one scored row per item and mode), metrics.json
   (DVC metrics), scores_plot.json (DVC plots), summary.json, report.md, table.csv, scores.png,
   quarantine.jsonl -- atomically; per-item results also go to .cache/eval/<checkpoint>/ as they are
   produced, so a run stopped by a failing endpoint resumes without asking answered items again;
4. MLflow child run `eval@<checkpoint>`: <benchmark>.<mode>.<metric>, category macro-averages,
   parse-failure rates, decontamination overlap, items/s per mode; artifacts report.md, table.csv
   (+ an MLflow table), scores.png, metrics.json.

`progression` assembles data/eval/*/metrics.json into data/eval_progression/ (progression_plot.json
for DVC plots, progression_metrics.json for DVC metrics, progression.md/.csv/.png): which stage moved
which benchmark.
"""

from __future__ import annotations

import dataclasses
import sys

from eval.harness import EvalConfig, run
from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir
from tasks.common.tracking import stage_run
from tasks.llm.client import load_llm_config, split_llm_overrides

ARTIFACTS = ("report.md", "table.csv", "scores.png", "metrics.json", "summary.json")


@dataclasses.dataclass
class ProgressionConfig:
    root: str = "data/eval"
    out: str = "data/eval_progression"


def numeric_leaves(obj, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(numeric_leaves(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix.rstrip(".")] = float(obj)
    return out


def log_table(tracker, path) -> None:
    """table.csv as an MLflow table (viewable in the UI) beside the CSV artifact."""
    try:
        import pandas as pd
    except ImportError:  # pandas is optional: the CSV artifact is always there
        return
    tracker.mlflow.log_table(data=pd.read_csv(path), artifact_file="eval/table.json")


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["progression"]:
        return progression(argv[1:])
    stage_argv, _ = split_llm_overrides(argv)
    cfg, profile = load_stage_config("eval", EvalConfig, stage_argv)
    llm_cfg = load_llm_config(argv)
    stage = f"eval@{cfg.checkpoint}"
    work = resolve(cfg.work_root) / cfg.checkpoint
    with stage_run(stage, cfg, profile) as tracker, \
            atomic_output_dir(resolve(cfg.out_root) / cfg.checkpoint) as out:
        tracker.mlflow.set_tag("checkpoint", cfg.checkpoint)
        metrics, _, result = run(cfg, out, work, llm_cfg=llm_cfg, restart_on_mismatch=True,
                                 title=f"Evaluation: {cfg.checkpoint}")
        flat = numeric_leaves(metrics)
        for mode in ("generate", "loglik"):
            n, secs = result.timings.get(f"{mode}_items", 0), result.timings.get(f"{mode}_s", 0.0)
            if n and secs:
                flat[f"throughput.{mode}_items_per_s"] = n / secs
        tracker.log_metrics(flat)
        for name in ARTIFACTS:
            if (out / name).exists():
                tracker.log_artifact(out / name, "eval")
        log_table(tracker, out / "table.csv")
    line = ", ".join(f"{n} {100 * e['generate']['score']:.1f}" for n, e in metrics["benchmarks"].items()
                     if "generate" in e)
    print(f"eval@{cfg.checkpoint}: {line}; overall {metrics['overall']}")
    return metrics


def progression(argv: list[str]) -> dict:
    from eval.progression import write_progression

    cfg, profile = load_stage_config("eval_progression", ProgressionConfig, argv)
    with stage_run("eval_progression", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out)) as out:
        res = write_progression(resolve(cfg.root), out)
        tracker.log_metrics(numeric_leaves(res["metrics"]))
        for name in ("progression.md", "progression.csv", "progression.png", "progression_plot.json"):
            tracker.log_artifact(out / name, "eval_progression")
    print(f"eval_progression: {', '.join(res['checkpoints'])} ({res['rows']} rows)")
    return res


if __name__ == "__main__":
    main()
