"""What every reward component sees for one policy completion, and the shared result type.

A `RewardItem` is built by the RL stage from an rl_data prompt record and one sampled completion. Every
component is a pure function of it (plus, for judge-based components, an optional LLM client), returns a
`Score` in [0, 1] (or None when it does not apply) and says why in `detail`, so the decomposition can be
logged per step and audited per completion.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

TASKS = ("closed", "multi", "open", "instruct", "tool", "conflict")
ANSWER_KINDS = ("choice", "judgement", "fill", "set", "open")

_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_OPEN = re.compile(r"<think>", re.S)
_CLOSE = re.compile(r"</think>", re.S)


@dataclasses.dataclass(frozen=True)
class RewardItem:
    prompt_id: str
    task: str                                   # TASKS: the prompt's task family (rl_data sets it)
    messages: tuple[dict, ...]                  # the prompt as chat: optional system, history, the query last
    completion: str                             # the policy's raw output (may hold <think>...</think>)
    answer: str = ""                            # the reference answer (gold)
    answer_kind: str = "open"                   # ANSWER_KINDS
    options: tuple[str, ...] = ()               # choice: option texts, lettered A, B, C, ...
    answer_set: tuple[str, ...] = ()            # set: every correct element
    rubric: tuple[dict, ...] = ()               # instance rubric items (rubric.py says their shape)
    constraints: tuple[dict, ...] = ()          # instruction constraints (eval.constraints.Constraint.to_json)
    reference: str = ""                         # best-of-N reference response for pairwise scoring
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def query(self) -> str:
        """The last user turn's text."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return m.get("content") if isinstance(m.get("content"), str) else ""
        return ""

    @property
    def history(self) -> tuple[dict, ...]:
        """Every turn before the last user turn (system included)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].get("role") == "user":
                return self.messages[:i]
        return self.messages


@dataclasses.dataclass(frozen=True)
class Split:
    think: str | None        # the reasoning text (None: no <think> block)
    answer: str              # what follows the reasoning (the whole completion when there is none)
    closed: bool             # the <think> block was closed (False when opened and never closed)


def split_thinking(completion: str) -> Split:
    """Reasoning and answer of a completion. An unclosed <think> leaves no answer: everything after it
    is unfinished reasoning (the eval harness reads outputs the same way). A completion that starts
    inside reasoning (the chat template opened <think>) and closes it counts as closed."""
    text = completion or ""
    m = _THINK.search(text)
    if m:
        return Split(m.group(1).strip(), text[m.end():].strip(), True)
    close = _CLOSE.search(text)
    if close:
        return Split(text[:close.start()].replace("<think>", "").strip(), text[close.end():].strip(), True)
    opened = _OPEN.search(text)
    if opened:
        return Split(text[opened.end():].strip(), text[:opened.start()].strip(), False)
    return Split(None, text.strip(), True)


@dataclasses.dataclass(frozen=True)
class Score:
    value: float | None                         # in [0, 1]; None: the component does not apply
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.value is not None and not (0.0 <= self.value <= 1.0):
            raise ValueError(f"a Score is in [0, 1], got {self.value}")
