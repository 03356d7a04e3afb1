"""Fixtures of the training tests: a tiny project (tests/training/cpt_project.py) on which cpt_order has
run, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from training.cpt_project import in_project, make_project

from tasks.common.stage import main


@pytest.fixture(scope="session")
def ordered_project(tmp_path_factory) -> Path:
    """A tiny project on which cpt_order has run (data/cpt_order/ exists)."""
    import tasks.cpt_order

    root = make_project(tmp_path_factory.mktemp("cpt_project"))
    with in_project(root), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("MEDX_MLFLOW_ARTIFACTS", (root / "mlartifacts").as_uri())
        main(tasks.cpt_order.STAGE, [])
    return root
