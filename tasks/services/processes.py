"""Long-running service processes: started detached (own session, log file, pid file), waited for
over HTTP, stopped by process group (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


class ServiceError(RuntimeError):
    """A service did not start or stop; the message names it and its log."""


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) is not running
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def start(name: str, cmd: list[str], *, env: dict, cwd: Path, run_dir: Path) -> int:
    """Start `cmd` detached; its output goes to run_dir/<name>.log, its pid to run_dir/<name>.pid.
    A service already running under that pid file is left alone."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / f"{name}.pid"
    running = read_pid(pid_file)
    if running:
        return running
    log = open(run_dir / f"{name}.log", "ab")
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        log.close()
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(name: str, run_dir: Path, grace_s: float = 15.0) -> bool:
    """Stop the service's process group; True if something was running."""
    pid_file = run_dir / f"{name}.pid"
    pid = read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid) and not _group_alive(pid):
                return True
            time.sleep(0.2)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_http(name: str, url: str, *, pid: int, log: Path, timeout_s: float) -> None:
    """Wait until `url` answers 2xx; fail early, with the log's tail, if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if 200 <= r.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if not alive(pid):
            raise ServiceError(f"{name} exited during start-up; its log ({log}) ends:\n{tail(log)}")
        time.sleep(1.0)
    raise ServiceError(f"{name} did not answer {url} within {timeout_s:.0f} s; its log ({log}) ends:\n{tail(log)}")


def tail(path: Path, n: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-n:].decode("utf-8", "replace")
