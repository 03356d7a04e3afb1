"""A tiny CPT project for the training tests (base model, CPT samples, params.yaml) and helpers that run
a stage inside it, in process or as a subprocess (a launcher's process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from tiny_hf_models import build_tiny_vlm
from vlm_fixtures import make_samples, write_jsonl

REPO = Path(__file__).resolve().parents[2]

# Sized so a stage takes seconds: ~90 samples of <= 64 tokens, a 4-layer 64-wide decoder.
TINY_PARAMS = {
    "seed": 11,
    "cpt_order": {
        "encode": {"max_tokens": 64},
        "heldout": {"fraction": 0.06, "max_samples": 8},
        "warmup": {"fraction": 0.3, "train": {"batch_size": 4, "threads": 1, "logging_steps": 2,
                                              "learning_rate": 1e-3, "epochs": 2}},
        "embed": {"batch_size": 8},
        "umap": {"n_neighbors": 8},
        "hdbscan": {"min_cluster_size": 5},
        "general_pool": {"max_samples": 6},
        "schedule": {"general_share": 0.2},
    },
    "cpt": {
        "encode": {"max_tokens": 64},
        "checkpoint_root": ".cache/cpt_checkpoints",
        "train": {"batch_size": 4, "threads": 1, "logging_steps": 2, "save_steps": 5, "learning_rate": 1e-3},
        "mlflow": {"registered_name": "tiny-cpt"},
    },
}


@contextlib.contextmanager
def in_project(root: Path):
    """Stages resolve params.yaml and relative paths from MEDX_PROJECT_ROOT; MLflow goes to the
    project's own sqlite store (the test's isolated store when one is set)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDX_PROJECT_ROOT", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
            mp.setenv("MEDX_MLFLOW_ARTIFACTS", (root / "mlartifacts").as_uri())
        yield root


# What the corpus also holds, so the stages' rejections are exercised: two samples that cannot be
# encoded and, as the shard's last line, one that is not JSON.
BAD_SAMPLES = [
    {"id": "bad-empty", "kind": "text", "task": "passage", "text": "  ", "messages": [], "images": [],
     "source_ids": ["src-bad"], "meta": {"generator": "local"}},
    {"id": "bad-image", "kind": "image_text", "task": "caption", "text": "lung", "messages": [],
     "images": [{"path": "images/missing.png", "sha256": "0" * 64}], "source_ids": ["src-bad"],
     "meta": {"generator": "local"}},
]
BAD_REASONS = {"bad-empty": "empty_text", "bad-image": "image_missing", None: "bad_json"}


def make_project(root: Path, n_per_topic: int = 30, params: dict | None = None) -> Path:
    build_tiny_vlm(root / "data" / "base_model" / "model")
    shard = write_jsonl(root / "data" / "cpt_data" / "samples" / "part-00000.jsonl",
                        make_samples(root, n_per_topic) + BAD_SAMPLES)
    with open(shard, "a") as f:
        f.write('{"id": "cut-short", "text": "a line cut by a ki\n')
    (root / "params.yaml").write_text(yaml.safe_dump(params or TINY_PARAMS))
    return root


def stage_env(root: Path) -> dict:
    """Environment for a stage run as a subprocess of the test."""
    env = dict(os.environ, MEDX_PROJECT_ROOT=str(root), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               MEDX_MLFLOW_ARTIFACTS=(root / "mlartifacts").as_uri(), OMP_NUM_THREADS="1")
    env.pop("MEDX_MLFLOW_PARENT_RUN_ID", None)
    return env


def run_process_group(cmd: list[str], *, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` in its own session; on timeout kill the whole group (a launcher's workers too)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd[:6]} timed out after {timeout} s:\n{out[-3000:]}\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
