"""Shared fixtures: the real data location and an isolated MLflow store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from project_copy import DATA_ROOT

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert DATA_ROOT.is_dir(), f"real data not found at {DATA_ROOT} (set MEDX_DATA_ROOT)"
    return DATA_ROOT


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path_factory, monkeypatch):
    """Every test logs to its own sqlite store, never to the project's mlflow.db."""
    store = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("MEDX_MLFLOW_ARTIFACTS", (store / "artifacts").as_uri())
    monkeypatch.delenv("MEDX_MLFLOW_PARENT_RUN_ID", raising=False)
    return store
