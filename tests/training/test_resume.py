"""Kill the cpt stage (SIGKILL) after its first checkpoint, start it again: it resumes from the
checkpoint, continues at the same place in the order, and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from training.cpt_project import REPO, run_process_group, stage_env

from tasks.common.io import read_jsonl

# ~86 entries x 3 epochs / 2 per step: ~130 steps, a checkpoint every 10 (seconds in all)
ARGS = ["train.batch_size=2", "train.epochs=3", "train.save_steps=10", "train.save_total_limit=3",
        "train.logging_steps=5", "keep_checkpoints=true", "mlflow.log_model=false"]


def start(root: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tasks.cpt", *ARGS, *extra], cwd=REPO,
                            env=stage_env(root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, ckpt_root: Path, timeout: float = 300) -> Path:
    """The first checkpoint marked complete (polled fast, so the run is still training when seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(ckpt_root.glob("*/checkpoint-*/checkpoint_complete.json"))
        if found:
            return found[0].parent
        if proc.poll() is not None:
            raise AssertionError(f"the stage ended (rc {proc.returncode}) before its first checkpoint:\n"
                                 f"{proc.stdout.read()[-3000:]}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint within the timeout")


def trace_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_kill_after_first_checkpoint_then_resume(ordered_project, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ordered_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    ckpt_root = root / ".cache" / "cpt_checkpoints"

    proc = start(root)
    first = wait_for_checkpoint(proc, ckpt_root)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (root / "data" / "cpt").exists(), "a killed stage leaves no partial output"
    [run_dir] = [p for p in ckpt_root.iterdir() if p.is_dir()]
    steps_before_kill = trace_steps(run_dir / "order_trace.rank0.jsonl")
    assert steps_before_kill[-1] >= 10 and first.name == "checkpoint-10"

    resumed = run_process_group([sys.executable, "-m", "tasks.cpt", *ARGS], env=stage_env(root), timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads((root / "data" / "cpt" / "summary.json").read_text())
    resumed_step = int(Path(summary["resumed_from"]).name.split("-")[1])
    assert not Path(summary["resumed_from"]).is_absolute(), "outputs name paths relative to the project"
    assert (root / summary["resumed_from"]).parent == run_dir and resumed_step % 10 == 0 and resumed_step >= 10
    # the raw trace: the killed run's steps, then the resumed run starting right after the checkpoint
    steps = trace_steps(run_dir / "order_trace.rank0.jsonl")
    restart = len(steps_before_kill)
    assert steps[:restart] == steps_before_kill and steps[restart] == resumed_step + 1
    assert summary["steps_this_run"] == summary["global_step"] - resumed_step

    # an uninterrupted run with the same seed and params, elsewhere
    reference = run_process_group([sys.executable, "-m", "tasks.cpt", *ARGS, "checkpoint_root=.cache/reference",
                                   "out_dir=data/cpt_reference"], env=stage_env(root), timeout=600)
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    ref_summary = json.loads((root / "data" / "cpt_reference" / "summary.json").read_text())
    assert ref_summary["resumed_from"] is None
    assert summary["global_step"] == ref_summary["global_step"]
    order = [r["ids"] for r in read_jsonl(root / "data" / "cpt" / "order_trace.jsonl")]
    ref_order = [r["ids"] for r in read_jsonl(root / "data" / "cpt_reference" / "order_trace.jsonl")]
    assert order == ref_order, "same samples in the same order, step by step"
    weights = load_file(root / "data" / "cpt" / "model" / "model.safetensors")
    ref_weights = load_file(root / "data" / "cpt_reference" / "model" / "model.safetensors")
    assert weights.keys() == ref_weights.keys()
    for name, w in weights.items():
        assert torch.allclose(w, ref_weights[name], atol=1e-4), name
