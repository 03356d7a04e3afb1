"""Command line for evaluating outside DVC, with the same protocol as the `eval` stage.

    python -m eval --model data/base_model/model --benchmarks medqa,pubmedqa --limit 50 --out /tmp/ev
    python -m eval --endpoint http://host:8000/v1 --endpoint-model m --endpoint-revision ckpt-0420 --out /tmp/ev
    python -m eval --endpoint local --benchmarks pubmedqa --limit 20 --out /tmp/ev   # project llama.cpp server
    python -m eval --predictions preds.jsonl --benchmarks medqa --out /tmp/ev        # score outputs only
    python -m eval --model M --byo my_bench=mcq:path/to/my_bench.jsonl --benchmarks my_bench --out /tmp/ev
    python -m eval --model M --limit 20 --mode-limits loglik=200 --images max_pixels=50176 --out /tmp/ev
    python -m eval --model M --benchmarks medqa --instruct-items 20 --instruct-multi-turn 4 --out /tmp/ev
    python -m eval --predictions preds.jsonl --no-instruct --out /tmp/ev
    python -m eval progression --root data/eval --out data/eval_progression
    python -m eval list

Greedy decoding, fixed seeds, batched generation (--batch-size) and a progress bar. Results go to
--out: items.jsonl (one row per item and mode), metrics.json, report.md, scores.png, ... Per-item
results are appended to --out/work/items.jsonl as they come: a run that stops (an endpoint that
fails mid-run) resumes from there on the next call; --fresh discards them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eval.benchmarks import BUNDLED, CATEGORIES, FAMILIES, REGISTRY, parse_byo_arg
from eval.harness import ByoConfig, DecontamConfig, EvalConfig, JudgeConfig, run
from eval.instruct import InstructParams
from eval.runner import ResumeMismatch, RunInterrupted


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _number(s: str) -> int | float:
    try:
        return int(s)
    except ValueError:
        return float(s)


def _mapping(s: str) -> dict[str, int | float]:
    """'key=number,key=number' -> {key: number} (--mode-limits, --images)."""
    out = {}
    for part in _csv(s):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = _number(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected key=number") from None
    return out


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval", description="Unified medical benchmark harness.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local HF checkpoint directory (causal LM or vision-language)")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, or 'local' for the project's server")
    src.add_argument("--predictions", help="JSONL of {benchmark, id, output} to score without a model")
    p.add_argument("--endpoint-model", default="", help="model name at the endpoint")
    p.add_argument("--endpoint-revision", default="",
                   help="what the endpoint serves (checkpoint name or hash): scopes cached answers and resume")
    p.add_argument("--vision", action="store_true", help="send images to the endpoint (data URLs)")
    p.add_argument("--benchmarks", type=_csv, default=list(BUNDLED), help=f"comma list; bundled: {','.join(BUNDLED)}")
    p.add_argument("--byo", action="append", default=[], metavar="NAME=FAMILY:PATH[:CATEGORY]",
                   help=f"a bring-your-own JSONL benchmark (families {','.join(FAMILIES)})")
    p.add_argument("--limit", type=int, default=0, help="items per benchmark, seeded sample (0 = all)")
    p.add_argument("--mode-limits", type=_mapping, default={}, metavar="MODE=N[,MODE=N]",
                   help="items per benchmark for a mode instead of --limit, e.g. loglik=200")
    p.add_argument("--images", type=_mapping, default={}, metavar="KEY=N[,KEY=N]",
                   help="image budget overrides (ImageBudget fields, e.g. max_pixels=50176,max_side=448)")
    p.add_argument("--modes", type=_csv, default=["generate", "loglik"])
    p.add_argument("--style", choices=["auto", "direct", "thinking"], default="auto")
    p.add_argument("--continuation", choices=["text", "letter"], default="text")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="HF model: auto = cuda + bfloat16 when a GPU is present, else cpu float32")
    p.add_argument("--judge", choices=["local", "llm", "none"], default="local", help="long-form rubric judge")
    defaults = InstructParams()
    p.add_argument("--no-instruct", action="store_true", help="skip the instruction-following benchmark")
    p.add_argument("--instruct-items", type=int, default=defaults.single_items,
                   help="instruction following: single-turn prompts")
    p.add_argument("--instruct-multi-turn", type=int, default=defaults.multi_turn_items,
                   help="instruction following: three-turn conversations (persistence)")
    p.add_argument("--instruct-max-new-tokens", type=int, default=defaults.max_new_tokens,
                   help="instruction following: reply budget (direct style)")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--decontam-report", default="data/clean/decontamination_report.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--fresh", action="store_true", help="discard results already in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(a: argparse.Namespace) -> EvalConfig:
    byo = {}
    for arg in a.byo:
        spec = parse_byo_arg(arg)
        byo[spec.name] = ByoConfig(spec.path, spec.family, spec.category)
    benchmarks = [b for b in a.benchmarks if b not in byo]
    name = Path(a.model or a.predictions or "").stem or a.endpoint_model or "endpoint"
    return EvalConfig(checkpoint=name,
                      model_path=a.model or "", endpoint=a.endpoint or "", endpoint_model=a.endpoint_model,
                      endpoint_revision=a.endpoint_revision, endpoint_vision=a.vision,
                      predictions=a.predictions or "", benchmarks=benchmarks, byo=byo,
                      limit=a.limit, mode_limits=a.mode_limits, images=a.images, modes=a.modes, style=a.style,
                      continuation=a.continuation,
                      max_new_tokens=a.max_new_tokens, batch_size=a.batch_size, threads=a.threads, seed=a.seed,
                      device=a.device, data_root=a.data_root, judge=JudgeConfig(method=a.judge),
                      decontam=DecontamConfig(report=a.decontam_report),
                      instruct=InstructParams(enabled=not a.no_instruct, single_items=a.instruct_items,
                                              multi_turn_items=a.instruct_multi_turn,
                                              max_new_tokens=a.instruct_max_new_tokens))


def print_summary(metrics: dict) -> None:
    for name, e in metrics["benchmarks"].items():
        parts = []
        if "generate" in e:
            g = e["generate"]
            parts.append(f"pass@1 {100 * g['score']:.1f} (chance {100 * g['chance']:.1f}, "
                         f"parse fail {100 * g['parse_failure_rate']:.1f}%)")
        if "loglik" in e:
            ll = e["loglik"]
            parts.append(f"loglik acc {100 * ll['acc']:.1f} acc_norm {100 * ll['acc_norm']:.1f}")
        parts.append(f"quarantined {e['quarantined']}, skipped {e['skipped']}")
        print(f"{name:>14}: " + "; ".join(parts))
    for cat, c in metrics["categories"].items():
        print(f"{'[' + cat + ']':>14}: " + ", ".join(f"{m} {100 * c[m]:.1f}" for m in ("generate", "loglik") if m in c))
    ins = metrics.get("instruct")
    if ins is not None:
        scores = [f"{k.replace('_', ' ')} {100 * ins[k]:.1f}" for k in ("prompt_strict", "prompt_loose",
                                                                        "instruction_strict", "instruction_loose")
                  if k in ins]
        if "persistence_strict" in ins["multi_turn"]:
            scores.append(f"multi-turn persistence {100 * ins['multi_turn']['persistence_strict']:.1f}")
        print(f"{'instruct':>14}: " + ("; ".join(scores) if scores else f"skipped {ins['skipped']}"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["list"]:
        for name, spec in REGISTRY.items():
            print(f"{name:>14}  {spec.family:<8} {spec.category:<16} {spec.description}")
        print(f"categories: {', '.join(CATEGORIES)}")
        return 0
    if argv[:1] == ["progression"]:
        from eval.progression import write_progression

        p = argparse.ArgumentParser(prog="python -m eval progression")
        p.add_argument("--root", default="data/eval")
        p.add_argument("--out", default="data/eval_progression")
        a = p.parse_args(argv[1:])
        res = write_progression(a.root, a.out)
        print(f"progression: {len(res['checkpoints'])} checkpoints ({', '.join(res['checkpoints'])}), "
              f"{res['rows']} rows -> {a.out}")
        return 0
    parser = run_parser()
    a = parser.parse_args(argv)
    try:
        cfg = config_from_args(a)
    except ValueError as e:          # a bad mode name, count or image budget key: a usage error
        parser.error(str(e))
    try:
        # per-item results accumulate in <out>/work (resumable); <out>/items.jsonl is this run's
        metrics, _, _ = run(cfg, a.out, Path(a.out) / "work", progress=not a.no_progress, fresh=a.fresh,
                            title=f"Evaluation: {cfg.checkpoint}")
    except RunInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 3
    except ResumeMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(metrics)
    print(f"report: {a.out}/report.md")
    return 0
