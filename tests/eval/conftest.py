"""Tiny HF checkpoints for the eval tests, built once per session (a few seconds)."""

from __future__ import annotations

import pytest
from local_server import real_local_server
from tiny_hf_models import build_lighton, build_llama, build_llava


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return build_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_base_llama(tmp_path_factory):
    """No chat template: prompts are rendered as plain text ending in 'Answer:'."""
    return build_llama(tmp_path_factory.mktemp("tiny_base_llama"), chat=False, max_positions=128)


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory):
    return build_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="session")
def tiny_lighton(tmp_path_factory):
    """The class the base_model stage saves (LightOnOcr: Pixtral tower, native resolution)."""
    return build_lighton(tmp_path_factory.mktemp("tiny_lighton"))


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory):
    """The project's real llama.cpp server with SmolLM2-135M-Instruct (LLMConfig with its live URL)."""
    with real_local_server(tmp_path_factory.mktemp("llm"), max_tokens=48) as live:
        yield live
