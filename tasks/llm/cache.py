"""Content-addressed cache of LLM responses on disk.

Why: an LLM stage re-run with the same inputs must cost nothing and give the same output, even
against an endpoint that is not deterministic. The key is the sha256 of the canonical JSON of
everything that determines the reply (model, messages, sampling params); the endpoint URL and the
API key are deliberately not part of it (the same model behind another URL answers the same
request; the key is a secret). One file per entry, `<dir>/<k[:2]>/<k>.json`, written to a temp
file and renamed so concurrent writers and killed runs never leave a torn entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def cache_key(payload: dict) -> str:
    """sha256 hex of the canonical JSON of `payload`."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class ResponseCache:
    """get/put of response text by request payload; `directory=None` disables caching."""

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = Path(directory) if directory else None

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        if self.directory is None:
            return None
        try:
            with open(self.path(key), encoding="utf-8") as f:
                entry = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # an unreadable entry is a miss; the next put replaces it
        resp = entry.get("response") if isinstance(entry, dict) else None
        return resp if isinstance(resp, str) else None

    def put(self, key: str, payload: dict, response: str) -> None:
        if self.directory is None:
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                # The request is stored beside the reply so an entry can be audited by hand.
                json.dump({"request": payload, "response": response}, f, ensure_ascii=False,
                          sort_keys=True, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
