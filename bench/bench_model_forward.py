"""Benchmark: forward and forward+backward tokens/s of the base-model variants on this CPU.

Run:   .venv/bin/python bench/bench_model_forward.py [--variants tiny small] [--batch 4] [--seq 256]
                                                      [--steps 3] [--threads 2] [--from-disk DIR]

Weights are random (throughput does not depend on their values): `tiny` is the tiny preset with
an 8k vocabulary, `small` the SmolLM2-135M decoder sizes (576 hidden, 30 layers, 9/3 heads,
49216 rows) with the small preset's vision tower; --from-disk DIR measures a saved checkpoint
instead (e.g. data/base_model/model). Two workloads per variant, float32:
- text: batch x seq random token ids;
- image+text: each sample also carries one image at the variant's full pixel budget; its visual
  tokens replace text positions (the sequence grows only if the image would not fit).
tokens/s counts every position of the batch; images/s is samples with an image per second.
Then greedy generation at batch 1 (a --seq-token prompt, 32 new tokens, KV cache): new tokens/s,
the figure that bounds evaluation and RL rollouts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from models.config import BaseModelConfig, DecoderConfig, resolve_arch
from models.vlm import decoder_config, image_factor, parameter_counts, vlm_config

SMOLLM2_135M = DecoderConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                             num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0)
VOCAB = {"tiny": 8064, "small": 49216}


class SizesOnly:
    """What the config builders read from a tokenizer."""

    eos_token_id, pad_token_id, image_token_id = 2, 0, 3


def random_model(variant: str):
    from dataclasses import replace

    from transformers import LightOnOcrForConditionalGeneration

    arch = resolve_arch(BaseModelConfig(variant=variant))
    if arch.decoder is None:
        arch = replace(arch, decoder=SMOLLM2_135M)
    cfg = vlm_config(arch, decoder_config(arch.decoder, VOCAB[variant], SizesOnly()), SizesOnly())
    torch.manual_seed(0)
    return LightOnOcrForConditionalGeneration(cfg).eval(), arch.images.max_pixels, image_factor(arch)


def image_batch(batch: int, seq: int, max_pixels: int, factor: int, vocab: int):
    """input_ids with one full-budget square-ish image per sample, plus pixel_values/image_sizes."""
    side = int(max_pixels ** 0.5) // factor * factor
    n_visual = (side // factor) ** 2
    ids = torch.randint(10, vocab - 1, (batch, max(seq, n_visual + 32)))  # room for the image
    ids[:, 1:1 + n_visual] = 3
    pixels = torch.randn(batch, 3, side, side)
    sizes = torch.tensor([[side, side]] * batch)
    return {"input_ids": ids, "pixel_values": pixels, "image_sizes": sizes}, n_visual


def timed(model, inputs: dict, steps: int, train: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the fastest of `steps` steps, after one
    warm-up step: on a shared machine the fastest step is the one least disturbed by others."""
    def step():
        if train:
            model(**inputs, labels=inputs["input_ids"]).loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(**inputs)
    model.train(train)
    step()
    best = (float("inf"), float("inf"))
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    model.eval()
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["tiny", "small"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--from-disk", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} x seq {args.seq}, float32")
    print("| variant | params | workload | forward tok/s | fwd+bwd tok/s | fwd+bwd images/s |")
    print("|---|---:|---|---:|---:|---:|")
    print("(each cell: wall-clock rate / rate per CPU-second of this process x threads; fastest step of")
    print(" --steps. Under contention the CPU-second rate is a lower bound: waiting OpenMP threads spin)")
    for variant in ["disk"] if args.from_disk else args.variants:
        if args.from_disk:
            from models.checkpoint import load_vlm
            vlm = load_vlm(args.from_disk)
            model, max_pixels, factor = vlm.model, vlm.budget.max_pixels, vlm.factor
            vocab = model.get_input_embeddings().num_embeddings
        else:
            model, max_pixels, factor = random_model(variant)
            vocab = VOCAB[variant]
        params = parameter_counts(model)["total"]
        text = {"input_ids": torch.randint(10, vocab - 1, (args.batch, args.seq))}
        img, n_visual = image_batch(args.batch, args.seq, max_pixels, factor, vocab)
        k = args.threads
        for name, inputs in (("text", text), (f"image+text ({n_visual} visual tokens)", img)):
            n = inputs["input_ids"].numel()
            (fw, fc), (tw, tc) = timed(model, inputs, args.steps, False), timed(model, inputs, args.steps, True)
            per_img = f"{args.batch / tw:.2f} / {args.batch * k / tc:.2f}" if "pixel_values" in inputs else "-"
            print(f"| {variant} | {params / 1e6:.1f}M | {name} | {n / fw:.0f} / {n * k / fc:.0f} | "
                  f"{n / tw:.0f} / {n * k / tc:.0f} | {per_img} |")
        wall, cpu = generation_rate(model, text["input_ids"][:1], new_tokens=32)
        print(f"| {variant} | {params / 1e6:.1f}M | generate, batch 1, 32 new tokens | "
              f"{32 / wall:.1f} / {32 * k / cpu:.1f} new tok/s | | |")


def generation_rate(model, prompt: torch.Tensor, new_tokens: int, tries: int = 2) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `tries` greedy generations of `new_tokens`."""
    best = (float("inf"), float("inf"))
    with torch.no_grad():
        model.generate(input_ids=prompt, max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
        for _ in range(tries):
            t0, c0 = time.perf_counter(), time.process_time()
            model.generate(input_ids=prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
            best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


if __name__ == "__main__":
    main()
