"""Bad samples are skipped with a reason before training; odd images are converted; the collator
masks what must not be learned and never crashes a run over a file that changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_hf_models import build_tiny_vlm
from vlm_fixtures import save_png

from tasks.training.collate import Collator, split_batch
from tasks.training.config import TrainParams
from tasks.training.dataset import OrderedDataset
from tasks.training.encode import EncodeParams, SampleEncoder, encode_all, image_token_ids
from tasks.training.model_io import load_model
from tasks.training.trainer import ScheduleTrainer, training_arguments


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
    samples = [sample(f"img-{mode}", text="chest radiograph",
                      images=[image_ref(tmp_path, f"{mode}.img", (70, 90), mode)])
               for mode in ("L", "CMYK", "I;16", "RGB")]
    kept, rejected = encode_all(samples, encoder(vlm, tmp_path))
    assert rejected == []
    for e in kept.values():
        assert e.n_image_tokens > 0 and e.kind == "image_text"
    batch = Collator(vlm.processor, vlm.budget, vlm.factor)([{"position": i, "sample": e}
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
    batch = Collator(vlm.processor, vlm.budget, vlm.factor)([ds[0], ds[1], ds[2]])
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
    plain = split_batch(Collator(vlm.processor, vlm.budget, vlm.factor)(items))[0]
    blank = split_batch(Collator(vlm.processor, vlm.budget, vlm.factor, blank_image_for_text=True)(items))[0]
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
    collate = Collator(vlm.processor, vlm.budget, vlm.factor)
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
    batch = Collator(vlm.processor, vlm.budget, vlm.factor)([{"position": 0, "sample": kept["c"]}])
    assert batch["empty_batch"] and batch["skipped"] == [("c", "image_corrupt_image")]
    Image.new("RGB", (56, 56)).save(tmp_path / ref["path"])


def chat(sid, images=()):
    """A conversation: system and user turns (the user's with the images), then the assistant's answer."""
    user = [{"type": "image"} for _ in images] + [{"type": "text", "text": "chest lung lobe opacity?"}]
    return sample(sid, images=images, messages=[
        {"role": "system", "content": "radiograph airway"},
        {"role": "user", "content": user if images else user[-1]["text"]},
        {"role": "assistant", "content": "pleural effusion lobe"}])


def check_assistant_only_labels(vlm, batch, row, encoded):
    """Row `row`: the assistant turn (answer + end of turn) carries loss, nothing else does."""
    ids, labels = batch["input_ids"][row, :encoded.n_tokens], batch["labels"][row, :encoded.n_tokens]
    trained = labels != -100
    assert (labels[trained] == ids[trained]).all()
    tok = vlm.processor.tokenizer
    assert tok.decode(ids[trained]) == "pleural effusion lobe<|im_end|>"
    prompt = tok.decode(ids[~trained])
    assert "radiograph airway" in prompt and "chest lung lobe opacity?" in prompt and "assistant" in prompt


@pytest.mark.parametrize("with_image", [False, True])
def test_assistant_only_loss_masks_system_and_user_tokens(vlm, tmp_path, with_image):
    images = [image_ref(tmp_path, "c.png", (56, 84))] if with_image else []
    kept, rejected = encode_all([chat("c", images), sample("t", text="heart cardiac arrhythmia")],
                                encoder(vlm, tmp_path))
    assert not rejected and kept["c"].chat and kept["t"].assistant_mask is None
    ds = OrderedDataset(kept, ["c", "t"])
    batch = Collator(vlm.processor, vlm.budget, vlm.factor, assistant_only_loss=True)([ds[0], ds[1]])
    check_assistant_only_labels(vlm, batch, 0, kept["c"])
    if with_image:
        assert ((batch["input_ids"][0] == vlm.processor.image_token_id) & (batch["labels"][0] != -100)).sum() == 0
    # a plain-text sample keeps loss on every token
    text = batch["attention_mask"][1] == 1
    assert (batch["labels"][1][text] == batch["input_ids"][1][text]).all()
    # the CPT default: loss everywhere, the conversation included
    cpt = Collator(vlm.processor, vlm.budget, vlm.factor)([ds[0]])
    real = (cpt["attention_mask"][0] == 1) & ~torch.isin(cpt["input_ids"][0],
                                                         torch.tensor(sorted(image_token_ids(vlm.processor))))
    assert (cpt["labels"][0][real] == cpt["input_ids"][0][real]).all()
    assert torch.isfinite(vlm.model(**split_batch(batch)[0]).loss)


def test_assistant_mask_from_the_templates_generation_marks(tmp_path, vlm):
    """The project's chat template marks assistant turns with {% generation %}: the mask comes from it."""
    from models.chat_template import build_chat_template
    from models.config import SpecialTokens

    fresh = load_model(vlm.path)
    fresh.processor.tokenizer.chat_template = build_chat_template(SpecialTokens())
    enc = SampleEncoder(fresh.processor, EncodeParams(max_tokens=64), tmp_path, budget=fresh.budget,
                        factor=fresh.factor)
    images = [image_ref(tmp_path, "g.png", (56, 56))]
    kept, rejected = encode_all([chat("g", images), chat("h")], enc)
    assert not rejected
    collate = Collator(fresh.processor, fresh.budget, fresh.factor, assistant_only_loss=True)
    for sid in ("g", "h"):
        batch = collate([{"position": 0, "sample": kept[sid]}])
        check_assistant_only_labels(fresh, batch, 0, kept[sid])


def test_conversation_without_assistant_mask(vlm, tmp_path):
    """A mask that cannot be derived: the encoder keeps the sample for CPT, rejects it when asked to
    require one; the assistant-only collator drops it with a reason rather than train on the prompt."""
    enc = encoder(vlm, tmp_path)
    enc.assistant_spans = lambda messages, text: None          # a template whose prefixes do not nest
    kept, rejected = encode_all([chat("c")], enc)
    assert not rejected and kept["c"].assistant_mask is None
    batch = Collator(vlm.processor, vlm.budget, vlm.factor, assistant_only_loss=True)(
        [{"position": 0, "sample": kept["c"]}])
    assert batch["empty_batch"] and batch["skipped"] == [("c", "no_assistant_mask")]
    strict = SampleEncoder(vlm.processor, EncodeParams(max_tokens=64), tmp_path, budget=vlm.budget,
                           factor=vlm.factor, require_assistant_mask=True)
    strict.assistant_spans = enc.assistant_spans
    _, rejected = encode_all([chat("c"), sample("u", messages=[{"role": "user", "content": "lung?"}])], strict)
    assert [r["reason"] for r in rejected] == ["no_assistant_tokens", "no_assistant_tokens"]


def test_truncation_cuts_the_mask_with_the_tokens(vlm, tmp_path):
    kept, _ = encode_all([chat("c")], encoder(vlm, tmp_path, max_tokens=12))
    e = kept["c"]
    assert e.truncated and e.n_tokens == len(e.assistant_mask) == 12 and not e.assistant_mask.any()
    assert e.clipped(5).assistant_mask.shape == (5,)
