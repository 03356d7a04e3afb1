"""The chat template renders thinking blocks, tool calls and responses, images; its assistant
mask covers exactly the assistant turns; the processor expands each image placeholder."""

from __future__ import annotations

import pytest
from PIL import Image

from models.chat_template import build_chat_template
from models.checkpoint import CheckpointError, check_chat_template, load_vlm
from models.config import SpecialTokens

TOOLS = [{"type": "function", "function": {"name": "zoom", "description": "Crop a region of the image.",
                                           "parameters": {"type": "object",
                                                          "properties": {"box": {"type": "array"}}}}}]
CONVERSATION = [
    {"role": "system", "content": "You are a radiologist."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Any effusion?"}]},
    {"role": "assistant", "reasoning_content": "Check the costophrenic angles.", "content": "",
     "tool_calls": [{"type": "function", "function": {"name": "zoom", "arguments": {"box": [0, 50, 40, 90]}}}]},
    {"role": "tool", "content": [{"type": "image"}]},
    {"role": "assistant", "reasoning_content": "Blunted right angle.", "content": "Yes, a small right effusion."},
]


@pytest.fixture(scope="module")
def vlm(micro_build):
    return load_vlm(micro_build[0] / "model")


def test_renders_thinking_tools_and_images(vlm):
    text = vlm.render(CONVERSATION, tools=TOOLS)
    assert text.startswith("<|im_start|>system\nYou are a radiologist.\n\n# Tools\n")
    assert '<tools>\n{"type": "function", "function": {"name": "zoom"' in text
    assert "<|im_start|>user\n<image>Any effusion?<|im_end|>\n" in text
    assert ("<|im_start|>assistant\n<think>\nCheck the costophrenic angles.\n</think>\n\n<tool_call>\n"
            '{"name": "zoom", "arguments": {"box": [0, 50, 40, 90]}}\n</tool_call><|im_end|>\n') in text
    assert "<|im_start|>tool\n<tool_response>\n<image>\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<think>\nBlunted right angle.\n</think>\n\nYes, a small right effusion.<|im_end|>\n")
    assert text.count("<image>") == 2


def test_string_arguments_and_content_with_calls(vlm):
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Let me look.",
             "tool_calls": [{"function": {"name": "zoom", "arguments": '{"box": [1, 2, 3, 4]}'}},
                            {"name": "zoom", "arguments": {"box": [5, 6, 7, 8]}}]}]
    text = vlm.render(msgs)
    assert ('Let me look.\n<tool_call>\n{"name": "zoom", "arguments": {"box": [1, 2, 3, 4]}}\n</tool_call>\n'
            '<tool_call>\n{"name": "zoom", "arguments": {"box": [5, 6, 7, 8]}}\n</tool_call><|im_end|>') in text
    assert not text.startswith("<|im_start|>system")                     # no system turn invented


def test_generation_prompt_with_and_without_thinking(vlm):
    msgs = [{"role": "user", "content": "Diagnosis?"}]
    assert vlm.render(msgs, add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    assert vlm.render(msgs, add_generation_prompt=True, enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_assistant_mask_covers_the_assistant_turns_only(vlm):
    out = vlm.tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assistant = vlm.tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert assistant == ("<think>\nCheck the costophrenic angles.\n</think>\n\n<tool_call>\n"
                         '{"name": "zoom", "arguments": {"box": [0, 50, 40, 90]}}\n</tool_call><|im_end|>'
                         "<think>\nBlunted right angle.\n</think>\n\nYes, a small right effusion.<|im_end|>")


def test_processor_expands_images_in_a_conversation(vlm):
    imgs = [vlm.image(Image.new("RGB", (200, 120), (30, 30, 30))), vlm.image(Image.new("RGB", (60, 60)))]
    batch = vlm.processor(text=[vlm.render(CONVERSATION, tools=TOOLS)], images=imgs, return_tensors="pt")
    expected = sum((i.width // vlm.factor) * (i.height // vlm.factor) for i in imgs)
    assert int((batch["input_ids"] == vlm.tokenizer.image_token_id).sum()) == expected
    import torch
    with torch.no_grad():
        loss = vlm.model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)


def test_default_system_prompt_is_escaped(tmp_path):
    from transformers.utils.chat_template_utils import render_jinja_template

    prompt = "Be careful: it's a \"test\" {{ not code }}\nline two"
    tpl = build_chat_template(SpecialTokens(), prompt)
    (tmp_path / "chat_template.jinja").write_text(tpl)
    check_chat_template(tmp_path / "chat_template.jinja")
    rendered, _ = render_jinja_template(conversations=[[{"role": "user", "content": "hi"}]], chat_template=tpl)
    assert rendered[0].startswith(f"<|im_start|>system\n{prompt}<|im_end|>\n<|im_start|>user\nhi")


def test_broken_template_is_named(tmp_path):
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(CheckpointError, match="chat_template.jinja"):
        check_chat_template(tmp_path / "chat_template.jinja")
