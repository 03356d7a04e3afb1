"""Tiny random-weight HF checkpoints built on the fly (the one place tests build models):

- build_llama:    LlamaForCausalLM (with or without a chat template);
- build_llava:    LLaVA-style LlavaForConditionalGeneration (CLIP vision tower + projector + Llama);
- build_lighton:  the class the project's base_model stage saves, LightOnOcrForConditionalGeneration
                  (Pixtral vision tower at native resolution, 2x2 patch merge + MLP adapter, Llama
                  decoder) with its LightOnOcrProcessor, sizes and tokenizer as arguments;
- build_tiny_vlm: build_lighton in the project's checkpoint layout (medx_model.json included) with a
                  ChatML tokenizer (<|im_start|>/<|im_end|> turns, <|endoftext|> separator, <image>
                  placeholder) trained on the CPT test topics: what the training tests train.

Each is saved with save_pretrained beside a byte-level BPE tokenizer trained here with `tokenizers`.
Random weights answer nonsense; they exercise the real loading, batching, padding, chat-template,
image-token, log-likelihood and training code paths at CPU speed (a training step takes milliseconds).
"""

from __future__ import annotations

import random
from pathlib import Path

CORPUS = [
    "The answer is A. The answer is B. The answer is C. The answer is D. Answer: yes, no or maybe.",
    "Question: Which of the following is the most likely diagnosis? Options: pneumonia, asthma.",
    "A 45-year-old man presents with chest pain radiating to the left arm and shortness of breath.",
    "Context: the study measured blood pressure in 120 patients treated with an ACE inhibitor.",
    "Is there a mass in the liver? Where is the lesion located? The right upper lobe is opaque.",
    "You are a medical expert. Reply with the letter of the correct option on the last line.",
]
# ChatML-like turns; list content (processor chat) puts <image> where the image part is.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<image_break>", "<image_end>"]

# The training tests' vocabulary: three topics with disjoint words (so an embedding model can separate
# them; tests/vlm_fixtures.py writes CPT samples over them) and ChatML turns.
TOPICS = {
    "cardio": ["heart", "cardiac", "myocardial", "infarction", "arrhythmia", "atrial", "ventricular", "ecg",
               "troponin", "coronary", "angina", "statin"],
    "derm": ["skin", "rash", "eczema", "psoriasis", "lesion", "melanoma", "dermatitis", "itch", "topical",
             "steroid", "plaque", "biopsy"],
    "chest": ["lung", "chest", "radiograph", "opacity", "pneumonia", "effusion", "pleural", "consolidation",
              "lobe", "airway", "x-ray", "infiltrate"],
}
CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<image_break>", "<image_end>"]
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TINY_PATCH = 14
TINY_MERGE = 2
TINY_FACTOR = TINY_PATCH * TINY_MERGE         # pixels per visual token along a side
TINY_IMAGE_SIDE = 112


def topic_sentence(rng: random.Random, topic: str, words: int = 12) -> str:
    return " ".join(rng.choice(TOPICS[topic]) for _ in range(words)) + "."


def tokenizer(vocab_size: int = 600, chat: bool = True, extra_image_tokens: bool = False):
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    image_tokens = {"image_token": "<image>"}
    if extra_image_tokens:   # Pixtral-style row breaks and image end (LightOnOcrProcessor needs them)
        image_tokens |= {"image_break_token": "<image_break>", "image_end_token": "<image_end>"}
    ht = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                 pad_token="<pad>", extra_special_tokens=image_tokens)
    if chat:
        ht.chat_template = CHAT_TEMPLATE
    return ht


def chatml_tokenizer():
    """A byte-level BPE over the topic vocabulary with ChatML specials (eos <|im_end|>, pad
    <|endoftext|>, no bos) and CHATML_TEMPLATE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [topic_sentence(rng, t) for t in TOPICS for _ in range(60)] + ["user assistant system"] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=CHATML_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        padding_side="right", chat_template=CHATML_TEMPLATE,
        extra_special_tokens={"image_token": "<image>", "image_break_token": "<image_break>",
                              "image_end_token": "<image_end>"})


def _llama_config(tok, *, hidden: int, layers: int, max_positions: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)


def build_llama(path: Path, *, chat: bool = True, hidden: int = 32, layers: int = 2, max_positions: int = 512,
                seed: int = 0) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    tok = tokenizer(chat=chat)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(tok, hidden=hidden, layers=layers, max_positions=max_positions))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return Path(path)


def build_llava(path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tokenizer(chat=True)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=32)
    cfg = LlavaConfig(vision_config=vision, text_config=_llama_config(tok, hidden=hidden, layers=layers,
                                                                      max_positions=512),
                      image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                      vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    # 32/8 = 4x4 patches + CLS; the "default" strategy drops CLS: 16 image tokens per image
    proc = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=8, num_additional_image_tokens=1,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return Path(path)


def build_lighton(path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0, tok=None,
                  chat_template: str = CHAT_TEMPLATE, vision_layers: int = 2, vision_heads: int = 4,
                  patch: int = 8, merge: int = 2, image_side: int = 64) -> Path:
    """The class the project's base_model stage saves (LightOnOcrForConditionalGeneration: Pixtral
    vision tower at native resolution, `merge`x`merge` patch merge + MLP adapter, Llama decoder) with
    its LightOnOcrProcessor: each image gets placeholder tokens from its own size."""
    import torch
    from transformers import (
        LightOnOcrConfig,
        LightOnOcrForConditionalGeneration,
        LightOnOcrProcessor,
        PixtralImageProcessorPil,
        PixtralVisionConfig,
    )

    tok = tok or tokenizer(chat=True, extra_image_tokens=True)
    vision = PixtralVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=vision_layers,
                                 num_attention_heads=vision_heads, patch_size=patch, image_size=image_side,
                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    text = _llama_config(tok, hidden=hidden, layers=layers, max_positions=512)
    cfg = LightOnOcrConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), spatial_merge_size=merge,
                           image_token_id=tok.image_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LightOnOcrForConditionalGeneration(cfg)
    images = PixtralImageProcessorPil(patch_size={"height": patch * merge, "width": patch * merge},
                                      size={"longest_edge": image_side})
    proc = LightOnOcrProcessor(image_processor=images, tokenizer=tok, patch_size=patch, spatial_merge_size=merge,
                               chat_template=chat_template)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return Path(path)


def build_tiny_vlm(path: Path, *, seed: int = 0, hidden: int = 64, layers: int = 4) -> Path:
    """A random tiny LightOnOcr model + processor at `path`, in the layout the base_model stage writes
    (medx_model.json: image budget TINY_IMAGE_SIDE^2, TINY_FACTOR pixels per visual token)."""
    from models.checkpoint import write_meta
    from models.config import ImageBudget, SpecialTokens

    build_lighton(path, hidden=hidden, layers=layers, seed=seed, tok=chatml_tokenizer(),
                  chat_template=CHATML_TEMPLATE, vision_layers=1, vision_heads=2, patch=TINY_PATCH,
                  merge=TINY_MERGE, image_side=TINY_IMAGE_SIDE)
    budget = ImageBudget(max_pixels=TINY_IMAGE_SIDE * TINY_IMAGE_SIDE, max_side=TINY_IMAGE_SIDE)
    write_meta(Path(path), variant="tiny", budget=budget, factor=TINY_FACTOR, tokens=SpecialTokens())
    return Path(path)
