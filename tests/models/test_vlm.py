"""models.vlm + models.build on the micro tiny variant: what is saved, reloads identically,
handles batches of differently shaped images, generates, and counts its parameters."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from models.checkpoint import load_vlm
from models.config import BaseModelConfig, ModelConfigError, resolve_arch
from models.vlm import parameter_counts

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
         "processor_config.json", "generation_config.json", "medx_model.json", "README.md")


def test_saved_layout_and_summary(micro_build):
    out, summary, metrics = micro_build
    for name in FILES:
        assert (out / "model" / name).is_file(), name
    p = summary["parameters"]
    assert p["total"] == p["vision_tower"] + p["adapter"] + p["decoder"] + p["embeddings"]
    assert min(p.values()) > 0
    assert summary["arch"]["class"] == "LightOnOcrForConditionalGeneration"
    s = summary["sanity"]
    assert s["image_source"] == "img-good" and s["image_visual_tokens"] > 0
    assert set(s["images_skipped"]) <= {"too_small", "extreme_aspect_ratio", "corrupt_image", "missing_image"}
    assert summary["corpus"]["bad_lines"] == 1 and summary["tokenizer"]["holdout_texts"] == 10
    assert metrics["forward_tokens_per_s"] > 0 and metrics["train_tokens_per_s"] > 0
    meta = json.loads((out / "model" / "medx_model.json").read_text())
    assert meta["image_factor"] == 28 and meta["special_tokens"]["think_open"] == "<think>"


def test_reload_with_auto_classes_gives_identical_logits(micro_build):
    path = micro_build[0] / "model"
    vlm = load_vlm(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    proc = AutoProcessor.from_pretrained(path)
    img = vlm.image(Image.new("RGB", (150, 100), (120, 60, 30)))
    batch = proc(text=[vlm.render([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}])],
                 images=[img], return_tensors="pt")
    with torch.no_grad():
        a, b = vlm.model(**batch).logits, model(**batch).logits
    assert torch.equal(a, b)
    emb = model.get_input_embeddings().weight
    assert model.lm_head.weight.data_ptr() == emb.data_ptr()          # tied, as saved
    assert emb.shape[0] % 64 == 0 and emb.shape[0] >= len(proc.tokenizer)


def test_mixed_shapes_batch_and_generation(micro_build):
    vlm = load_vlm(micro_build[0] / "model")
    imgs = [vlm.image(Image.new("RGB", (400, 100))), vlm.image(Image.new("RGB", (90, 260))),
            vlm.image(Image.new("RGB", (64, 64)))]
    user = [{"type": "image"}, {"type": "text", "text": "Compare."}]
    texts = [vlm.render([{"role": "user", "content": [user[0], *user]}], add_generation_prompt=True),
             vlm.render([{"role": "user", "content": user}], add_generation_prompt=True)]
    batch = vlm.processor(text=texts, images=imgs, return_tensors="pt", padding=True)
    with torch.no_grad():
        loss = vlm.model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)
    vlm.tokenizer.padding_side = "left"
    batch = vlm.processor(text=texts, images=imgs, return_tensors="pt", padding=True)
    out = vlm.model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= batch["input_ids"].shape[1] + 4


def test_parameter_counts_dedupe_tied_weights(micro_build):
    vlm = load_vlm(micro_build[0] / "model")
    counts = parameter_counts(vlm.model)
    assert counts["total"] == sum(p.numel() for p in vlm.model.parameters())   # parameters() dedupes


def test_tiny_preset_is_in_the_target_range():
    from models.vlm import build_scratch_vlm

    class Tok:  # sizes only: the real tokenizer is exercised elsewhere
        eos_token_id, pad_token_id, image_token_id = 2, 0, 3

        def __len__(self):
            return 8006

    with torch.device("meta"):
        model = build_scratch_vlm(resolve_arch(BaseModelConfig(variant="tiny")), Tok(), seed=0)
    total = parameter_counts(model)["total"]
    assert 10_000_000 <= total <= 30_000_000


@pytest.mark.parametrize("over, match", [
    ({"vision": {"hidden_sise": 64}}, "unknown key"),
    ({"decoder": {"hidden_size": "big"}}, "expected int"),
    ({"decoder": {"num_attention_heads": 5}}, "heads do not divide"),
    ({"images": {"min_pixels": 10}}, "min_pixels"),
    ({"variant": "small", "decoder": {"hidden_size": 64}}, "SmolLM2"),
])
def test_bad_arch_overrides_fail_loudly(over, match):
    with pytest.raises(ModelConfigError, match=match):
        resolve_arch(BaseModelConfig(**over))
