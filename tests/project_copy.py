"""A self-contained copy of the project for end-to-end runs (own git repo, DVC cache, MLflow
store), so tests never touch the checkout's data/, dvc.lock or mlflow.db."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("MEDX_DATA_ROOT", PROJECT.parent / "shared" / "data")).resolve()
VENV_BIN = Path(sys.executable).parent


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of the checkout."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (PROJECT / f).is_file()]


def make_project_copy(dest: Path, profile: str = "tiny", **param_overrides) -> Path:
    """A self-contained copy of the project (own git repo, DVC cache, MLflow store)."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / rel, target)
    params_path = dest / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params.update(profile=profile, data_root=str(DATA_ROOT), **param_overrides)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    (dest / "dvc.lock").unlink(missing_ok=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@localhost",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@localhost"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def project_env(root: Path, **extra) -> dict:
    """Environment for running the copy's commands: its venv first on PATH, its own store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MEDX_", "AIRFLOW"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1",
               MEDX_PROJECT_ROOT=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               MEDX_MLFLOW_ARTIFACTS=(root / "mlartifacts").as_uri(), **extra)
    return env


def run_in(root: Path, *cmd: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), cwd=root, env=env or project_env(root), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc
