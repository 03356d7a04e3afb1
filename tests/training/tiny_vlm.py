"""A tiny vision-language checkpoint and CPT sample files, built on the fly for the training tests.

The model is the class the base_model stage saves, in its layout (medx_model.json included) (LightOnOcrForConditionalGeneration: Pixtral
vision encoder -> patch-merge MLP adapter -> Llama decoder) with random weights and a byte-level
BPE tokenizer trained here, the same special tokens (ChatML turns, <|endoftext|> separator,
<image> placeholder). Small enough that a training step takes milliseconds on one CPU core.

Samples follow the cpt_data contract: three topics with disjoint vocabularies (so an embedding
model can separate them), text samples, conversations, and image captions whose images are PNGs
written under `<root>/images/`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from models.checkpoint import write_meta
from models.config import ImageBudget, SpecialTokens

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<image_break>", "<image_end>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TOPICS = {
    "cardio": ["heart", "cardiac", "myocardial", "infarction", "arrhythmia", "atrial", "ventricular", "ecg",
               "troponin", "coronary", "angina", "statin"],
    "derm": ["skin", "rash", "eczema", "psoriasis", "lesion", "melanoma", "dermatitis", "itch", "topical",
             "steroid", "plaque", "biopsy"],
    "chest": ["lung", "chest", "radiograph", "opacity", "pneumonia", "effusion", "pleural", "consolidation",
              "lobe", "airway", "x-ray", "infiltrate"],
}
PATCH = 14
MERGE = 2
FACTOR = PATCH * MERGE
IMAGE_SIDE = 112
BUDGET = ImageBudget(max_pixels=IMAGE_SIDE * IMAGE_SIDE, max_side=IMAGE_SIDE)   # written to medx_model.json


def topic_sentence(rng: random.Random, topic: str, words: int = 12) -> str:
    return " ".join(rng.choice(TOPICS[topic]) for _ in range(words)) + "."


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [topic_sentence(rng, t) for t in TOPICS for _ in range(60)] + ["user assistant system"] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        padding_side="right", chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": "<image>", "image_break_token": "<image_break>",
                              "image_end_token": "<image_end>"})


def build_tiny_vlm(path: Path, *, seed: int = 0, hidden: int = 64, layers: int = 4) -> Path:
    """Save a random tiny LightOnOcr model + processor at `path` (what base_model writes)."""
    import torch
    from transformers import (
        LightOnOcrConfig,
        LightOnOcrForConditionalGeneration,
        LightOnOcrProcessor,
        LlamaConfig,
        PixtralImageProcessorPil,
        PixtralVisionConfig,
    )

    tok = build_tokenizer()
    vision = PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 patch_size=PATCH, image_size=IMAGE_SIDE,
                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    text = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=None,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = LightOnOcrConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), spatial_merge_size=MERGE,
                           image_token_id=tok.image_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LightOnOcrForConditionalGeneration(cfg)
    image_processor = PixtralImageProcessorPil(patch_size={"height": FACTOR, "width": FACTOR},
                                               size={"longest_edge": IMAGE_SIDE})
    processor = LightOnOcrProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH,
                                    spatial_merge_size=MERGE, chat_template=CHAT_TEMPLATE)
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    write_meta(path, variant="tiny", budget=BUDGET, factor=FACTOR, tokens=SpecialTokens())
    return path


def save_png(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode: str = "RGB") -> dict:
    """Write an image; returns its sample reference {path relative to root, sha256}."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        Image.new("RGB", size, color).save(path, format="PNG")
    elif mode == "I;16":
        import numpy as np

        arr = (np.arange(size[0] * size[1], dtype=np.uint16).reshape(size[1], size[0]) * 37) % 4096
        img = Image.fromarray(arr)                         # uint16 -> mode I;16
        assert img.mode == "I;16", img.mode
        img.save(path, format="PNG")
    else:
        Image.new(mode, size, color[0] if mode == "L" else tuple(color) + (0,)).save(
            path, format="JPEG" if mode == "CMYK" else "PNG")
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def make_samples(root: Path, n_per_topic: int = 12, *, seed: int = 0, with_images: bool = True) -> list[dict]:
    """CPT samples over three topics: text, conversations and (chest topic) image captions."""
    rng = random.Random(seed)
    samples = []
    colors = {"cardio": (200, 30, 30), "derm": (30, 200, 30), "chest": (30, 30, 200)}
    for topic in TOPICS:
        for i in range(n_per_topic):
            sid = f"cpt-{topic}-{i:03d}"
            base = {"id": sid, "task": "passage", "source_ids": [f"src-{topic}-{i}"], "meta": {"generator": "local"},
                    "messages": [], "images": [], "text": ""}
            if with_images and topic == "chest" and i % 2 == 0:
                ref = save_png(root / "images" / f"{sid}.png", (56 + 28 * (i % 3), 84), colors[topic])
                ref["path"] = str(Path(ref["path"]).relative_to(root))
                samples.append({**base, "kind": "image_text", "task": "caption", "images": [ref],
                                "text": topic_sentence(rng, topic, 10)})
            elif i % 3 == 1:
                samples.append({**base, "kind": "text", "task": "atomic_qa", "messages": [
                    {"role": "user", "content": topic_sentence(rng, topic, 6) + "?"},
                    {"role": "assistant", "content": topic_sentence(rng, topic, 10)}]})
            else:
                samples.append({**base, "kind": "text", "text": " ".join(topic_sentence(rng, topic)
                                                                          for _ in range(1 + i % 3))})
    return samples


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
