"""Fixtures of the model tests: one synthetic corpus and one micro base model built from it per
session (the build is the slow part; most tests only read what it saved)."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlm_fixtures import micro_config, write_corpus

from models.build import build_base_model


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def micro_build(corpus, tmp_path_factory) -> tuple[Path, dict, dict]:
    """(out_dir, summary, metrics) of a micro tiny-variant build."""
    out = tmp_path_factory.mktemp("base_model")
    cfg = micro_config(corpus)
    summary, metrics = build_base_model(cfg, out, image_root=Path(cfg.image_root), in_dir=Path(cfg.in_dir))
    return out, summary, metrics


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 30 s on 2 CPU cores (deselect with -m 'not slow')")
