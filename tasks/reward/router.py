"""The data router of the hybrid reward (paper §5.2.2): which graders score one completion.

The paper routes every RL prompt to the verifiers that can judge it: closed answers to deterministic
rules, instruction constraints to code checkers, open answers to rubrics and a reference-augmented
pairwise judge, and reasoning traces to the process reward. The router reads the prompt's metadata
(answer kind, constraints, reference, task) and its intent (the query's wording, whether the
completion reasons), never the answer's correctness.

The decision is a table (`RULES`): each row is a named predicate, the grader it adds and why. Rows are
independent; a completion gets the union of the graders of every row that fires, in `GRADERS` order,
and `Route.reason` names the rows that fired. The intent cues (`SET_INTENT`, `REASON_INTENT`) are
English keyword heuristics, not a classifier: they catch the common phrasings ("List the ...",
"Which of these drugs are ...", "Think step by step") and miss paraphrases.

`answer_kind(item)` is the answer kind the rule grader actually uses: the metadata's, except that a
query asking for a list while the item carries an `answer_set` is graded as a set even when the
metadata says "open" (the paper grades enumerations by set overlap, not by a judge).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from tasks.reward.item import TASKS, RewardItem, split_thinking

GRADERS = ("rule", "instruct", "rubric", "pairwise", "process")
CLOSED_KINDS = ("choice", "judgement", "fill", "set")
OPEN_TASKS = ("open", "conflict")

# A query that asks for an enumeration: "List ...", "Name all ...", "Which of the following are ...".
SET_INTENT = re.compile(
    r"\b(?:list|enumerate)\b"
    r"|\bname\s+(?:all|every|each)\b"
    r"|\bwhat\s+are\s+all\b"
    r"|\bwhich\b[^.?!\n]*?\bare\b",
    re.IGNORECASE)
# A prompt that asks the model to reason. "reason"/"think" count as verbs only: not after an article
# or determiner ("the reason for ...") and not in an opinion question ("what do you think ...").
REASON_INTENT = re.compile(
    r"\bstep[-\s]+by[-\s]+step\b"
    r"|\bchain[-\s]+of[-\s]+thought\b"
    r"|\bshow\s+your\s+(?:work|reasoning)\b"
    r"|(?<!\bthe\s)(?<!\ba\s)(?<!\bno\s)(?<!\bany\s)(?<!\bone\s)(?<!\bmain\s)"
    r"\breason(?:ing)?\b(?!\s+(?:for|of|behind|why|that|is|was)\b)"
    r"|(?<!\byou\s)(?<!\bi\s)(?<!\bwe\s)(?<!\bthey\s)\bthink\b",
    re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Route:
    task: str                       # item.task when it is one of TASKS, else derived (`derive_task`)
    graders: tuple[str, ...]        # subset of GRADERS, in GRADERS order
    reason: str                     # the table rows that fired, "; "-joined
    answer_kind: str = "open"       # the kind the rule grader uses (`answer_kind`)


def asks_for_set(item: RewardItem) -> bool:
    """The query asks for an enumeration and the item has the set to grade it against."""
    return bool(item.answer_set) and SET_INTENT.search(item.query) is not None


def asks_to_reason(item: RewardItem) -> bool:
    """The system prompt or the query asks the model to reason."""
    system = [m.get("content") for m in item.messages[:1] if m.get("role") == "system"]
    return any(isinstance(t, str) and REASON_INTENT.search(t) for t in system + [item.query])


def answer_kind(item: RewardItem) -> str:
    """The answer kind the rule grader uses: set intent turns an "open" (or unknown) kind into "set"."""
    kind = item.answer_kind if item.answer_kind in CLOSED_KINDS else "open"
    return "set" if kind == "open" and asks_for_set(item) else kind


def derive_task(item: RewardItem) -> str:
    """The task family of an item whose `task` is not one of TASKS, from what it carries."""
    if item.task in TASKS:
        return item.task
    if item.constraints:
        return "instruct"
    if item.meta.get("tools"):
        return "tool"
    if answer_kind(item) in CLOSED_KINDS:
        return "closed"
    if sum(m.get("role") == "user" for m in item.messages) > 1:
        return "multi"
    return "open"


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    grader: str
    applies: Callable[[RewardItem, str], bool]   # (item, task) -> fires


RULES: tuple[Rule, ...] = (
    Rule("closed answer kind", "rule", lambda it, task: it.answer_kind in CLOSED_KINDS),
    Rule("set intent in query", "rule", lambda it, task: it.answer_kind not in CLOSED_KINDS and asks_for_set(it)),
    Rule("instruction constraints", "instruct", lambda it, task: bool(it.constraints)),
    Rule("open answer", "rubric", lambda it, task: answer_kind(it) == "open"),
    Rule("open/conflict task", "rubric", lambda it, task: task in OPEN_TASKS),
    Rule("rubric route with reference", "pairwise",
         lambda it, task: bool(it.reference.strip()) and (answer_kind(it) == "open" or task in OPEN_TASKS)),
    Rule("completion has <think>", "process", lambda it, task: split_thinking(it.completion).think is not None),
    Rule("prompt asks to reason", "process", lambda it, task: asks_to_reason(it)),
)


def route(item: RewardItem) -> Route:
    """The graders that apply to `item` (the union over the rows of `RULES` that fire)."""
    task = derive_task(item)
    fired = [r for r in RULES if r.applies(item, task)]
    chosen = {r.grader for r in fired}
    return Route(task=task, graders=tuple(g for g in GRADERS if g in chosen),
                 reason="; ".join(f"{r.name} -> {r.grader}" for r in fired) or "no rule fired",
                 answer_kind=answer_kind(item))
