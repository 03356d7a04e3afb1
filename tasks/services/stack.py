"""The set of services, started and stopped in dependency order.

    stack = Stack(load_services_config())
    stack.start()       # postgres -> mlflow -> airflow db migrate -> api-server, scheduler, dag-processor
    stack.env()         # the environment a client needs (MLFLOW_TRACKING_URI, ...)
    stack.stop()

State (under `state_dir`): secrets.json (generated passwords and keys, mode 0600), pgdata/ (the
cluster), mlartifacts/ (MLflow's artifact root, served by the tracking server), airflow/ (AIRFLOW_HOME:
config-free, logs), run/ (pid files and service logs), services.json (what is running where).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

from tasks.common.config import project_root
from tasks.services.config import ServicesConfig
from tasks.services.postgres import EmbeddedPostgres
from tasks.services.processes import ServiceError, read_pid, start, stop, wait_http

AIRFLOW_PROCESSES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor")
ADMIN = "admin"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Stack:
    def __init__(self, cfg: ServicesConfig):
        self.cfg = cfg
        self.state = cfg.state
        self.run_dir = self.state / "run"

    # -- secrets and URLs ---------------------------------------------------------------------------
    def secrets(self) -> dict:
        path = self.state / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        self.state.mkdir(parents=True, exist_ok=True)
        values = {"postgres_password": secrets.token_urlsafe(24), "airflow_password": secrets.token_urlsafe(16),
                  "jwt_secret": secrets.token_urlsafe(32),
                  "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(values, f, indent=2)
        return values

    def postgres(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.state / "pgdata", host=self.cfg.host, port=self.cfg.postgres_port,
                                password=self.secrets()["postgres_password"], log=self.run_dir / "postgres.log")

    def database_url(self, database: str) -> str:
        if self.cfg.database == "embedded":
            return self.postgres().url(database)
        if self.cfg.database == "system":
            return f"{self.cfg.database_url.rstrip('/')}/{database}"
        return f"sqlite:///{self.state / f'{database}.db'}"

    # -- environments -------------------------------------------------------------------------------
    def env(self) -> dict:
        """What a client of the services needs: the tracking server and Airflow's API."""
        return {"MLFLOW_TRACKING_URI": self.cfg.mlflow_url, "MEDX_AIRFLOW_API": self.cfg.airflow_url}

    def airflow_env(self) -> dict:
        s = self.secrets()
        home = self.state / "airflow"
        root = project_root()
        parallelism = 1 if self.cfg.database == "sqlite" else self.cfg.parallelism  # sqlite: one writer
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "MLFLOW_", "MEDX_MLFLOW_"))}
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url("airflow"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.cfg.airflow_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": self.cfg.host,
            "AIRFLOW__API__PORT": str(self.cfg.airflow_port),
            "AIRFLOW__API__BASE_URL": self.cfg.airflow_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "3600",
            "MLFLOW_TRACKING_URI": self.cfg.mlflow_url,
            "MEDX_PROJECT_ROOT": str(root),
            "MEDX_STAGE_RETRIES": str(self.cfg.stage_retries),
            "MEDX_STAGE_RETRY_DELAY_S": str(self.cfg.retry_delay_s),
            "HF_HUB_OFFLINE": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        })
        return env

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> dict:
        self.state.mkdir(parents=True, exist_ok=True)
        s = self.secrets()
        if self.cfg.database == "embedded":
            pg = self.postgres()
            pg.start()
            for db in ("airflow", "mlflow"):
                pg.ensure_database(db)
        root = project_root()
        timeout = self.cfg.start_timeout_s
        mlflow_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        pid = start("mlflow", [_bin("mlflow"), "server", "--backend-store-uri", self.database_url("mlflow"),
                               "--artifacts-destination", str(self.state / "mlartifacts"),
                               "--host", self.cfg.host, "--port", str(self.cfg.mlflow_port), "--workers", "1"],
                    env=mlflow_env, cwd=root, run_dir=self.run_dir)
        wait_http("mlflow", f"{self.cfg.mlflow_url}/health", pid=pid, log=self.run_dir / "mlflow.log",
                  timeout_s=timeout)

        env = self.airflow_env()
        home = self.state / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        passwords = home / "passwords.json"
        if not passwords.exists():
            passwords.write_text(json.dumps({ADMIN: s["airflow_password"]}))
            os.chmod(passwords, 0o600)
        migrate = self.run_dir / "airflow-db-migrate.log"
        import subprocess

        with open(migrate, "ab") as log:
            rc = subprocess.run([_bin("airflow"), "db", "migrate"], env=env, cwd=root, stdout=log,
                                stderr=subprocess.STDOUT, timeout=600).returncode
        if rc != 0:
            raise ServiceError(f"airflow db migrate failed ({rc}); see {migrate}")
        commands = {"airflow-api-server": ["api-server", "--host", self.cfg.host, "--port", str(self.cfg.airflow_port)],
                    # the API server serves task logs from the shared log folder: no log server port to open
                    "airflow-scheduler": ["scheduler", "--skip-serve-logs"],
                    "airflow-dag-processor": ["dag-processor"]}
        pids = {name: start(name, [_bin("airflow"), *args], env=env, cwd=root, run_dir=self.run_dir)
                for name, args in commands.items()}
        wait_http("airflow-api-server", f"{self.cfg.airflow_url}/api/v2/monitor/health",
                  pid=pids["airflow-api-server"], log=self.run_dir / "airflow-api-server.log", timeout_s=timeout)
        info = self.status()
        (self.state / "services.json").write_text(json.dumps(info, indent=2) + "\n")
        return info

    def stop(self) -> dict:
        stopped = {name: stop(name, self.run_dir) for name in (*AIRFLOW_PROCESSES, "mlflow")}
        if self.cfg.database == "embedded" and (self.state / "pgdata").exists():
            stopped["postgres"] = self.postgres().stop()
        (self.state / "services.json").unlink(missing_ok=True)
        return stopped

    def status(self) -> dict:
        running = {name: read_pid(self.run_dir / f"{name}.pid") for name in ("mlflow", *AIRFLOW_PROCESSES)}
        if self.cfg.database == "embedded":
            running["postgres"] = self.postgres().running() if (self.state / "pgdata").exists() else False
        return {"database": self.cfg.database, "mlflow": self.cfg.mlflow_url, "airflow": self.cfg.airflow_url,
                "airflow_user": ADMIN, "state_dir": str(self.state), "running": running}
