"""Benchmark: SFT training steps on the SFT set's own sequence lengths: tokens/s and MFU, per precision and
batch size, as ratios against the recipe the default profile runs (float32, batch 4).

Run:   .venv/bin/python bench/bench_sft_step.py [--lengths LENGTHS.json] [--batches 4 16 64]
                                                 [--steps 8] [--device auto] [--peak-tflops 989]
       LENGTHS.json: {"rows": [[tokens, loss_tokens, image_tokens], ...]}, what `sft` encodes, e.g. from
       `python bench/bench_sft_step.py --dump-lengths LENGTHS.json` in a project where sft_data has run.

Weights are random (throughput does not depend on their values): the `small` base model (SmolLM2-135M
decoder sizes with the small preset's vision tower, bench_model_forward.random_model). Each batch draws
its samples from the length distribution with a seed and pads to its longest (as the collator does);
the loss covers each sample's last `loss_tokens` positions (assistant-only loss: the answer comes last).
Image tokens are measured as text positions: the decoder's cost per position is the same, and the
vision tower's share is bench_model_forward's figure. A step is forward + backward + AdamW update.
tokens/s counts real (non-pad) tokens; MFU = 6 x parameters x tokens/s / peak (the dense bf16 peak of
the accelerator, --peak-tflops; not printed on a CPU). The baseline is the default profile's recipe
(float32, batch 4, on this device), measured in the same run; every other row is a ratio against it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np
import torch


def dump_lengths(path: Path) -> None:
    """The SFT set's encoded lengths, as the `sft` stage encodes them (needs data/sft_data, data/mid_train)."""
    from tasks.common.config import load_stage_config, project_root, resolve
    from tasks.sft_training.config import SFTConfig
    from tasks.training.encode import SampleEncoder, encode_all
    from tasks.training.model_io import load_model
    from tasks.training.splits import read_samples

    cfg, _ = load_stage_config("sft", SFTConfig, [])
    vlm = load_model(resolve(cfg.base_model_dir))
    enc = SampleEncoder(vlm.processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor,
                        require_assistant_mask=True)
    encoded, _ = encode_all(read_samples(resolve(cfg.samples_dir))[0], enc)
    rows = sorted([int(e.n_tokens), int(e.assistant_mask.sum()), int(e.n_image_tokens)] for e in encoded.values())
    path.write_text(json.dumps({"max_tokens": cfg.encode.max_tokens, "rows": rows}))
    print(f"{len(rows)} samples -> {path}")


def batches(rows: list, batch: int, n: int, vocab: int, seed: int) -> list[tuple[dict, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        picked = [rows[i] for i in rng.integers(len(rows), size=batch)]
        width = max(r[0] for r in picked)
        ids = torch.randint(10, vocab - 1, (batch, width), generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
        mask = torch.zeros(batch, width, dtype=torch.long)
        labels = torch.full((batch, width), -100)
        for b, (n_tok, n_loss, _) in enumerate(picked):
            mask[b, width - n_tok:] = 1                     # left padding, as generation-ready batches are
            labels[b, width - n_loss:] = ids[b, width - n_loss:]
        out.append(({"input_ids": ids, "attention_mask": mask, "labels": labels}, int(mask.sum())))
    return out


def measure(model, data: list, device: torch.device, dtype: torch.dtype | None, steps: int) -> float:
    """Real tokens per second over `steps` optimizer steps after two warm-up steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step(inputs):
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for inputs, _ in data[:2]:
        step(inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, tokens = time.perf_counter(), 0
    for inputs, n in data[2:2 + steps]:
        step(inputs)
        tokens += n
    if device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    from bench_model_forward import VOCAB, random_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="")
    ap.add_argument("--dump-lengths", default="")
    ap.add_argument("--batches", nargs="+", type=int, default=[4, 16, 64])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=989.0)   # H100/H200 SXM dense bf16
    args = ap.parse_args()
    if args.dump_lengths:
        return dump_lengths(Path(args.dump_lengths))
    rows = json.loads(Path(args.lengths).read_text())["rows"] if args.lengths else \
        [[n, n // 2, 0] for n in (128, 192, 256, 320, 384)]
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          (args.device if args.device != "auto" else "cpu"))
    torch.set_num_threads(args.threads)
    model, _, _ = random_model("small")
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    lengths = np.array([r[0] for r in rows])
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"torch {torch.__version__}, {name}; {params / 1e6:.1f}M parameters; {len(rows)} SFT lengths, "
          f"mean {lengths.mean():.0f}, max {lengths.max()}")
    plans = [("float32", None, 4)]
    if device.type == "cuda":
        plans += [("bfloat16 autocast", torch.bfloat16, b) for b in args.batches]
        plans += [("float32", None, b) for b in args.batches if b != 4]
    else:
        plans += [("float32", None, b) for b in args.batches if b != 4][:1]
    print("| precision | batch | tokens/s | x baseline | MFU |")
    print("|---|---|---|---|---|")
    base = None
    for label, dtype, b in plans:
        data = batches(rows, b, args.steps + 2, VOCAB["small"], seed=b)
        try:
            tps = measure(model, data, device, dtype, args.steps)
        except torch.OutOfMemoryError:
            print(f"| {label} | {b} | out of memory | | |")
            continue
        base = base or tps
        mfu = f"{6 * params * tps / (args.peak_tflops * 1e12):.1%}" if device.type == "cuda" else "n/a"
        print(f"| {label} | {b} | {tps:,.0f} | {tps / base:.2f} | {mfu} |")


if __name__ == "__main__":
    main()
