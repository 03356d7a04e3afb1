"""The record contract shared by every data stage.

A record is a plain JSON object (kept as a dict for speed):

    id      stable, content-derived id (see `make_id`)
    source  connector name, e.g. "medquad"
    text    UTF-8 text ("" for image-only records)
    images  list of {"path": <path relative to the project root>, "sha256": <hex>}
    meta    source-specific fields (license, native ids, structured attributes, ...)

A rejection is the record (or, when no record could be built, a locator such as a file
path and line number) plus a machine-readable `reason` and a human-readable `detail`.
Nothing a stage reads is dropped without one of the two.
"""

from __future__ import annotations

import hashlib
from typing import Any

REQUIRED_FIELDS = {"id": str, "source": str, "text": str, "images": list, "meta": dict}


class RecordError(ValueError):
    """A record that does not satisfy the contract; `reason` is the rejection reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def make_id(source: str, *parts: Any) -> str:
    """A stable id from the source name and the record's native key / content parts."""
    h = hashlib.sha256(source.encode())
    for p in parts:
        h.update(b"\x1f")
        h.update(str(p).encode("utf-8", "surrogatepass"))
    return f"{source}-{h.hexdigest()[:20]}"


def make_record(source: str, native_key: Any, text: str, *, images: list | None = None,
                meta: dict | None = None) -> dict:
    """Build a record whose id derives from (source, native key, text)."""
    return {
        "id": make_id(source, native_key, text),
        "source": source,
        "text": text,
        "images": list(images or []),
        "meta": dict(meta or {}),
    }


def validate_record(rec: Any) -> dict:
    """Return `rec` if it satisfies the contract, else raise RecordError(reason)."""
    if not isinstance(rec, dict):
        raise RecordError("not_an_object", f"expected a JSON object, got {type(rec).__name__}")
    for name, typ in REQUIRED_FIELDS.items():
        if name not in rec:
            raise RecordError("missing_field", f"record lacks required field {name!r}")
        if not isinstance(rec[name], typ):
            raise RecordError("bad_field_type",
                              f"field {name!r} must be {typ.__name__}, got {type(rec[name]).__name__}")
    if not rec["id"]:
        raise RecordError("missing_field", "record has an empty id")
    for img in rec["images"]:
        if not (isinstance(img, dict) and isinstance(img.get("path"), str)
                and isinstance(img.get("sha256"), str)):
            raise RecordError("bad_field_type", "each image needs string 'path' and 'sha256'")
    return rec


def rejection(reason: str, detail: str = "", *, record: dict | None = None,
              locator: str | None = None) -> dict:
    """A quarantine entry: the record (when there is one) or a locator, with the reason."""
    out: dict[str, Any] = {"reason": reason, "detail": detail}
    if record is not None:
        out["id"] = record.get("id")
        out["source"] = record.get("source")
        out["record"] = record
    if locator is not None:
        out["locator"] = locator
    return out
