"""Benchmark: log-likelihood scoring with one full row per option vs one context pass shared by its options.

Run:   .venv/bin/python bench/bench_loglik_context.py [--items 16] [--batch 8] [--model tiny|smollm2|PATH]
                                                      [--threads 2] [--repeats 3] [--device cpu|auto|cuda]
                                                      [--seed 1234] [--json out.json]

Input: the harness's seeded slice (eval.runner.select_prefix, --seed) of --items MedQA-USMLE items
(4 options after a long question) and --items PubMedQA items (yes/no/maybe after a long abstract),
from data_root. The token rows are the ones `HFModel.loglik` builds, with the harness's own code:
the template's `loglik_request` (option-text continuations), `render_plain(prompt, answer_cue=False)`,
the context tokenized with special tokens, each continuation without, the context cut from the left
to `max_length - longest continuation`.

Model (default: data/base_model/model when it exists, else `tiny`):
- `tiny`: a random-weight LlamaForCausalLM (hidden 128, 4 layers, byte-level BPE of 600 tokens,
  4096 positions so PubMedQA abstracts fit), built here in a temp dir with tests/tiny_hf_models.py;
- `smollm2`: SmolLM2-135M-Instruct as a plain HF checkpoint (bench_eval_mcq.smollm2_checkpoint);
- any local HF checkpoint path (a vision checkpoint scores these text items through its decoder).

Two paths over the same rows, same model object:
- full:   every (context + option) row, longest first, in batches of --batch rows, through
          `HFModel._left_pad` + `HFModel._continuation_logprobs` (one long pass per option);
- shared: every context, longest first, in batches of --batch contexts, through
          `HFModel._shared_context_logprobs` (one pass over the contexts, their key/value cache
          repeated per option, one short pass over the options).
The timer covers padding, the forward passes and the log-prob sums (not tokenization, common to
both). A warm-up calls `HFModel.loglik` itself (batch_size --batch) on every item, which also checks
that the rows rebuilt here score as the harness scores them. Each (benchmark, path) runs --repeats
times, interleaved, and the fastest run counts (the machine is shared; the minimum is the least
disturbed measurement).

Reported per benchmark: items/s of each path and shared/full (the speedup); tokens through the model
(full: the sum of row lengths; shared: context lengths + option lengths), with padding, and forward
passes; the maximum absolute difference of the option log-probabilities between the paths (and
between the shared path and `HFModel.loglik`), which must stay under 1e-3 (exit status 1 otherwise);
whether the argmax option agrees for every item.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from eval.benchmarks import REGISTRY, load
from eval.models import HFModel
from eval.runner import select_prefix
from eval.templates import loglik_request
from tasks.common.config import load_params, resolve

BENCHMARKS = ("medqa", "pubmedqa")
TOLERANCE = 1e-3
DEFAULT_MODEL = "data/base_model/model"


def model_path(name: str, tmp: Path) -> Path:
    from bench_eval_mcq import model_path as bench_model_path

    # 4096 positions: PubMedQA abstracts fit without a cut
    return bench_model_path(name, tmp, max_positions=4096)


def build_rows(model: HFModel, items: list) -> dict:
    """The harness's requests and token rows of `items` (as HFModel.loglik builds text rows)."""
    tok = model.tokenizer
    reqs, contexts, truncated = [], [], 0
    for ri, item in enumerate(items):
        req = loglik_request(item)
        ctx = tok(model.render_plain(req.prompt, answer_cue=False))["input_ids"]
        conts = [tok(c, add_special_tokens=False)["input_ids"] for c in req.continuations]
        keep = model.max_length - max(len(c) for c in conts)
        truncated += len(ctx) > keep
        reqs.append((item, req))
        contexts.append((ri, ctx[-keep:], conts))
    # the orders HFModel.loglik uses: longest first, a batch pads little
    full = sorted(((ri, ci, ctx + cont, cont) for ri, ctx, conts in contexts for ci, cont in enumerate(conts)),
                  key=lambda r: (-len(r[2]), r[0], r[1]))
    shared = sorted(contexts, key=lambda r: (-len(r[1]), r[0]))
    return {"reqs": reqs, "full": full, "shared": shared, "truncated": truncated,
            "options": [len(conts) for _, _, conts in contexts]}


def run_full(model: HFModel, rows: list, batch: int, options: list[int]) -> list[list[float]]:
    out = [[0.0] * n for n in options]
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        ids, mask = model._left_pad([r[2] for r in chunk])
        for (ri, ci, _, _), lp in zip(chunk, model._continuation_logprobs(ids, mask, [r[3] for r in chunk])):
            out[ri][ci] = lp
    return out


def run_shared(model: HFModel, rows: list, batch: int, options: list[int]) -> list[list[float]]:
    out: list[list[float]] = [[] for _ in options]
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        for (ri, _, _), lps in zip(chunk, model._shared_context_logprobs([r[1] for r in chunk],
                                                                         [r[2] for r in chunk])):
            out[ri] = lps
    return out


def token_counts(rows: dict, batch: int) -> dict:
    full, shared = rows["full"], rows["shared"]
    full_real = sum(len(r[2]) for r in full)
    full_padded = sum(len(full[s][2]) * len(full[s:s + batch]) for s in range(0, len(full), batch))
    ctx_real = sum(len(r[1]) for r in shared)
    opt_real = sum(len(c) for r in shared for c in r[2])
    shared_padded = 0
    for s in range(0, len(shared), batch):
        chunk = shared[s:s + batch]
        conts = [c for r in chunk for c in r[2]]
        shared_padded += len(chunk[0][1]) * len(chunk) + max(len(c) for c in conts) * len(conts)
    return {"full_tokens": full_real, "full_tokens_padded": full_padded,
            "shared_context_tokens": ctx_real, "shared_option_tokens": opt_real,
            "shared_tokens": ctx_real + opt_real, "shared_tokens_padded": shared_padded,
            "full_passes": math.ceil(len(full) / batch), "shared_passes": 2 * math.ceil(len(shared) / batch)}


def max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max((abs(p - q) for x, y in zip(a, b) for p, q in zip(x, y, strict=True)), default=0.0)


def argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=xs.__getitem__)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=16, help="items per benchmark")
    ap.add_argument("--batch", type=int, default=8, help="rows (full) / contexts (shared) per forward")
    ap.add_argument("--model", default=DEFAULT_MODEL if resolve(DEFAULT_MODEL).is_dir() else "tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    data_root = resolve(load_params().get("data_root", "../shared/data"))
    with tempfile.TemporaryDirectory() as tmp:
        path = model_path(args.model, Path(tmp))
        model = HFModel(path, batch_size=args.batch, threads=args.threads, seed=args.seed, device=args.device)
        print(f"model {args.model} ({path}), {sum(p.numel() for p in model.model.parameters()) / 1e6:.2f}M params, "
              f"{model.placement.describe()}, {args.items} items per benchmark, batch {args.batch}, "
              f"threads {args.threads}, repeats {args.repeats}")
        data = {}
        for name in BENCHMARKS:
            items = select_prefix(load(REGISTRY[name], data_root).items, {"loglik": args.items}, args.seed)["loglik"]
            rows = build_rows(model, items)
            harness = model.loglik(rows["reqs"])        # warm-up, and the harness's own scores
            bad = [r for r in harness if isinstance(r, BaseException)]
            if bad:
                raise SystemExit(f"{name}: HFModel.loglik failed: {bad[0]!r}")
            data[name] = {"n": len(items), "rows": rows, "harness": harness}
        paths = {"full": run_full, "shared": run_shared}
        best: dict = {}
        scores: dict = {}
        for _ in range(args.repeats):
            for name, d in data.items():
                for label, fn in paths.items():
                    t0 = time.perf_counter()
                    lps = fn(model, d["rows"][label], args.batch, d["rows"]["options"])
                    secs = time.perf_counter() - t0
                    best[(name, label)] = min(secs, best.get((name, label), math.inf))
                    scores.setdefault((name, label), lps)
    results: dict = {}
    ok = True
    for name, d in data.items():
        n, full, shared = d["n"], scores[(name, "full")], scores[(name, "shared")]
        r = {"items": n, "options_per_item": sorted(set(d["rows"]["options"])),
             "truncated_contexts": d["rows"]["truncated"],
             "full_seconds": round(best[(name, "full")], 3), "shared_seconds": round(best[(name, "shared")], 3),
             "full_items_per_s": round(n / best[(name, "full")], 3),
             "shared_items_per_s": round(n / best[(name, "shared")], 3),
             "speedup_shared_over_full": round(best[(name, "full")] / best[(name, "shared")], 3),
             **token_counts(d["rows"], args.batch),
             "max_abs_logprob_diff": max_diff(full, shared),
             "max_abs_logprob_diff_vs_harness": max_diff(shared, d["harness"]),
             "argmax_agrees": all(argmax(x) == argmax(y) for x, y in zip(full, shared)),
             "argmax_agreeing_items": sum(argmax(x) == argmax(y) for x, y in zip(full, shared))}
        r["token_ratio_full_over_shared"] = round(r["full_tokens"] / r["shared_tokens"], 3)
        results[name] = r
        within = r["max_abs_logprob_diff"] < TOLERANCE and r["max_abs_logprob_diff_vs_harness"] < TOLERANCE
        ok &= within
        print(f"\n{name}: {n} items x {'/'.join(map(str, r['options_per_item']))} options, "
              f"{r['truncated_contexts']} contexts truncated")
        print(f"  full   : {r['full_seconds']:8.2f} s {r['full_items_per_s']:8.2f} items/s  "
              f"{r['full_tokens']:7d} tokens ({r['full_tokens_padded']} padded) in {r['full_passes']} passes")
        print(f"  shared : {r['shared_seconds']:8.2f} s {r['shared_items_per_s']:8.2f} items/s  "
              f"{r['shared_tokens']:7d} tokens = {r['shared_context_tokens']} context + "
              f"{r['shared_option_tokens']} option ({r['shared_tokens_padded']} padded) in {r['shared_passes']} passes")
        print(f"  speedup shared/full {r['speedup_shared_over_full']:.2f}x, tokens full/shared "
              f"{r['token_ratio_full_over_shared']:.2f}x")
        print(f"  max |logprob diff| full vs shared {r['max_abs_logprob_diff']:.3g}, shared vs HFModel.loglik "
              f"{r['max_abs_logprob_diff_vs_harness']:.3g} ({'ok' if within else f'FAIL >= {TOLERANCE}'}); "
              f"argmax agrees {r['argmax_agreeing_items']}/{n}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "model_path": str(path), "results": results},
                                              indent=2))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
