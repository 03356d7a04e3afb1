"""Checkpoint completeness: a missing shard, a truncated file or a save cut short is detected, the
previous complete checkpoint is used, and an explicit incomplete one is a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.cpt_training.config import CptConfig
from tasks.cpt_training.run import choose_checkpoint
from tasks.training.checkpoints import (
    MARKER,
    CheckpointError,
    check_complete,
    latest_complete,
    list_checkpoints,
    write_marker,
)


def fake_checkpoint(root: Path, step: int, *, sharded: bool = False, deepspeed_ranks: int = 0,
                    fingerprint: str = "abc") -> Path:
    """A checkpoint directory with the files the Trainer writes (contents are placeholders)."""
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (path / "config.json").write_text("{}")
    if sharded:
        shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        (path / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"a": shards[0], "b": shards[1]}}))
        for s in shards:
            (path / s).write_bytes(b"w" * 100)
    else:
        (path / "model.safetensors").write_bytes(b"w" * 100)
    if deepspeed_ranks:
        (path / "latest").write_text(f"global_step{step}")
        tag = path / f"global_step{step}"
        tag.mkdir()
        (tag / "mp_rank_00_model_states.pt").write_bytes(b"m")
        for r in range(deepspeed_ranks):
            (tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"o" * 10)
    else:
        (path / "optimizer.pt").write_bytes(b"o" * 50)
        (path / "scheduler.pt").write_bytes(b"s")
    write_marker(path, {"global_step": step, "order_fingerprint": fingerprint})
    return path


def test_complete_checkpoints_pass(tmp_path):
    for i, kw in enumerate([{}, {"sharded": True}, {"deepspeed_ranks": 2}]):
        marker = check_complete(fake_checkpoint(tmp_path / str(i), 10, **kw), world_size=2)
        assert marker["global_step"] == 10 and "trainer_state.json" in marker["files"]


@pytest.mark.parametrize("damage,reason", [
    (lambda p: (p / "model-00002-of-00002.safetensors").unlink(), "missing_shard"),
    (lambda p: (p / "model-00001-of-00002.safetensors").write_bytes(b"w" * 10), "truncated_file"),
    (lambda p: (p / "trainer_state.json").write_text("{cut"), "truncated_file"),
])
def test_damaged_sharded_checkpoint_is_named(tmp_path, damage, reason):
    path = fake_checkpoint(tmp_path, 5, sharded=True)
    damage(path)
    with pytest.raises(CheckpointError) as e:
        check_complete(path)
    assert e.value.reason == reason and "checkpoint-5" in str(e.value)


def test_unmarked_checkpoint_checked_by_required_files(tmp_path):
    path = fake_checkpoint(tmp_path, 5, sharded=True)
    (path / MARKER).unlink()                                # e.g. killed before the marker was written
    check_complete(path)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        check_complete(path)
    ds = fake_checkpoint(tmp_path, 6, deepspeed_ranks=1)
    (ds / MARKER).unlink()
    with pytest.raises(CheckpointError, match="1 optimizer shard"):
        check_complete(ds, world_size=2)                    # one rank's optimizer partition missing


def test_latest_complete_falls_back_past_a_broken_save(tmp_path):
    fake_checkpoint(tmp_path, 10)
    broken = fake_checkpoint(tmp_path, 20)
    (broken / "optimizer.pt").unlink()
    half = tmp_path / "checkpoint-30"                       # a save cut short: only the weights so far
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"w")
    (tmp_path / "checkpoint-x").mkdir()                      # not a checkpoint name: ignored
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 20, 10]
    chosen, skipped = latest_complete(tmp_path)
    assert chosen.name == "checkpoint-10"
    assert [(Path(s["path"]).name, s["reason"]) for s in skipped] == [
        ("checkpoint-30", "missing_shard"), ("checkpoint-20", "missing_shard")]
    assert latest_complete(tmp_path / "nothing") == (None, [])


def test_stage_resume_choice(tmp_path):
    good = fake_checkpoint(tmp_path / "run", 4, fingerprint="order-a")
    broken = fake_checkpoint(tmp_path / "run", 8, fingerprint="order-a")
    shutil.rmtree(broken / "global_step8", ignore_errors=True)
    (broken / "scheduler.pt").unlink()
    chosen, skipped = choose_checkpoint(CptConfig(), tmp_path / "run", 1, "order-a")
    assert chosen == str(good) and skipped[0]["reason"] == "missing_shard"
    assert choose_checkpoint(CptConfig(resume="never"), tmp_path / "run", 1, "order-a") == (None, [])
    with pytest.raises(CheckpointError, match="scheduler.pt"):   # an explicit path must be complete
        choose_checkpoint(CptConfig(resume_from=str(broken)), tmp_path / "run", 1, "order-a")
    with pytest.raises(CheckpointError) as e:                     # another schedule: refuse
        choose_checkpoint(CptConfig(), tmp_path / "run", 1, "order-b")
    assert e.value.reason == "order_changed"
