"""The services' pieces on their own: settings, secrets, detached processes, the embedded PostgreSQL
server. The whole set under the real scheduler runs in tests/test_pipeline_e2e.py."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from scheduler import free_port

from tasks.common.config import ConfigError, build
from tasks.services.config import ServicesConfig
from tasks.services.postgres import EmbeddedPostgres
from tasks.services.processes import ServiceError, alive, read_pid, start, stop, wait_http
from tasks.services.stack import Stack


def config(tmp_path: Path, **over) -> ServicesConfig:
    return build(ServicesConfig, {"state_dir": str(tmp_path / "state"), **over}, "services")


@pytest.mark.parametrize("over, needle", [
    ({"host": "0.0.0.0"}, "loopback"),
    ({"database": "mysql"}, "not one of"),
    ({"database": "system"}, "database_url"),
    ({"parallelism": 0}, "parallelism"),
])
def test_bad_settings_are_refused_with_the_key_named(tmp_path, over, needle):
    with pytest.raises(ConfigError, match=needle):
        config(tmp_path, **over)


def test_secrets_are_generated_once_and_private(tmp_path):
    stack = Stack(config(tmp_path))
    first = stack.secrets()
    assert stack.secrets() == first
    path = stack.state / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len({first["postgres_password"], first["airflow_password"], first["jwt_secret"]}) == 3


def test_airflow_environment_is_a_local_executor_on_the_loopback(tmp_path):
    stack = Stack(config(tmp_path, airflow_port=8123, mlflow_port=5123, parallelism=3, database="sqlite"))
    env = stack.airflow_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "1"          # sqlite: one writer, whatever was asked
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5123"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == stack.secrets()["jwt_secret"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{stack.state / 'airflow.db'}"
    pg = Stack(config(tmp_path, parallelism=3, postgres_port=6543))
    assert pg.airflow_env()["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert pg.database_url("mlflow").endswith("@127.0.0.1:6543/mlflow")
    system = Stack(config(tmp_path, database="system", database_url="postgresql+psycopg2://u:p@db:5432/"))
    assert system.database_url("airflow") == "postgresql+psycopg2://u:p@db:5432/airflow"


def test_a_detached_service_starts_answers_and_stops(tmp_path):
    port = free_port()
    run_dir = tmp_path / "run"
    pid = start("web", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                env=dict(os.environ), cwd=tmp_path, run_dir=run_dir)
    wait_http("web", f"http://127.0.0.1:{port}/", pid=pid, log=run_dir / "web.log", timeout_s=30)
    assert read_pid(run_dir / "web.pid") == pid
    # starting it again leaves the running one alone
    assert start("web", [sys.executable, "-c", "pass"], env=dict(os.environ), cwd=tmp_path, run_dir=run_dir) == pid
    assert stop("web", run_dir) is True
    assert not alive(pid) and not (run_dir / "web.pid").exists()
    assert stop("web", run_dir) is False


def test_a_service_that_dies_at_start_is_reported_with_its_log(tmp_path):
    run_dir = tmp_path / "run"
    pid = start("broken", [sys.executable, "-c", "import sys; print('no config here'); sys.exit(3)"],
                env=dict(os.environ), cwd=tmp_path, run_dir=run_dir)
    with pytest.raises(ServiceError, match="no config here"):
        wait_http("broken", f"http://127.0.0.1:{free_port()}/", pid=pid, log=run_dir / "broken.log", timeout_s=60)


def test_embedded_postgres_serves_a_database_on_the_loopback_with_a_password(tmp_path):
    import psycopg2

    port = free_port()
    pg = EmbeddedPostgres(tmp_path / "pgdata", host="127.0.0.1", port=port, password="s3cret",
                          log=tmp_path / "pg.log")
    pg.start()
    try:
        assert pg.running()
        pg.ensure_database("mlflow")
        pg.ensure_database("mlflow")                      # idempotent
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password="s3cret", dbname="mlflow")
        with conn, conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", password="wrong", dbname="mlflow")
    finally:
        assert pg.stop() is True
    assert not pg.running()
