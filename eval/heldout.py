"""Held-out medical perplexity of a project checkpoint: the CPT corpus's held-out split (never trained
on by any stage), overall and per data kind, each with a 95% bootstrap interval.

    result = heldout_perplexity(HeldoutConfig(), "data/cpt/model", device="auto")
    result["overall"]["ppl"], result["by_kind"]["corpus_text"]["ppl_ci_high"]

Why in the harness: benchmark accuracy on a 135M model moves little and noisily, while perplexity on
held-out medical text of every kind (KG QA, captions, image instructions, OCR, corpus documents) shows
what continued pre-training did to the language model, and whether it forgot general text. Measuring
it for every checkpoint with the same samples, encoding and image budget as training
(tasks/training: SampleEncoder, Collator, perplexity) puts it in the progression next to the
benchmarks, where `cpt` must beat `base`.

Samples come from `cpt_order`'s heldout.jsonl and `cpt_data`'s sample shards. Only checkpoints in the
project's layout (medx_model.json) are measured: a foreign checkpoint, an endpoint or a predictions
file reports the section as not measured, with the reason. Tokens per sample are capped at
`max_tokens`, as in CPT (keep them equal: tokens beyond the cap were never trained on).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tasks.common.io import read_jsonl

DEFAULT_SEED = 1234


@dataclasses.dataclass
class HeldoutConfig:
    heldout: str = "data/cpt_order/heldout.jsonl"   # "" = not measured
    samples_dir: str = "data/cpt_data/samples"
    max_tokens: int = 128                           # CPT's encode.max_tokens
    batch_size: int = 8


def not_measured(reason: str) -> dict:
    return {"measured": False, "reason": reason}


def heldout_perplexity(cfg: HeldoutConfig, model_path: str | Path, *, device: str = "auto",
                       images: dict | None = None, seed: int = DEFAULT_SEED) -> dict:
    """{"measured": True, "samples", "rejected", "overall": {...}, "by_kind": {kind: {...}}} or
    {"measured": False, "reason"}; each {...} is tasks.training.perplexity.summarize's row."""
    from models.checkpoint import META_FILE
    from tasks.common.config import project_root, resolve

    if not cfg.heldout:
        return not_measured("no held-out split configured")
    heldout_file = resolve(cfg.heldout)
    if not heldout_file.is_file():
        return not_measured(f"{cfg.heldout} missing (run the cpt_order stage)")
    if not model_path or not (Path(model_path) / META_FILE).is_file():
        return not_measured("not a checkpoint in the project's layout (medx_model.json)")

    from tasks.training.collate import Collator
    from tasks.training.dataset import OrderedDataset
    from tasks.training.device import resolve as resolve_device
    from tasks.training.encode import EncodeParams, SampleEncoder, encode_all
    from tasks.training.model_io import load_model
    from tasks.training.perplexity import perplexity
    from tasks.training.splits import data_kind, read_samples

    wanted = [r["id"] for r in read_jsonl(heldout_file)]
    samples, _ = read_samples(resolve(cfg.samples_dir))
    by_id = {s["id"]: s for s in samples if s.get("id") in set(wanted)}
    vlm = load_model(model_path)
    placement = resolve_device(device)
    params = EncodeParams(max_tokens=cfg.max_tokens, images=dict(images or {}))
    encoder = SampleEncoder(vlm.processor, params, project_root(), budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all([by_id[i] for i in wanted if i in by_id], encoder)
    ids = [i for i in wanted if i in encoded]
    if not ids:
        return not_measured("no held-out sample could be encoded")
    collate = Collator(vlm.processor, encoder.budget, encoder.factor)
    model = vlm.model.to(device=placement.device, dtype=placement.dtype)
    result = perplexity(model, OrderedDataset(encoded, ids), collate, cfg.batch_size,
                        group_of={i: data_kind(by_id[i]) for i in ids}, seed=seed)
    clean = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "by_group")}  # noqa: E731
    return {"measured": True, "samples": len(ids), "missing": len(set(wanted) - set(by_id)),
            "rejected": len(rejected), "overall": clean(result),
            "by_kind": {k: clean(v) for k, v in result.get("by_group", {}).items()}}
