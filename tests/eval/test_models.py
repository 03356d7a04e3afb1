"""The HF adapter on tiny checkpoints built here (Llama causal LM with and without a chat template,
LLaVA and LightOnOcr vision-language models): batched greedy generation and batched option
log-likelihood give the same answers as one-at-a-time, log-likelihoods equal a direct unpadded
forward pass, and the same checkpoint gives the same outputs twice."""

from __future__ import annotations

import json

import pytest
import torch

from eval.benchmarks import REGISTRY, load, select
from eval.models import AdapterError, HFModel
from eval.templates import generation_prompt, loglik_request


@pytest.fixture(scope="module")
def medqa(data_root):
    return select(load(REGISTRY["medqa"], data_root).items, 5, 7)


@pytest.fixture(scope="module")
def pubmedqa(data_root):
    return select(load(REGISTRY["pubmedqa"], data_root).items, 3, 7)


@pytest.fixture(scope="module")
def vqa(data_root):
    return select(load(REGISTRY["vqa_rad"], data_root).items, 4, 7)


def gen(model, items, n=8):
    return model.generate([(i, generation_prompt(i)) for i in items], n)


def ll(model, items):
    return model.loglik([(i, loglik_request(i)) for i in items])


def flat(rows):
    return [x for r in rows for x in r]


def test_batched_generation_matches_unbatched_and_repeats(tiny_llama, medqa):
    batched = gen(HFModel(tiny_llama, batch_size=8), medqa)
    single = [gen(HFModel(tiny_llama, batch_size=1), [i])[0] for i in medqa[:2]]
    assert batched[:2] == single
    assert gen(HFModel(tiny_llama, batch_size=8), medqa) == batched         # a fresh load, same text
    assert all(isinstance(o, str) for o in batched)


def test_loglik_equals_a_direct_unpadded_forward_pass(tiny_llama, medqa):
    model = HFModel(tiny_llama, batch_size=3)
    got = ll(model, medqa)
    assert flat(ll(HFModel(tiny_llama, batch_size=1), medqa)) == pytest.approx(flat(got), abs=1e-4)
    tok, lm = model.tokenizer, model.model
    req = loglik_request(medqa[0])
    full_ctx = tok(model.render_plain(req.prompt, answer_cue=False))["input_ids"]
    longest = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in req.continuations)
    # the adapter's left cut: one context for every option (its cache is shared), cut for the longest
    ctx = full_ctx[-(model.max_length - longest):]
    for ci, cont in enumerate(req.continuations):
        cont_ids = tok(cont, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx + cont_ids])
        with torch.inference_mode():
            logp = torch.log_softmax(lm(ids).logits[0].float(), -1)
        direct = sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont_ids))
        assert got[0][ci] == pytest.approx(direct, abs=1e-4)


def test_chat_template_rendering(tiny_llama, medqa):
    model = HFModel(tiny_llama)
    text = model.render_chat(generation_prompt(medqa[0]))
    assert text.startswith("<|system|>\nYou are a medical expert") and text.endswith("<|assistant|>\n")
    model.tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                                     "{% if not enable_thinking %}<think></think>{% endif %}")
    model.chat_template = model._chat_template_owner()
    assert model.render_chat(generation_prompt(medqa[0])).endswith("<think></think>")
    assert not model.render_chat(generation_prompt(medqa[0], "thinking")).endswith("<think></think>")


@pytest.mark.parametrize("meta, prefill", [(None, True), ({"variant": "small"}, False),
                                           ({"variant": "small", "thinking_trained": True}, True)])
def test_thinking_switch_follows_the_checkpoint(tiny_llama, medqa, tmp_path, meta, prefill):
    """A project checkpoint not trained on <think> blocks (base, CPT) gets the plain generation prompt:
    an empty <think></think> pre-fill makes such a model end its turn at once."""
    import shutil

    path = shutil.copytree(tiny_llama, tmp_path / "ckpt")
    if meta is not None:
        (path / "medx_model.json").write_text(json.dumps(meta))
    model = HFModel(path)
    model.tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                                     "{% if not enable_thinking %}<think></think>{% endif %}")
    model.chat_template = model._chat_template_owner()
    assert model.render_chat(generation_prompt(medqa[0])).endswith("<think></think>") is prefill
    assert model.describe()["thinking_switch"] is prefill


def test_base_model_without_chat_template_truncates_from_the_left(tiny_base_llama, pubmedqa):
    model = HFModel(tiny_base_llama, batch_size=2)
    assert model.chat_template is None and model.max_length == 128
    assert model.render_plain(generation_prompt(pubmedqa[0]), answer_cue=True).endswith("\nAnswer:")
    outs = gen(model, pubmedqa, 4)
    assert len(outs) == 3 and model.stats["truncated_prompts"] == 3      # abstracts exceed 128 tokens
    scores = ll(model, pubmedqa)
    assert all(len(s) == 3 and all(x < 0 for x in s) for s in scores)


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_lighton"])
def test_vision_language_models(fixture, request, vqa, medqa):
    path = request.getfixturevalue(fixture)
    model = HFModel(path, batch_size=3)
    assert model.vision and model.processor is not None
    text = model.render_chat(generation_prompt(vqa[0]))
    assert text.count("<image>") == 1 and text.index("<image>") < text.index("Question:")
    outs = gen(model, vqa, 4)
    assert len(outs) == 4 and gen(HFModel(path, batch_size=1), vqa[:1], 4)[0] == outs[0]
    closed = [i for i in vqa if i.kind == "yesno"] or vqa[:0]
    if closed:
        batched = ll(model, closed)
        assert flat(ll(HFModel(path, batch_size=1), closed)) == pytest.approx(flat(batched), abs=1e-4)
        assert model.stats["boundary_mismatches"] == 0
    assert len(gen(model, medqa[:2], 4)) == 2 and len(ll(model, medqa[:2])) == 2   # text-only items too


def test_checkpoint_identity_and_errors(tiny_llama, tmp_path):
    a, b = HFModel(tiny_llama).describe(), HFModel(tiny_llama).describe()
    assert a == b and a["adapter"] == "hf" and len(a["digest"]) == 16
    with pytest.raises(AdapterError, match="config.json"):
        HFModel(tmp_path)


def test_device_auto_is_the_cpu_in_float32_without_a_gpu(tiny_llama, medqa, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = HFModel(tiny_llama, device="auto")
    assert model.describe()["device"] == "cpu/float32"
    assert next(model.model.parameters()).dtype == torch.float32
    assert ll(model, medqa[:2]) == ll(HFModel(tiny_llama, device="cpu"), medqa[:2])
    from tasks.training.device import DeviceError

    with pytest.raises(DeviceError, match="no GPU"):
        HFModel(tiny_llama, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_auto_on_a_gpu_is_cuda_in_bfloat16(tiny_llama, tiny_llava, medqa, vqa):
    model = HFModel(tiny_llama, device="auto", batch_size=3)
    assert model.describe()["device"] == "cuda/bfloat16"
    p = next(model.model.parameters())
    assert p.device.type == "cuda" and p.dtype == torch.bfloat16
    outs = gen(model, medqa, 4)
    assert all(isinstance(o, str) for o in outs) and gen(model, medqa, 4) == outs        # greedy repeats
    gpu, cpu = ll(model, medqa), ll(HFModel(tiny_llama, device="cpu"), medqa)
    assert flat(gpu) == pytest.approx(flat(cpu), rel=0.05, abs=0.5)                        # bf16 vs float32
    vision = HFModel(tiny_llava, device="cuda", batch_size=2)
    assert len(gen(vision, vqa, 4)) == len(vqa) and len(ll(vision, [i for i in vqa if i.kind == "yesno"])) >= 0
