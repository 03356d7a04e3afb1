"""The cpt stage under torchrun: 2 CPU processes, gloo, DeepSpeed ZeRO-2 (and ZeRO-3), mixed text and
image-text batches, the schedule split across ranks in order, one model saved by rank 0."""

from __future__ import annotations

import json
import shutil
import socket
import sys

import pytest
from training.cpt_project import run_process_group, stage_env

from tasks.training.model_io import load_model


def free_port() -> int:
    """A port free now (torchrun passes --master_port 0 to the workers literally, and they hang)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


pytestmark = pytest.mark.e2e          # ~60-90 s each on 2 shared cores (process start + DeepSpeed init)


@pytest.mark.parametrize("config", ["tasks/training/ds_zero2.json", "tasks/training/ds_zero3.json"])
def test_two_process_deepspeed_run(ordered_project, tmp_path, config):
    root = tmp_path / "project"
    shutil.copytree(ordered_project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".cache"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(free_port())]
    args = ["-m", "tasks.cpt", f"deepspeed={config}", "train.batch_size=2", "train.max_steps=12", "allow_partial=true",
            "train.save_steps=6", "keep_checkpoints=true", "mlflow.log_model=false"]
    proc = run_process_group(torchrun + args, env=stage_env(root), timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((root / "data" / "cpt" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["deepspeed"] is True and summary["global_step"] == 12
    assert summary["heldout_ppl_after"] < summary["heldout_ppl_before"]
    run_dir = root / ".cache" / "cpt_checkpoints" / summary["run_key"]
    ckpt = run_dir / "checkpoint-6"
    assert (ckpt / "latest").is_file() and (ckpt / "checkpoint_complete.json").is_file()
    assert len(list(ckpt.glob("global_step6/*optim_states.pt"))) == 2          # one partition per rank
    # global batch b goes to rank b % 2: together the ranks train the schedule's first 48 entries in order
    traces = {r: [json.loads(line) for line in (run_dir / f"order_trace.rank{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)}
    assert [len(t) for t in traces.values()] == [12, 12]
    interleaved = [p for step in range(12) for r in (0, 1) for p in traces[r][step]["positions"]]
    assert interleaved == list(range(48))
    manifest = [json.loads(line)["id"] for line in (root / "data" / "cpt_order" / "manifest.jsonl").open()]
    assert [i for step in range(12) for r in (0, 1) for i in traces[r][step]["ids"]] == manifest[:48]
    load_model(root / "data" / "cpt" / "model")
