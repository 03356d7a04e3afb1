"""One way every LLM role asks the endpoint: strict parse, one repair turn, recorded failures.

    answers = ask_parsed(client, chats, parse_fn, repair_text, max_tokens=256)
    for a in answers: a.value (parsed) or a.failure ({kind, detail, raw, raw_repair})

Every LLM role of the project goes through `ask_parsed`: replies go
through `parse_fn` (built on tasks.llm.parsing: JSON or Python-literal data, never eval); a reply that
does not parse is retried once with a repair turn (the bad reply plus a correction, so the request
differs from the cached one); what the repair does not fix, and requests that failed for good after
the client's own retries, come back as failures carrying the raw reply text. Nothing is guessed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from tasks.llm.parsing import ParseError, parse_json_like

RAW_CHARS = 2000


@dataclasses.dataclass
class Answer:
    value: Any = None
    failure: dict | None = None
    repaired: bool = False           # the value came from the repair turn's reply

    @property
    def ok(self) -> bool:
        return self.failure is None


def ask_parsed(client, chats: Sequence[list[dict]], parse: Callable[[str], Any], repair: str,
               **params: Any) -> list[Answer]:
    """Parsed answers for `chats`, in order (see module docstring). `parse` raises ValueError
    (ParseError is one) with a short problem description when a reply is unusable."""
    from tasks.llm.client import LLMError

    answers = [Answer() for _ in chats]
    replies = client.complete_many(list(chats), return_exceptions=True, **params)
    todo: dict[int, list[dict]] = {}
    for i, reply in enumerate(replies):
        if isinstance(reply, LLMError):
            answers[i].failure = {"kind": "request_failed", "detail": str(reply)[:500], "raw": None}
            continue
        try:
            answers[i].value = parse(reply)
        except ValueError as e:
            problem = str(e).split("; raw reply")[0][:200]
            answers[i].failure = {"kind": "unparseable", "detail": problem, "raw": reply[:RAW_CHARS]}
            todo[i] = list(chats[i]) + [{"role": "assistant", "content": reply},
                                        {"role": "user", "content": repair.format(problem=problem)}]
    if todo:
        idx = list(todo)
        second = client.complete_many([todo[i] for i in idx], return_exceptions=True, **params)
        for i, reply in zip(idx, second):
            if isinstance(reply, LLMError):
                answers[i].failure["detail"] += f"; repair request failed: {str(reply)[:300]}"
                answers[i].failure["raw_repair"] = None
                continue
            try:
                answers[i].value = parse(reply)
                answers[i].failure = None
                answers[i].repaired = True
            except ValueError as e:
                answers[i].failure["detail"] += f"; after repair: {str(e).split('; raw reply')[0][:200]}"
                answers[i].failure["raw_repair"] = reply[:RAW_CHARS]
    return answers


def json_object(reply: str, required: dict[str, type]) -> dict:
    """The first JSON/Python-literal object in `reply` with the `required` keys of the given types
    (strings must be non-empty); ParseError otherwise."""
    obj = parse_json_like(reply, expect=dict)
    for key, typ in required.items():
        val = obj.get(key)
        if not isinstance(val, typ):
            raise ParseError(f"key {key!r} missing or not a {typ.__name__}", reply)
        if isinstance(val, str) and not val.strip():
            raise ParseError(f"key {key!r} is empty", reply)
    return obj
