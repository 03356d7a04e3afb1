"""The services (embedded PostgreSQL, MLflow server, Airflow scheduler + DAG processor + API server)
for a project copy, and what a test does with them: trigger through the REST API, kill a running
stage process, read task tries and time overlaps."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import psutil
from project_copy import project_env, run_in

from tasks.services.airflow_api import AirflowAPI

DAG_ID = "medxiaohe_pipeline"


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Services:
    """`python -m tasks.services start|stop` for `root`, with its state under `state` and free ports."""

    def __init__(self, root: Path, state: Path, **settings):
        self.root, self.state = root, state
        self.settings = {"state_dir": str(state), "postgres_port": free_port(), "mlflow_port": free_port(),
                         "airflow_port": free_port(), **settings}
        self.args = [f"{k}={v}" for k, v in self.settings.items()]
        # the services choose their own tracking server: no inherited MLflow store
        self.env = {k: v for k, v in project_env(root).items() if not k.startswith("MLFLOW_")}
        self.env.pop("MEDX_MLFLOW_ARTIFACTS", None)

    def start(self) -> dict:
        out = run_in(self.root, "python", "-m", "tasks.services", "start", *self.args, env=self.env, timeout=600)
        return json.loads(out.stdout[: out.stdout.rindex("}") + 1])

    def stop(self) -> dict:
        out = run_in(self.root, "python", "-m", "tasks.services", "stop", *self.args, env=self.env, timeout=300)
        return json.loads(out.stdout[: out.stdout.rindex("}") + 1])

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['mlflow_port']}"

    def api(self) -> AirflowAPI:
        password = json.loads((self.state / "secrets.json").read_text())["airflow_password"]
        return AirflowAPI(f"http://127.0.0.1:{self.settings['airflow_port']}", "admin", password)


def stage_processes(root: Path, stage: str) -> list[psutil.Process]:
    """The running `python -m tasks.<stage>` processes of this project copy."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = p.info["cmdline"] or []
        if f"tasks.{stage}" in cmd and "-m" in cmd and p.info["cwd"] == str(root):
            found.append(p)
    return found


def wait_killing(api: AirflowAPI, run_id: str, root: Path, stage: str, *, after_s: float,
                 timeout_s: float) -> tuple[dict, float | None]:
    """Wait for the DAG run; on the way, SIGKILL the stage's process once it has run `after_s`
    seconds (mid-run: past its imports, into its work). Returns (the final run, when it was killed)."""
    deadline = time.monotonic() + timeout_s
    killed_at = None
    while True:
        if killed_at is None:
            for p in stage_processes(root, stage):
                if time.time() - p.create_time() >= after_s:
                    os.kill(p.pid, signal.SIGKILL)
                    killed_at = time.time()
        run = api.dag_run(DAG_ID, run_id)
        if run["state"] in ("success", "failed"):
            return run, killed_at
        if time.monotonic() > deadline:
            raise TimeoutError(f"{DAG_ID}/{run_id} still {run['state']} after {timeout_s} s")
        time.sleep(0.5 if killed_at is None else 5)


def _t(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def overlapping_pairs(task_instances: list[dict]) -> list[tuple[str, str]]:
    """Pairs of stage tasks whose [start, end] intervals overlap: they ran at the same time."""
    spans = sorted((_t(ti["start_date"]), _t(ti["end_date"]), ti["task_id"]) for ti in task_instances
                   if ti["start_date"] and ti["end_date"] and not ti["task_id"].endswith("_parent_run"))
    pairs = []
    for i, (s1, e1, a) in enumerate(spans):
        for s2, e2, b in spans[i + 1:]:
            if s2 < e1:
                pairs.append((a, b))
    return pairs
