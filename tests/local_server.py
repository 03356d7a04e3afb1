"""The project's real llama.cpp server (SmolLM2-135M-Instruct from PyPI) for the tests that need it,
with its own response cache and log under a temporary folder."""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def real_local_server(tmp: Path, **settings):
    """The LLMConfig of the live server (its URL filled in); `settings` override LLMConfig fields."""
    from tasks.llm.client import LLMConfig, LocalServerConfig
    from tasks.llm.server import endpoint

    base = dict(cache_dir=str(tmp / "cache"), seed=1234, timeout_s=120,
                server=LocalServerConfig(log_file=str(tmp / "server.log")))
    with endpoint(LLMConfig(**{**base, **settings})) as live:
        yield live
