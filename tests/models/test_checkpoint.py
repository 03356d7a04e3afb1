"""models.checkpoint: a broken checkpoint directory is refused naming the bad file; a foreign HF
vision-language checkpoint (a stock LLaVA) is adapted by the `checkpoint` variant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_hf_models import build_llava
from vlm_fixtures import micro_config

from models.build import build_base_model
from models.checkpoint import CheckpointError, load_vlm, save_vlm, validate_checkpoint


@pytest.fixture(scope="module")
def sharded(micro_build, tmp_path_factory) -> Path:
    """The micro model re-saved in several shards with an index."""
    vlm = load_vlm(micro_build[0] / "model")
    out = tmp_path_factory.mktemp("sharded")
    vlm.model.save_pretrained(out, max_shard_size="100KB")
    vlm.processor.save_pretrained(out)
    shutil.copy(micro_build[0] / "model" / "medx_model.json", out)
    assert len(list(out.glob("model-*.safetensors"))) > 2 and (out / "model.safetensors.index.json").exists()
    return out


def broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_sharded_checkpoint_loads(sharded, micro_build):
    a, b = load_vlm(sharded), load_vlm(micro_build[0] / "model")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(a.model(input_ids=ids).logits, b.model(input_ids=ids).logits)
    assert a.variant == "tiny" and a.factor == 28


def test_missing_shard_is_named(sharded, tmp_path):
    d = broken_copy(sharded, tmp_path / "ckpt")
    victim = sorted(d.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError) as e:
        load_vlm(d)
    assert e.value.file == str(victim) and "missing shard" in e.value.problem


def test_truncated_shard_is_named(sharded, tmp_path):
    d = broken_copy(sharded, tmp_path / "ckpt")
    victim = min(d.glob("model-*.safetensors"))
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated") as e:
        validate_checkpoint(d)
    assert e.value.file == str(victim)


@pytest.mark.parametrize("content", [b'{"version": "1.0", "model": {"type": "BPE", "voc', b"\x00\xff garbage",
                                     b'{"version": "1.0"}'])
def test_corrupt_tokenizer_json_is_named(micro_build, tmp_path, content):
    d = broken_copy(micro_build[0] / "model", tmp_path / "ckpt")
    (d / "tokenizer.json").write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_vlm(d)
    assert e.value.file == str(d / "tokenizer.json")


@pytest.mark.parametrize("remove, corrupt, expected", [
    ("config.json", None, "config.json"),
    (None, "config.json", "config.json"),
    ("model.safetensors", None, ""),
    ("tokenizer.json", None, ""),
    (None, "processor_config.json", "processor_config.json"),
    (None, "model.safetensors", "model.safetensors"),
])
def test_other_defects_are_named(micro_build, tmp_path, remove, corrupt, expected):
    d = broken_copy(micro_build[0] / "model", tmp_path / "ckpt")
    if remove:
        (d / remove).unlink()
    if corrupt:
        (d / corrupt).write_bytes(b"{ not json")
    with pytest.raises(CheckpointError) as e:
        validate_checkpoint(d)
    assert e.value.file == str(d / expected if expected else d)


def test_not_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_vlm(tmp_path / "nope")


def test_save_vlm_round_trip(micro_build, tmp_path):
    vlm = load_vlm(micro_build[0] / "model")
    out = save_vlm(vlm, tmp_path / "again", extra_meta={"stage": "cpt"})
    again = load_vlm(out)
    assert json.loads((out / "medx_model.json").read_text())["stage"] == "cpt"
    assert again.budget == vlm.budget and again.tokens == vlm.tokens


def test_checkpoint_variant_refuses_architecture_overrides(corpus, micro_build, tmp_path):
    from models.config import ModelConfigError

    cfg = micro_config(corpus, variant="checkpoint", checkpoint_path=str(micro_build[0] / "model"), images={})
    with pytest.raises(ModelConfigError, match="do not apply"):
        build_base_model(cfg, tmp_path, image_root=Path(cfg.image_root), in_dir=Path(cfg.in_dir))


def test_foreign_llava_checkpoint_is_adapted(corpus, tmp_path):
    src = build_llava(tmp_path / "llava")
    cfg = micro_config(corpus, variant="checkpoint", checkpoint_path=str(src), vision={}, decoder={}, images={})
    out = tmp_path / "out"
    summary, _ = build_base_model(cfg, out, image_root=Path(cfg.image_root), in_dir=Path(cfg.in_dir))
    vlm = load_vlm(out / "model")
    assert type(vlm.model).__name__ == "LlavaForConditionalGeneration"
    tok = vlm.tokenizer
    for t in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "<tool_response>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    assert vlm.model.get_input_embeddings().num_embeddings >= len(tok)
    text = vlm.render([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}],
                      add_generation_prompt=True)
    assert text == "<|im_start|>user\n<image>?<|im_end|>\n<|im_start|>assistant\n"
    eos = vlm.model.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
    assert summary["sanity"]["image_visual_tokens"] == 16 and summary["tokenizer_source"] == "checkpoint"
