"""The connector contract.

A connector is a generator `read(ctx) -> Iterator[Item]` where an Item is
`(record, None, nbytes)` for a record it could build or `(None, rejection, nbytes)` for
input it had to quarantine (a bad file, a bad line, a QA pair without an answer). Every
unit of input yields exactly one Item, so the collect stage's read == kept + rejected holds
by construction. Connectors never raise on bad data; they raise only when the source as a
whole is unusable (missing path, checksum mismatch), and then name the path.

Memory stays bounded whatever the input: files are streamed, and every unit a connector holds
whole is capped (SourceContext: `max_text_bytes` one text field or XML text node,
`max_record_bytes` one line / block / citation, `max_file_bytes` a file parsed whole,
`max_inflated_bytes` a compressed file after inflation). Input over a cap is quarantined as
`text_too_large`, `line_too_large`, `record_too_large` or `file_too_large`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from defusedxml import DefusedXmlException

from tasks.common.io import (
    MAX_FILE_BYTES,
    MAX_INFLATED_BYTES,
    MAX_RECORD_BYTES,
    file_sha256,
    read_capped,
)
from tasks.common.records import rejection
from tasks.corpus.images import ImageStore

Item = tuple[dict | None, dict | None, int]

# Safe XML: defusedxml refuses entity declarations (billion laughs, quadratic blowup) and
# external entities / DTD fetching; a file that tries either is quarantined as unsafe_xml.
XML_UNSAFE = (DefusedXmlException,)


class SourceError(RuntimeError):
    """The source as a whole cannot be read; the message names the path."""


@dataclass
class SourceConfig:
    path: str
    url: str = ""          # official download location, for provenance
    sha256: str = ""       # optional: verified before reading (tree hash for directories)
    enabled: bool = True
    license: str = ""


@dataclass
class SourceContext:
    name: str
    path: Path
    images: ImageStore
    max_text_bytes: int
    license: str = ""
    max_record_bytes: int = MAX_RECORD_BYTES
    max_file_bytes: int = MAX_FILE_BYTES
    max_inflated_bytes: int = MAX_INFLATED_BYTES

    def record_meta(self, **fields) -> dict:
        """Meta common to every record of this source (license travels with the data)."""
        return {"license": self.license, **fields}

    def check_text(self, text: str, locator: str) -> dict | None:
        """A rejection for unusable text, else None."""
        if not text or not text.strip():
            return rejection("empty_text", "no text after parsing", locator=locator)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.max_text_bytes:
            return rejection("text_too_large", f"{size} bytes > {self.max_text_bytes}",
                             locator=locator)
        return None


Connector = Callable[[SourceContext], Iterator[Item]]


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's sorted (relative path, file sha256) listing."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def verify_source(name: str, path: Path, expected_sha256: str) -> None:
    if not path.exists():
        raise SourceError(f"source {name!r}: path {path} does not exist")
    if expected_sha256:
        actual = tree_sha256(path)
        if actual != expected_sha256.lower():
            raise SourceError(f"source {name!r}: sha256 of {path} is {actual}, "
                              f"expected {expected_sha256}")


def files_under(path: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Files matching any pattern under a directory (recursive), or the file itself; sorted."""
    if path.is_file():
        return [path]
    found = {p for pat in patterns for p in path.rglob(pat) if p.is_file()}
    return sorted(found, key=lambda p: p.relative_to(path).as_posix())


def read_bytes(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes; InputTooLarge (reason `file_too_large`) above `max_bytes`."""
    return read_capped(path, max_bytes)


def too_large(path: Path, max_bytes: int) -> dict | None:
    """A `file_too_large` rejection for a file over `max_bytes` on disk, checked before it is opened."""
    size = os.path.getsize(path)
    if size > max_bytes:
        return rejection("file_too_large", f"{size} bytes > {max_bytes}", locator=str(path))
    return None


def empty_file(path: Path) -> dict | None:
    """A rejection for an empty file (an empty file is input too, and must be accounted)."""
    if os.path.getsize(path) == 0:
        return rejection("empty_file", "file has no content", locator=str(path))
    return None
