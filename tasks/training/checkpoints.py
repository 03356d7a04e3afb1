"""Training checkpoints: where they live, whether one is complete, which one to resume.

    root = checkpoint_dir(".cache/cpt_checkpoints", run_key({...}))  # one directory per run identity
    ckpt, skipped = latest_complete(root, world_size=2)                # skipped: [{path, reason, detail}]
    check_complete(path, world_size=1)                                 # raises CheckpointError

Why: the stage must survive a kill (OOM, pre-emption, Ctrl-C) and continue where it stopped, so
checkpoints go to a directory outside DVC's outputs (DVC would delete a stage's outputs before
re-running it), named by a hash of everything that determines the training trajectory (params,
schedule, base model). A changed param therefore starts a fresh run instead of resuming a
different one.

A checkpoint is complete when the Trainer finished writing it: the trainer writes files one by
one, so a kill during a save leaves a directory with some of them. The completion marker
(`checkpoint_complete.json`, written by tasks/training/callbacks/completion_marker.py after every
rank has saved) lists
every file with its size; a listed file that is missing or has another size -- a missing shard --
makes the checkpoint incomplete. Without the marker the required files are checked directly:
trainer_state.json, the model weights (every shard named by a *.index.json), and the optimizer
state (optimizer.pt, or DeepSpeed's `latest` tag with one optimizer-state file per rank).
`latest_complete` skips incomplete checkpoints with the reason and falls back to the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

MARKER = "checkpoint_complete.json"
STEP_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed; `reason` is a stable key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def run_key(identity: dict[str, Any]) -> str:
    """A short stable hash of what determines a training run."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_dir(root: str | os.PathLike, key: str) -> Path:
    return Path(root) / key


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint-N directory, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_RE.match(p.name))]
    return sorted(found, reverse=True)


def file_listing(path: Path) -> dict[str, int]:
    """{relative path: size} of every file under a checkpoint (the marker itself excluded)."""
    out = {}
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.name != MARKER:
            out[str(f.relative_to(path))] = f.stat().st_size
    return out


def write_marker(path: Path, extra: dict[str, Any]) -> None:
    """Record a finished checkpoint: its files and sizes plus `extra` (step, order fingerprint)."""
    body = {"files": file_listing(path), **extra}
    tmp = path / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
    os.replace(tmp, path / MARKER)


def read_marker(path: str | os.PathLike) -> dict | None:
    f = Path(path) / MARKER
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _weight_files(path: Path) -> list[str]:
    """Names of the model weight files a checkpoint must hold (shards included)."""
    for index in sorted(path.glob("*.index.json")):
        try:
            weight_map = json.loads(index.read_text()).get("weight_map", {})
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError("bad_index", f"{index.name}: {e}") from None
        return sorted(set(weight_map.values()))
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [name]
    raise CheckpointError("missing_weights", f"{path.name}: no model.safetensors, pytorch_model.bin or index")


def _optimizer_files(path: Path, world_size: int) -> list[str]:
    latest = path / "latest"
    if latest.is_file():   # DeepSpeed: <tag>/ holds the model states and one optimizer shard per rank
        tag = latest.read_text().strip()
        tag_dir = path / tag
        if not tag_dir.is_dir():
            raise CheckpointError("missing_shard", f"{path.name}: DeepSpeed tag directory {tag}/ missing")
        optim = sorted(p.name for p in tag_dir.glob("*optim_states.pt"))
        if len(optim) < world_size:
            raise CheckpointError("missing_shard", f"{path.name}/{tag}: {len(optim)} optimizer shard(s) for "
                                  f"{world_size} rank(s)")
        models = sorted(p.name for p in tag_dir.glob("*model_states.pt"))
        if not models:
            raise CheckpointError("missing_shard", f"{path.name}/{tag}: no model_states file")
        return [f"{tag}/{n}" for n in optim + models]
    return ["optimizer.pt", "scheduler.pt"]


def check_complete(path: str | os.PathLike, world_size: int = 1) -> dict | None:
    """Raise CheckpointError unless `path` is a complete checkpoint; returns its marker (or None)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError("not_found", f"{path} is not a directory")
    marker = read_marker(path)
    if marker is not None:
        for rel, size in marker.get("files", {}).items():
            f = path / rel
            if not f.is_file():
                raise CheckpointError("missing_shard", f"{path.name}: {rel} is listed but missing")
            if f.stat().st_size != size:
                raise CheckpointError("truncated_file", f"{path.name}: {rel} has {f.stat().st_size} bytes, "
                                      f"{size} were written")
    required = ["trainer_state.json", *_weight_files(path), *_optimizer_files(path, world_size)]
    missing = [r for r in required if not (path / r).is_file()]
    if missing:
        raise CheckpointError("missing_shard", f"{path.name}: missing {missing}")
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError("bad_trainer_state", f"{path.name}: {e}") from None
    return marker


def latest_complete(root: str | os.PathLike, world_size: int = 1) -> tuple[Path | None, list[dict]]:
    """(newest complete checkpoint or None, [{path, reason, detail}] of the newer ones skipped)."""
    skipped = []
    for _, path in list_checkpoints(root):
        try:
            check_complete(path, world_size)
        except CheckpointError as e:
            skipped.append({"path": str(path), "reason": e.reason, "detail": e.detail})
            continue
        return path, skipped
    return None, skipped
