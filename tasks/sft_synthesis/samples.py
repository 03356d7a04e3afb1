"""The output contract of SFT data construction.

An SFT sample (one line of data/sft_data/samples/part-*.jsonl) has the mid-training sample's shape
(tasks/mid_synthesis/samples.py: chat `messages` with optional `reasoning_content`, `tool_calls` and tool
turns, `tools`, `images`, `source_ids`, `meta`), with the candidate pool it came from in place of the
engine family:

    id          "sft-<source>-<hash of sources and content>"
    family      the candidate pool (SOURCES): mid_data, kg_qa, medquad, vqa_rad, ocr, pubmedqa, instruct
    phase       1 (SFT has no curriculum; the field keeps one schema for the training library)
    meta        {generator, answer, answer_kind (choice | judgement | fill | open), accuracy, ...}
                accuracy says what vouches for the answer: "consensus" (the experts agreed, the score in
                meta.consensus), "human" (a reviewer's label imported from the review queue), "code" (a
                checker verified it: instruction constraints, OCR values, mid-training's dual gate)

Every step of the stage returns a GateOutcome (kept samples, and one rejection per dropped candidate with
its gate and reason).
"""

from __future__ import annotations

from typing import Any

from tasks.cpt_synthesis.samples import SampleError
from tasks.cpt_synthesis.samples import sample_id as cpt_sample_id
from tasks.mid_synthesis.samples import ANSWER_KINDS, GateOutcome, validate_sample

__all__ = ["SOURCES", "ACCURACY", "ANSWER_KINDS", "GateOutcome", "SampleError", "sft_sample", "validate_sft_sample",
           "user_text", "with_messages"]

SOURCES = ("mid_data", "kg_qa", "medquad", "vqa_rad", "ocr", "pubmedqa", "instruct")
ACCURACY = ("consensus", "human", "code")


def sft_id(source: str, *parts: Any) -> str:
    return "sft-" + cpt_sample_id(source, *parts).removeprefix("cpt-")


def _content_key(messages: list[dict], images: list[dict], source_ids: list[str]) -> tuple[str, str, str]:
    content = repr([(m.get("role"), m.get("content"), m.get("reasoning_content"), m.get("tool_calls"))
                    for m in messages])
    return "|".join(source_ids), content, "|".join(i["sha256"] for i in images)


def sft_sample(source: str, source_ids: list[str], messages: list[dict], *, answer: str, answer_kind: str,
               accuracy: str, images: list[dict] | None = None, tools: list[dict] | None = None,
               generator: str = "local", **meta: Any) -> dict:
    """A validated SFT sample whose id derives from (source, lineage, messages, images)."""
    images = [{"path": i["path"], "sha256": i["sha256"]} for i in (images or [])]
    sample = {"id": sft_id(source, *_content_key(messages, images, source_ids)),
              "kind": "image_text" if images else "text", "task": source, "family": source, "phase": 1,
              "source_ids": list(source_ids), "text": "", "messages": list(messages), "tools": list(tools or []),
              "images": images, "meta": {"generator": generator, "answer": answer, "answer_kind": answer_kind,
                                         "accuracy": accuracy, **meta}}
    return validate_sft_sample(sample)


def with_messages(sample: dict, messages: list[dict], **meta: Any) -> dict:
    """A copy of `sample` with other messages (a rewritten prompt, a reviewer's answer) and a new id."""
    out = {**sample, "messages": list(messages), "meta": {**sample["meta"], **meta}}
    out["id"] = sft_id(sample["family"], *_content_key(messages, sample["images"], sample["source_ids"]))
    return validate_sft_sample(out)


def validate_sft_sample(s: Any) -> dict:
    """Return `s` if it satisfies the contract, else raise SampleError. The structural checks (roles,
    tool calls, image parts against image refs, answer kind) are the mid-training contract's, run with
    a mid family standing in for the SFT source, so the two contracts cannot drift apart."""
    if not isinstance(s, dict):
        raise SampleError("not_an_object", type(s).__name__)
    if s.get("family") not in SOURCES:
        raise SampleError("bad_source", f"{s.get('family')!r} not in {SOURCES}")
    if s.get("phase") != 1:
        raise SampleError("bad_phase", f"SFT samples have phase 1, got {s.get('phase')!r}")
    if not isinstance(s.get("meta"), dict) or s["meta"].get("accuracy") not in ACCURACY:
        raise SampleError("bad_accuracy", f"meta.accuracy must be one of {ACCURACY}")
    if not str(s.get("id", "")).startswith("sft-"):
        raise SampleError("bad_field", f"id {s.get('id')!r} must start with 'sft-'")
    validate_sample({**s, "family": "kg_paths"})
    return s


def user_text(sample: dict, turn: int = 0) -> str:
    """The text of the sample's `turn`-th user message (text parts joined)."""
    users = [m for m in sample["messages"] if m.get("role") == "user"]
    c = users[turn]["content"]
    return c if isinstance(c, str) else "".join(p.get("text", "") for p in c if p.get("type") == "text")
