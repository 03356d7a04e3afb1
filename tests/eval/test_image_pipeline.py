"""Evaluation loads images the way training does: `models.images.load_image` with the checkpoint's own
image budget and pixels per visual token (medx_model.json), overridable by the `images` param, for
HF checkpoints and endpoints alike. The vision tower gets the same pixel tensor at evaluation as in a
training batch of the same image; the budget is part of the adapter's identity."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scripted_endpoint import ScriptedEndpoint
from tiny_hf_models import TINY_FACTOR, TINY_IMAGE_SIDE, build_tiny_vlm

from eval.benchmarks import byo_spec
from eval.harness import EvalConfig
from eval.models import ENDPOINT_IMAGE_FACTOR, EndpointModel, HFModel
from eval.runner import RunSettings, evaluate
from eval.templates import generation_prompt
from models.checkpoint import load_vlm
from models.config import ImageBudget
from models.images import fit_size
from tasks.llm.client import LLMConfig
from tasks.training.collate import Collator
from tasks.training.encode import EncodeParams, SampleEncoder

# wider than the tiny checkpoint's budget (112 x 112 px) in both sides and in pixels: the budget
# gives 112 x 56, the processor's own resize (longest edge 112) would give 112 x 84
SOURCE = (300, 200)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm") / "model")


def gradient(size: tuple[int, int]) -> Image.Image:
    w, h = size
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    return Image.fromarray(np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1).astype(np.uint8))


def vqa_bench(root: Path, images: dict[str, tuple[int, int]]):
    """A bring-your-own VQA benchmark: one yes/no question per image."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, size) in enumerate(images.items()):
        gradient(size).save(root / name)
        rows.append({"id": f"q{i}", "question": "Is there a fracture?", "images": [name], "answer": "yes",
                     "answer_type": "closed"})
    (root / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return byo_spec("img_bench", str(root / "bench.jsonl"), "vqa", None)


def training_pixels(ckpt: Path, image: Path) -> dict:
    """What a CPT batch of one image sample feeds the model (tasks/training: encoder + collator)."""
    vlm = load_vlm(ckpt)
    encoder = SampleEncoder(vlm.processor, EncodeParams(), image.parent, budget=vlm.budget, factor=vlm.factor)
    sample = encoder.encode({"id": "s", "text": "A radiograph.", "images": [{"path": image.name}]})
    batch = Collator(vlm.processor, encoder.budget, encoder.factor)([{"sample": sample, "position": 0}])
    return {"pixel_values": batch["pixel_values"], "image_sizes": batch["image_sizes"],
            "image_tokens": int((sample.input_ids == vlm.processor.image_token_id).sum())}


def record_vision_inputs(model: HFModel) -> list[torch.Tensor]:
    """Every pixel tensor the vision tower receives (a forward hook on the real module)."""
    seen: list[torch.Tensor] = []
    model.model.model.vision_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0] if args else kwargs["pixel_values"]).detach().clone()),
        with_kwargs=True)
    return seen


def test_eval_feeds_the_vision_tower_what_training_feeds_it(tiny_vlm, tmp_path):
    spec = vqa_bench(tmp_path / "bench", {"wide.png": SOURCE})
    train = training_pixels(tiny_vlm, tmp_path / "bench" / "wide.png")
    model = HFModel(tiny_vlm, device="cpu", batch_size=2)
    seen = record_vision_inputs(model)
    res = evaluate(model, [spec], tmp_path, tmp_path / "work", RunSettings(max_new_tokens=2))
    assert {r["mode"] for r in res.rows} == {"generate", "loglik"}
    assert not any((r["failure"] or "").startswith("image_") for r in res.rows)   # a random model's text may not parse
    # the checkpoint's budget and grid, from its medx_model.json
    assert model.budget.max_side == TINY_IMAGE_SIDE and model.factor == TINY_FACTOR
    assert fit_size(*SOURCE, model.budget, model.factor) == (112, 56)
    # generation, then log-likelihood (one row per continuation): every image row is training's tensor
    assert len(seen) >= 2
    for pixels in seen:
        for row in pixels:
            assert row.shape == train["pixel_values"][0].shape == (3, 56, 112)
            assert torch.allclose(row, train["pixel_values"][0])
    # the same visual tokens in the prompt as in the training sample: (112 / 28) x (56 / 28)
    item = res.selected["img_bench"][0]
    enc = model.processor(text=[model.render_chat(generation_prompt(item))], images=model.load_images(item.images),
                          return_tensors="pt")
    assert enc["image_sizes"].tolist() == train["image_sizes"].tolist() == [[56, 112]]
    assert int((enc["input_ids"] == model.processor.image_token_id).sum()) == train["image_tokens"] == 8
    described = model.describe()["images"]
    assert described == {"budget": json.loads((tiny_vlm / "medx_model.json").read_text())["image_budget"],
                         "factor": TINY_FACTOR}


def test_the_images_param_overrides_the_checkpoint_budget(tiny_vlm, tiny_llava, tmp_path):
    smaller = HFModel(tiny_vlm, device="cpu", images={"max_pixels": 56 * 56, "max_side": 56})
    assert smaller.budget == dataclasses.replace(load_vlm(tiny_vlm).budget, max_pixels=56 * 56, max_side=56)
    img = tmp_path / "wide.png"
    gradient(SOURCE).save(img)
    assert smaller.load_images([str(img)])[0].size == (56, 28)
    assert smaller.describe()["images"] != HFModel(tiny_vlm, device="cpu").describe()["images"]
    # a foreign checkpoint (no medx_model.json): the ImageBudget defaults, its processor's grid (LLaVA: 8 px)
    foreign = HFModel(tiny_llava, device="cpu")
    assert foreign.describe()["images"] == {"budget": dataclasses.asdict(ImageBudget()), "factor": 8}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_pixel'\]"):
        EvalConfig(model_path="m", images={"max_pixel": 100})
    with pytest.raises(ValueError, match="images.max_side: expected int"):
        EvalConfig(model_path="m", images={"max_side": "big"})


def test_an_image_the_budget_cannot_size_is_that_items_failure(tiny_vlm, tmp_path):
    """A 4 x 4 image (below min_side) fails with training's skip reason; the batch's other item is answered."""
    spec = vqa_bench(tmp_path / "bench", {"ok.png": SOURCE, "tiny.png": (4, 4)})
    res = evaluate(HFModel(tiny_vlm, device="cpu", batch_size=4), [spec], tmp_path, tmp_path / "w",
                   RunSettings(max_new_tokens=2))
    failures = {(r["id"], r["mode"]): r["failure"] for r in res.rows}
    assert failures == {("q0", "generate"): failures[("q0", "generate")], ("q0", "loglik"): None,
                        ("q1", "generate"): "image_too_small", ("q1", "loglik"): "image_too_small"}
    assert failures[("q0", "generate")] != "image_too_small"


def test_endpoint_images_are_sized_by_the_same_function(tmp_path):
    spec = vqa_bench(tmp_path / "bench", {"big.png": (1200, 800)})
    cfg = LLMConfig(model="m", cache_dir=None, max_retries=0, timeout_s=20)
    with ScriptedEndpoint(lambda m: (200, "yes")) as ep:
        model = EndpointModel(cfg, base_url=ep.url, vision=True, images={"max_pixels": 112 * 112})
        evaluate(model, [spec], tmp_path, tmp_path / "w", RunSettings(modes=("generate",)))
        url = ep.requests[0]["messages"][-1]["content"][0]["image_url"]["url"]
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    sent = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    budget = dataclasses.replace(ImageBudget(), max_pixels=112 * 112)
    assert sent.size == fit_size(1200, 800, budget, ENDPOINT_IMAGE_FACTOR) == (112, 84)
    assert model.describe()["images"] == {"budget": dataclasses.asdict(budget), "factor": ENDPOINT_IMAGE_FACTOR}
