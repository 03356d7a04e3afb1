"""Strict parsing of the paper's JSON-ish LLM output formats. Never `eval`.

The paper's prompts ask for "strictly JSON" but show Python-style examples, e.g. Stage 1
`{'Sentence0': 'A,B', 'Sentence1': 'None'}` and Stage 2 `{'Sentence0': [Disease:Flu, ...]}`,
and models answer in either style, often wrapped in prose or a ```json fence. So:

1. candidate blocks: the contents of ```json fences first, then every balanced {...} / [...]
   block in order of its opening bracket (brackets inside quoted strings do not count);
2. each candidate is tried with `json.loads`, then with a small recursive-descent parser for
   Python literal syntax (single/double-quoted strings, True/False/None, numbers, trailing
   commas), optionally accepting unquoted list items (the Stage 2 format);
3. the first candidate that parses wins; if none does, `ParseError` carries the raw text so
   the caller can record the failure.

The literal parser accepts data only: no names, calls, operators or attribute access, so a
reply like `__import__('os').system('x')` is a ParseError, never executed. Nesting depth and
candidate count are bounded so adversarial replies cannot blow the stack or take quadratic time.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64          # deeper nesting than any prompt format needs -> reject
MAX_CANDIDATES = 32     # opening brackets tried before giving up (bounds the work on junk)

_FENCE = re.compile(r"```(?:json|JSON|python|py)?\s*\n?(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", "'": "'",
            '"': '"', "/": "/", "0": "\0"}


class ParseError(ValueError):
    """An LLM reply that does not contain the expected structure; `raw` is the full reply."""

    def __init__(self, message: str, raw: str):
        super().__init__(f"{message}; raw reply: {raw[:200]!r}")
        self.raw = raw


def balanced_blocks(text: str, openers: str = "{[") -> list[str]:
    """Top-level balanced bracket blocks in order, quotes respected.

    Blocks nested inside an earlier balanced block are not candidates: if the outer structure
    does not parse, an inner fragment of it (say an empty list) is not the answer either.
    """
    out: list[str] = []
    tried = 0
    end = 0
    for start, c in enumerate(text):
        if c not in openers or start < end:
            continue
        tried += 1
        if tried > MAX_CANDIDATES:
            break
        block = _match_block(text, start)
        if block is not None:
            out.append(block)
            end = start + len(block)
    return out


def _match_block(text: str, start: int) -> str | None:
    pairs = {"{": "}", "[": "]"}
    stack: list[str] = []
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            # An apostrophe inside a bare word (don't) is not a quote; a quote opens a string
            # only where a value can start, i.e. after a bracket, comma, colon or whitespace.
            prev = text[i - 1] if i > start else " "
            if c == '"' or prev in "{[,: \t\n":
                quote = c
        elif c in pairs:
            stack.append(pairs[c])
            if len(stack) > MAX_DEPTH:
                return None
        elif c in "}]":
            if not stack or stack.pop() != c:
                return None
            if not stack:
                return text[start:i + 1]
        i += 1
    return None


class _LiteralParser:
    """Recursive descent over Python/JSON literal syntax; data only."""

    def __init__(self, text: str, allow_bare_items: bool):
        self.s = text
        self.i = 0
        self.bare = allow_bare_items

    def fail(self, what: str) -> ParseError:
        return ParseError(f"{what} at offset {self.i}", self.s)

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def parse(self) -> Any:
        value = self.value(0, in_list=False)
        if self.peek():
            raise self.fail("trailing characters")
        return value

    def value(self, depth: int, in_list: bool) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail("nesting too deep")
        c = self.peek()
        if c == "{":
            return self.container(depth, "}", is_dict=True)
        if c == "[":
            return self.container(depth, "]", is_dict=False)
        if c in "\"'":
            return self.string()
        m = _NUMBER.match(self.s, self.i)
        if m and not self._bare_continues(m.end(), in_list):
            self.i = m.end()
            num = m.group()
            return float(num) if any(ch in num for ch in ".eE") else int(num)
        for word, val in (("True", True), ("False", False), ("None", None),
                          ("true", True), ("false", False), ("null", None)):
            end = self.i + len(word)
            if self.s.startswith(word, self.i) and not self._bare_continues(end, in_list):
                self.i = end
                return val
        if in_list and self.bare:
            return self.bare_item()
        raise self.fail("unexpected token")

    def _bare_continues(self, end: int, in_list: bool) -> bool:
        # `None` followed by `,`/`]` is the literal; `Nonex` or `None: flu` is not.
        j = end
        while j < len(self.s) and self.s[j] in " \t":
            j += 1
        nxt = self.s[j] if j < len(self.s) else ""
        return nxt not in (",]}\r\n:" if not in_list else ",]\r\n") and nxt != ""

    def bare_item(self) -> str:
        # Stage 2 lists items unquoted: [Disease:Type 2 diabetes, Drug:Metformin].
        start = self.i
        # Quotes inside an item are apostrophes (Crohn's); only structure characters end it.
        while self.i < len(self.s) and self.s[self.i] not in ",]{}[\n":
            self.i += 1
        item = self.s[start:self.i].strip()
        if not item:
            raise self.fail("empty list item")
        return item

    def container(self, depth: int, close: str, is_dict: bool) -> Any:
        self.i += 1
        out: Any = {} if is_dict else []
        while True:
            if self.peek() == close:
                self.i += 1
                return out
            if is_dict:
                key = self.value(depth + 1, in_list=False)
                if not isinstance(key, str):
                    raise self.fail("dict key must be a string")
                if self.peek() != ":":
                    raise self.fail("expected ':'")
                self.i += 1
                out[key] = self.value(depth + 1, in_list=False)
            else:
                out.append(self.value(depth + 1, in_list=True))
            c = self.peek()
            if c == ",":
                self.i += 1      # a trailing comma before the closer is accepted (Python style)
            elif c != close:
                raise self.fail(f"expected ',' or {close!r}")

    def string(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        buf: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == quote:
                self.i += 1
                return "".join(buf)
            if c == "\n":
                raise self.fail("newline in string")
            if c == "\\" and self.i + 1 < len(self.s):
                e = self.s[self.i + 1]
                if e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.s[self.i + 2:self.i + 6]):
                    buf.append(chr(int(self.s[self.i + 2:self.i + 6], 16)))
                    self.i += 6
                    continue
                buf.append(_ESCAPES.get(e, "\\" + e))
                self.i += 2
                continue
            buf.append(c)
            self.i += 1
        raise self.fail("unterminated string")


def parse_literal(text: str, *, allow_bare_items: bool = False) -> Any:
    """Parse one JSON or Python-literal value (data only) from `text`, else ParseError."""
    return _LiteralParser(text.strip(), allow_bare_items).parse()


def parse_json_like(text: str, *, expect: type | tuple[type, ...] = (dict, list),
                    allow_bare_items: bool = False) -> Any:
    """The first {...}/[...] block in an LLM reply that parses as JSON or a Python literal."""
    if not isinstance(text, str):
        raise ParseError(f"expected a string reply, got {type(text).__name__}", repr(text))
    candidates = [b for f in _FENCE.findall(text) for b in balanced_blocks(f)[:1]]
    candidates += balanced_blocks(text)
    for block in candidates:
        for attempt in (json.loads, lambda b: parse_literal(b, allow_bare_items=allow_bare_items)):
            try:
                value = attempt(block)
            except (ValueError, RecursionError):   # json.JSONDecodeError and ParseError are ValueErrors
                continue
            if isinstance(value, expect):
                return value
    raise ParseError("no parseable JSON object/array found", text)


def extract_tags(text: str, name: str) -> list[str]:
    """Contents (stripped) of every <name>...</name> in `text`, in order."""
    if not re.fullmatch(r"[A-Za-z][\w.-]*", name):
        raise ValueError(f"invalid tag name {name!r}")
    pattern = re.compile(rf"<{re.escape(name)}\s*>(.*?)</{re.escape(name)}\s*>", re.DOTALL)
    return [m.strip() for m in pattern.findall(text)]


def extract_tag(text: str, name: str) -> str:
    """Content of the first <name>...</name>, e.g. the paper's <InsertionPath>A.B.C</InsertionPath>."""
    found = extract_tags(text, name)
    if not found or not found[0]:
        raise ParseError(f"no non-empty <{name}> tag", text)
    return found[0]


def parse_insertion_path(text: str) -> list[str]:
    """The node names of the paper's `<InsertionPath>Node1.Node2.Inserted</InsertionPath>`."""
    parts = [p.strip() for p in extract_tag(text, "InsertionPath").split(".")]
    if any(not p for p in parts):
        raise ParseError("empty node name in insertion path", text)
    return parts
