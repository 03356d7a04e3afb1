"""The one output contract of CPT data synthesis, and the kept/rejected outcome every function returns.

A CPT sample (one line of data/cpt_data/samples/part-*.jsonl):

    id          stable, content-derived ("cpt-<task>-<hash>"), see `make_sample`
    kind        "text" | "image_text" | "ocr"
    task        what produced it: atomic_qa, aggregated_qa, passage, caption, instruction_<kind>,
                ocr_transcription, ocr_qa
    source_ids  the corpus records / KG nodes and edges it derives from (lineage, never empty)
    text        plain training text ("" when the sample is a conversation)
    messages    chat turns [{role: user|assistant|system, content}] ([] for plain text); content is a
                string or a list of parts {"type": "text", "text"} / {"type": "image"} (the project's
                chat template renders an image part as the image placeholder)
    images      [{path, sha256}] (relative paths; required for image_text and ocr, empty for text)
    meta        {generator: "local" | "llm", ...task-specific fields (OCR row boxes, KG provenance)}

Why one contract: the ordering (cpt_order) and training (cpt) stages read every kind the same way,
and lineage (`source_ids`) lets the report trace a sample back to the corpus and the graph.

Outcome: each data function returns `Outcome(kept, rejected)`; a rejection is
{"reason", "detail", "item": <a short locator or the rejected item>} so nothing is lost silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

KINDS = ("text", "image_text", "ocr")
GENERATORS = ("local", "llm")
ROLES = ("system", "user", "assistant")
_SHA = re.compile(r"^[0-9a-f]{64}$")


class SampleError(ValueError):
    """A sample that breaks the contract; `reason` is machine-readable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class Outcome:
    """Kept outputs and rejected inputs (each with a reason) of one synthesis function."""
    kept: list = dataclasses.field(default_factory=list)
    rejected: list[dict] = dataclasses.field(default_factory=list)

    def reject(self, reason: str, detail: str = "", item: Any = None) -> None:
        self.rejected.append({"reason": reason, "detail": detail, "item": item})

    def extend(self, other: Outcome) -> Outcome:
        self.kept.extend(other.kept)
        self.rejected.extend(other.rejected)
        return self

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rejected:
            out[r["reason"]] = out.get(r["reason"], 0) + 1
        return dict(sorted(out.items()))


def sample_id(task: str, *parts: Any) -> str:
    h = hashlib.sha256(task.encode())
    for p in parts:
        h.update(b"\x1f")
        h.update(str(p).encode("utf-8", "surrogatepass"))
    return f"cpt-{task}-{h.hexdigest()[:20]}"


def image_part() -> dict:
    return {"type": "image"}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def make_sample(kind: str, task: str, source_ids: list[str], *, text: str = "",
                messages: list[dict] | None = None, images: list[dict] | None = None,
                generator: str = "local", **meta: Any) -> dict:
    """A validated sample whose id derives from (task, sources, content)."""
    messages = list(messages or [])
    images = [{"path": i["path"], "sha256": i["sha256"]} for i in (images or [])]
    content = text or repr([(m["role"], m["content"]) for m in messages])
    sample = {"id": sample_id(task, "|".join(source_ids), content, "|".join(i["sha256"] for i in images)),
              "kind": kind, "task": task, "source_ids": list(source_ids), "text": text,
              "messages": messages, "images": images, "meta": {"generator": generator, **meta}}
    return validate_sample(sample)


def _check_content(content: Any, where: str) -> int:
    """Number of image parts in one message content; SampleError if malformed or empty."""
    if isinstance(content, str):
        if not content.strip():
            raise SampleError("empty_message", f"{where}: empty content")
        return 0
    if not isinstance(content, list) or not content:
        raise SampleError("bad_message", f"{where}: content must be a string or a non-empty list of parts")
    n_images, has_text = 0, False
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
            raise SampleError("bad_message", f"{where}: part {part!r} is not a text or image part")
        if part["type"] == "image":
            n_images += 1
        elif isinstance(part.get("text"), str) and part["text"].strip():
            has_text = True
        else:
            raise SampleError("empty_message", f"{where}: text part without text")
    if not has_text:
        raise SampleError("empty_message", f"{where}: no text part")
    return n_images


def validate_sample(s: Any) -> dict:
    """Return `s` if it satisfies the contract (module docstring), else raise SampleError."""
    if not isinstance(s, dict):
        raise SampleError("not_an_object", type(s).__name__)
    for name, typ in (("id", str), ("kind", str), ("task", str), ("source_ids", list), ("text", str),
                      ("messages", list), ("images", list), ("meta", dict)):
        if not isinstance(s.get(name), typ):
            raise SampleError("bad_field", f"{name!r} must be {typ.__name__}, got {type(s.get(name)).__name__}")
    if not s["id"] or not s["task"]:
        raise SampleError("bad_field", "empty id or task")
    if s["kind"] not in KINDS:
        raise SampleError("bad_kind", f"{s['kind']!r} not in {KINDS}")
    if not s["source_ids"] or not all(isinstance(x, str) and x for x in s["source_ids"]):
        raise SampleError("no_lineage", "source_ids must be a non-empty list of non-empty strings")
    if s["meta"].get("generator") not in GENERATORS:
        raise SampleError("bad_generator", f"meta.generator {s['meta'].get('generator')!r} not in {GENERATORS}")
    if bool(s["text"].strip()) == bool(s["messages"]):
        raise SampleError("bad_content", "exactly one of text (non-empty) and messages must be set")
    image_parts = 0
    for i, m in enumerate(s["messages"]):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise SampleError("bad_message", f"messages[{i}] needs a role in {ROLES}")
        image_parts += _check_content(m.get("content"), f"messages[{i}]")
    if s["messages"] and s["messages"][-1]["role"] != "assistant":
        raise SampleError("bad_message", "the last message must be the assistant's (the training target)")
    for img in s["images"]:
        if not (isinstance(img, dict) and isinstance(img.get("path"), str) and img["path"]
                and isinstance(img.get("sha256"), str) and _SHA.match(img["sha256"])):
            raise SampleError("bad_image_ref", f"image {img!r} needs a path and a 64-hex sha256")
    if s["kind"] == "text" and s["images"]:
        raise SampleError("bad_kind", "a text sample carries no images")
    if s["kind"] != "text" and not s["images"]:
        raise SampleError("missing_image", f"a {s['kind']} sample needs its image")
    if s["messages"] and image_parts != len(s["images"]):
        raise SampleError("image_mismatch", f"{image_parts} image parts for {len(s['images'])} images")
    return s


def check_text(text: Any, *, min_chars: int = 1, max_chars: int = 20000) -> str | None:
    """The rejection reason for an input text, or None: `empty_text` / `text_too_long` / `not_text`."""
    if not isinstance(text, str):
        return "not_text"
    n = len(text.strip())
    if n < min_chars:
        return "empty_text"
    if n > max_chars:
        return "text_too_long"
    return None
