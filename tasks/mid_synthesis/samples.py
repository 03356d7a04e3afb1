"""The one output contract of mid-training data synthesis, and the gated outcome every engine returns.

A mid-training sample (one line of data/mid_data/samples/part-*.jsonl) extends the CPT sample contract
(tasks/cpt_synthesis/samples.py) with what reasoning data needs:

    id          "mid-<family>-<hash of sources and content>"
    kind        "text" | "image_text"
    task        the family (below)
    family      which engine wrote it: kg_multihop, kg_paths, rejection_sampling, reverse_cot,
                visual_cot, agentic_search, agentic_image
    phase       the mid-training curriculum phase it belongs to (PHASES): 1 foundational logic,
                2 long-horizon deduction, 3 perceptual-logic alignment, 4 hybrid fusion
    messages    chat turns; an assistant turn carries its reasoning in `reasoning_content` (rendered
                as a <think> block by the project's chat template) and its answer in `content`;
                tool use is an assistant turn with `tool_calls` [{"type": "function", "function":
                {"name", "arguments"}}] followed by a {"role": "tool", "name", "content"} turn whose
                content is the tool's real output (text, or parts with an image)
    tools       the JSON schemas of the tools the conversation may call ([] without tools)
    images      [{path, sha256}] relative to the project root, one per image part, in order
    source_ids  lineage: KG nodes/edges, corpus documents, benchmark-train items (never empty)
    meta        {generator: "local" | "llm", answer, answer_kind (choice | judgement | fill | open), ...}

Every engine returns a `GateOutcome`: kept samples, and one rejection per dropped candidate with the
gate that dropped it and a reason, so the stage reports read/kept/rejected per engine and per gate.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any

from tasks.cpt_synthesis.samples import SampleError, image_part, text_part
from tasks.cpt_synthesis.samples import sample_id as cpt_sample_id

__all__ = ["FAMILIES", "PHASES", "ANSWER_KINDS", "GateOutcome", "SampleError", "image_part", "text_part", "tool_call",
           "mid_sample", "validate_sample", "final_assistant"]

FAMILIES = ("kg_multihop", "kg_paths", "rejection_sampling", "reverse_cot", "visual_cot",
            "agentic_search", "agentic_image")
PHASES = {1: "foundational_logic", 2: "long_horizon_deduction", 3: "perceptual_logic_alignment",
          4: "hybrid_fusion"}
ANSWER_KINDS = ("choice", "judgement", "fill", "open")
ROLES = ("system", "user", "assistant", "tool")
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass
class GateOutcome:
    """What one engine produced: kept samples and gated rejections ({gate, reason, detail, item})."""
    read: int = 0
    kept: list[dict] = dataclasses.field(default_factory=list)
    rejected: list[dict] = dataclasses.field(default_factory=list)

    def reject(self, gate: str, reason: str, detail: str = "", item: Any = None) -> None:
        self.rejected.append({"gate": gate, "reason": reason, "detail": detail[:500], "item": item})

    def extend(self, other: GateOutcome) -> GateOutcome:
        self.read += other.read
        self.kept.extend(other.kept)
        self.rejected.extend(other.rejected)
        return self

    def by_gate(self) -> dict[str, dict[str, int]]:
        """{gate: {reason: count}}, sorted."""
        out: dict[str, Counter] = {}
        for r in self.rejected:
            out.setdefault(r["gate"], Counter())[r["reason"]] += 1
        return {g: dict(sorted(c.items())) for g, c in sorted(out.items())}


def sample_id(family: str, *parts: Any) -> str:
    """The CPT contract's content hash under the "mid-" prefix."""
    return "mid-" + cpt_sample_id(family, *parts).removeprefix("cpt-")


def tool_call(name: str, arguments: dict) -> dict:
    """One entry of an assistant turn's `tool_calls` (OpenAI's and transformers' format)."""
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def mid_sample(family: str, phase: int, source_ids: list[str], messages: list[dict], *,
               answer: str, answer_kind: str, images: list[dict] | None = None,
               tools: list[dict] | None = None, generator: str = "local", **meta: Any) -> dict:
    """A validated sample whose id derives from (family, sources, messages, images)."""
    images = [{"path": i["path"], "sha256": i["sha256"]} for i in (images or [])]
    content = repr([(m.get("role"), m.get("content"), m.get("reasoning_content"), m.get("tool_calls"))
                    for m in messages])
    sample = {"id": sample_id(family, "|".join(source_ids), content, "|".join(i["sha256"] for i in images)),
              "kind": "image_text" if images else "text", "task": family, "family": family, "phase": phase,
              "source_ids": list(source_ids), "text": "", "messages": list(messages), "tools": list(tools or []),
              "images": images, "meta": {"generator": generator, "answer": answer, "answer_kind": answer_kind,
                                         **meta}}
    return validate_sample(sample)


def _image_parts(content: Any, where: str) -> int:
    if isinstance(content, str):
        return 0
    if not isinstance(content, list) or not content:
        raise SampleError("bad_message", f"{where}: content must be a string or a non-empty list of parts")
    n = 0
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
            raise SampleError("bad_message", f"{where}: part {part!r} is not a text or image part")
        n += part["type"] == "image"
    return n


def validate_sample(s: Any) -> dict:
    """Return `s` if it satisfies the contract (module docstring), else raise SampleError."""
    if not isinstance(s, dict):
        raise SampleError("not_an_object", type(s).__name__)
    for name, typ in (("id", str), ("family", str), ("phase", int), ("source_ids", list), ("messages", list),
                      ("tools", list), ("images", list), ("meta", dict)):
        if not isinstance(s.get(name), typ):
            raise SampleError("bad_field", f"{name!r} must be {typ.__name__}, got {type(s.get(name)).__name__}")
    if s["family"] not in FAMILIES:
        raise SampleError("bad_family", f"{s['family']!r} not in {FAMILIES}")
    if s["phase"] not in PHASES:
        raise SampleError("bad_phase", f"{s['phase']} not in {sorted(PHASES)}")
    if not s["source_ids"] or not all(isinstance(x, str) and x for x in s["source_ids"]):
        raise SampleError("no_lineage", "source_ids must be a non-empty list of non-empty strings")
    meta = s["meta"]
    if meta.get("generator") not in ("local", "llm"):
        raise SampleError("bad_generator", f"meta.generator {meta.get('generator')!r}")
    if meta.get("answer_kind") not in ANSWER_KINDS or not str(meta.get("answer", "")).strip():
        raise SampleError("bad_answer", "meta needs a non-empty answer and an answer_kind in "
                          f"{ANSWER_KINDS}, got {meta.get('answer_kind')!r}")
    if not s["messages"] or s["messages"][-1].get("role") != "assistant":
        raise SampleError("bad_message", "the last message must be the assistant's (the training target)")
    n_images = 0
    for i, m in enumerate(s["messages"]):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise SampleError("bad_message", f"messages[{i}] needs a role in {ROLES}")
        calls = m.get("tool_calls") or []
        if m["role"] != "assistant" or not calls:
            content = m.get("content")
            if isinstance(content, str) and not content.strip():
                raise SampleError("empty_message", f"messages[{i}]: empty content")
        if calls and not s["tools"]:
            raise SampleError("bad_tools", f"messages[{i}] calls a tool but the sample lists no tools")
        for c in calls:
            fn = c.get("function") if isinstance(c, dict) else None
            if not (isinstance(fn, dict) and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), dict)):
                raise SampleError("bad_tool_call", f"messages[{i}]: {str(c)[:120]}")
        n_images += _image_parts(m.get("content", ""), f"messages[{i}]")
    for img in s["images"]:
        if not (isinstance(img, dict) and isinstance(img.get("path"), str) and img["path"]
                and isinstance(img.get("sha256"), str) and _SHA.match(img["sha256"])):
            raise SampleError("bad_image_ref", f"image {img!r} needs a path and a 64-hex sha256")
    if n_images != len(s["images"]):
        raise SampleError("image_mismatch", f"{n_images} image parts for {len(s['images'])} images")
    return s


def final_assistant(sample: dict) -> dict:
    """The last assistant turn (the one with the final answer)."""
    return sample["messages"][-1]
