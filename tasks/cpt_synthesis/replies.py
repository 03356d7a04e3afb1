"""Reply shapes of the CPT synthesis roles (built on tasks.llm.parsing; asked through tasks.llm.ask)."""

from __future__ import annotations

from tasks.llm.parsing import ParseError, parse_json_like


def qa_pairs(reply: str, *, max_pairs: int = 8) -> list[dict]:
    """[{"question", "answer"}, ...] from a reply holding a list of pairs or {"qa": [...]}."""
    val = parse_json_like(reply, expect=(dict, list))
    if isinstance(val, dict):
        val = val.get("qa", val.get("questions"))
    if not isinstance(val, list) or not val:
        raise ParseError("expected a non-empty list of {question, answer} objects", reply)
    out = []
    for item in val[:max_pairs]:
        if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                and isinstance(item.get("answer"), str) and item["question"].strip() and item["answer"].strip()):
            raise ParseError(f"item {str(item)[:80]!r} is not a {{question, answer}} object with text", reply)
        out.append({"question": item["question"].strip(), "answer": item["answer"].strip()})
    return out
