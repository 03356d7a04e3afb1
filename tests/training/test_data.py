"""Bad samples are skipped with a reason before training; odd images are converted; the collator
masks what must not be learned and never crashes a run over a file that changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from train.tiny_vlm import build_tiny_vlm, save_png

from tasks.training.data import (
    CptCollator,
    EncodeParams,
    OrderedDataset,
    SampleEncoder,
    encode_all,
    split_batch,
)
from tasks.training.model_io import load_model
from tasks.training.trainer import ScheduleTrainer, TrainParams, training_arguments


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return load_model(build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model"))


def image_ref(root, name, size, mode="RGB"):
    ref = save_png(root / "images" / name, size, (90, 120, 200), mode=mode)
    ref["path"] = f"images/{name}"
    return ref


def sample(sid, text="", images=(), messages=(), kind=None):
    return {"id": sid, "kind": kind or ("image_text" if images else "text"), "text": text,
            "messages": list(messages), "images": list(images), "task": "t", "source_ids": ["s"],
            "meta": {"generator": "local"}}


def encoder(vlm, root, **params):
    return SampleEncoder(vlm.processor, EncodeParams(**{"max_tokens": 64, **params}), root,
                         budget=vlm.budget, factor=vlm.factor)


def test_bad_samples_are_rejected_with_reasons(vlm, tmp_path):
    (tmp_path / "outside.png").parent.mkdir(exist_ok=True)
    good = image_ref(tmp_path, "good.png", (84, 56))
    changed = dict(good, sha256="0" * 64)
    samples = [
        sample("empty", text=""),
        sample("blank", text="   \n\t "),
        sample("huge", text="heart " * 500),
        sample("silent-chat", messages=[{"role": "user", "content": [{"type": "image"}]},
                                        {"role": "assistant", "content": "   "}]),
        sample("one-pixel", text="a caption", images=[image_ref(tmp_path, "1x1.png", (1, 1))]),
        sample("strip", text="a caption", images=[image_ref(tmp_path, "strip.png", (20000, 20))]),
        sample("missing-file", text="a caption", images=[{"path": "images/nope.png", "sha256": "0" * 64}]),
        sample("escape", text="a caption", images=[{"path": "../outside.png", "sha256": "0" * 64}]),
        sample("changed", text="a caption", images=[changed]),
        sample("no-image", text="an ocr page", kind="ocr"),
        sample("bad-kind", text="text", kind="video"),
        sample("two-placeholders", text="<image> and <image>", images=[good]),
        sample("ok", text="heart cardiac"),
        sample("ok", text="a duplicate id"),
        "not a sample",
    ]
    kept, rejected = encode_all(samples, encoder(vlm, tmp_path, max_text_chars=1000))
    reasons = {r["id"]: r["reason"] for r in rejected if r["id"] != "ok"}
    assert reasons == {
        "empty": "empty_text", "blank": "empty_text", "huge": "text_too_long", "silent-chat": "empty_text",
        "one-pixel": "image_too_small", "strip": "image_extreme_aspect_ratio", "missing-file": "image_missing",
        "escape": "bad_image_ref", "changed": "image_sha256_mismatch", "no-image": "missing_image",
        "bad-kind": "bad_kind", "two-placeholders": "image_mismatch", None: "bad_sample"}
    assert [r["reason"] for r in rejected if r["id"] == "ok"] == ["duplicate_id"]
    assert list(kept) == ["ok"]
    assert all(r["detail"] for r in rejected if r["reason"] != "bad_sample")


def test_grayscale_cmyk_and_16bit_images_are_converted_not_rejected(vlm, tmp_path):
    samples = [sample(f"img-{mode}", text="chest radiograph", images=[image_ref(tmp_path, f"{mode}.img", (70, 90), mode)])
               for mode in ("L", "CMYK", "I;16", "RGB")]
    kept, rejected = encode_all(samples, encoder(vlm, tmp_path))
    assert rejected == []
    for e in kept.values():
        assert e.n_image_tokens > 0 and e.kind == "image_text"
    batch = CptCollator(vlm.processor, vlm.budget, vlm.factor)([{"position": i, "sample": e}
                                                                for i, e in enumerate(kept.values())])
    assert batch["pixel_values"].shape[0] == 4 and torch.isfinite(batch["pixel_values"]).all()


def test_long_samples_are_cut_but_image_placeholders_never(vlm, tmp_path):
    enc = encoder(vlm, tmp_path, max_tokens=16, min_text_tokens=2)
    long_text = sample("long", text="heart cardiac ventricular " * 20)
    big_image = sample("big-image", text="chest", images=[image_ref(tmp_path, "big.png", (112, 112))])  # 16 tokens
    small_image = sample("small-image", text="chest lung " * 10, images=[image_ref(tmp_path, "s.png", (56, 56))])
    kept, rejected = encode_all([long_text, big_image, small_image], enc)
    assert kept["long"].truncated and kept["long"].n_tokens == 16
    assert [(r["id"], r["reason"]) for r in rejected] == [("big-image", "image_tokens_exceed_max_tokens")]
    cut = kept["small-image"]
    assert cut.truncated and cut.n_tokens == 16
    image_id = vlm.processor.image_token_id
    assert int((cut.input_ids == image_id).sum()) == cut.n_image_tokens == 4


def test_collator_masks_padding_and_image_placeholders(vlm, tmp_path):
    kept, _ = encode_all([sample("t", text="heart cardiac arrhythmia"),
                          sample("i", text="lung opacity", images=[image_ref(tmp_path, "i.png", (56, 84))]),
                          sample("c", messages=[{"role": "user", "content": "lung?"},
                                                {"role": "assistant", "content": "pleural effusion"}])],
                         encoder(vlm, tmp_path))
    ds = OrderedDataset(kept, ["t", "i", "c"])
    batch = CptCollator(vlm.processor, vlm.budget, vlm.factor)([ds[0], ds[1], ds[2]])
    inputs, extra = split_batch(batch)
    assert extra["sample_ids"] == ["t", "i", "c"] and extra["positions"] == [0, 1, 2]
    ids, labels, mask = inputs["input_ids"], inputs["labels"], inputs["attention_mask"]
    assert ids.shape[1] % 8 == 0
    assert (labels[mask == 0] == -100).all()
    image = ids == vlm.processor.image_token_id
    assert image.sum() == 6 and (labels[image] == -100).all()
    text = (mask == 1) & ~image
    assert (labels[text] == ids[text]).all()
    assert inputs["pixel_values"].shape[0] == 1
    loss = vlm.model(**inputs).loss                           # text-only rows and an image row together
    assert torch.isfinite(loss)


def test_blank_image_changes_nothing_but_runs_the_vision_tower(vlm, tmp_path):
    kept, _ = encode_all([sample("a", text="heart cardiac"), sample("b", text="skin rash eczema psoriasis")],
                         encoder(vlm, tmp_path))
    items = [{"position": i, "sample": e} for i, e in enumerate(kept.values())]
    plain = split_batch(CptCollator(vlm.processor, vlm.budget, vlm.factor)(items))[0]
    blank = split_batch(CptCollator(vlm.processor, vlm.budget, vlm.factor, blank_image_for_text=True)(items))[0]
    assert "pixel_values" not in plain and blank["pixel_values"].shape == (1, 3, vlm.factor, vlm.factor)
    assert blank["input_ids"].shape[1] == plain["input_ids"].shape[1] + 1
    model = vlm.model.eval()
    with torch.no_grad():
        a, b = model(**plain), model(**blank)
    width = plain["input_ids"].shape[1]
    assert torch.allclose(a.logits, b.logits[:, :width], atol=1e-5)
    assert torch.allclose(a.loss, b.loss, atol=1e-6)


def test_image_that_vanishes_mid_run_is_skipped_not_fatal(vlm, tmp_path):
    refs = [image_ref(tmp_path, f"v{i}.png", (56, 56)) for i in range(3)]
    samples = [sample(f"img{i}", text="lung chest", images=[r]) for i, r in enumerate(refs)]
    samples += [sample(f"txt{i}", text="heart cardiac " * (i + 1)) for i in range(5)]
    kept, rejected = encode_all(samples, encoder(vlm, tmp_path))
    assert not rejected
    for r in refs[:2]:
        (tmp_path / r["path"]).unlink()                       # after encoding, before training
    order = ["img0", "img1", "txt0", "txt1", "img2", "txt2", "txt3", "txt4"]
    ds = OrderedDataset(kept, order)
    collate = CptCollator(vlm.processor, vlm.budget, vlm.factor)
    assert split_batch(collate([ds[0], ds[1]]))[1]["empty_batch"] is True   # every row gone
    args = training_arguments(TrainParams(max_steps=4, batch_size=2, threads=1, save_steps=0, logging_steps=1),
                              tmp_path / "run", seed=0)
    trainer = ScheduleTrainer(model=vlm.model, args=args, train_dataset=ds, data_collator=collate,
                              trace_path=tmp_path / "trace.jsonl")
    result = trainer.train()
    assert trainer.state.global_step == 4 and np.isfinite(result.training_loss)
    assert sorted(trainer.skipped_rows) == [("img0", "image_missing"), ("img1", "image_missing")]
    assert trainer.empty_batches == 1


def test_image_that_is_replaced_by_a_corrupt_file(vlm, tmp_path):
    ref = image_ref(tmp_path, "c.png", (56, 56))
    kept, _ = encode_all([sample("c", text="chest", images=[ref])], encoder(vlm, tmp_path))
    (tmp_path / ref["path"]).write_bytes(b"not a png any more")
    batch = CptCollator(vlm.processor, vlm.budget, vlm.factor)([{"position": 0, "sample": kept["c"]}])
    assert batch["empty_batch"] and batch["skipped"] == [("c", "image_unreadable")]
    Image.new("RGB", (56, 56)).save(tmp_path / ref["path"])
