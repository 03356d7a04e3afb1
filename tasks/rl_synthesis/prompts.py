"""The RL prompt contract (one line of data/rl_data/prompts/part-*.jsonl) and the answer-format lines.

    id            "rl-<task>-<hash of the prompt and its answer>"
    task          closed | multi | open | instruct | tool | conflict (tasks/reward/item.py TASKS)
    split         train | heldout (held-out prompts are never trained on: the held-out reward)
    messages      the prompt as chat: system, history (tool turns included), the query last
    answer, answer_kind, options, answer_set, constraints   what the rule graders check
    rubric        atomic evaluation points for judge-scored prompts (tasks/reward/rubric.py shape)
    hints         three hierarchical hints, coarse to near-answer (hints.py)
    source_ids    lineage (SFT sample, KG nodes and edges, corpus passages)
    meta          {source, pass_rate, passes, k, length, phase (foundation | specialization | alignment), ...}

The format lines are the eval harness's (eval/templates.py), so RL rewards the answer format the
benchmarks parse.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from eval.templates import FORMAT, SYSTEM, THINKING
from tasks.reward.item import ANSWER_KINDS, TASKS

SPLITS = ("train", "heldout")
PHASES = ("foundation", "specialization", "alignment")
SET_FORMAT = "Reply on the last line as 'Answer: <item>, <item>, ...'."


def format_line(answer_kind: str, thinking: bool) -> str:
    line = {"choice": FORMAT["choice"], "judgement": FORMAT["yesno"].format(slash="yes/no/maybe"),
            "fill": FORMAT["open"], "set": SET_FORMAT, "open": FORMAT["longform"]}[answer_kind]
    return f"{THINKING} {line}" if thinking else line


def prompt_id(task: str, messages: list[dict], answer: str) -> str:
    key = json.dumps([task, messages, answer], sort_keys=True, ensure_ascii=False)
    return f"rl-{task}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def make_prompt(task: str, history: list[dict], query: str, *, answer: str, answer_kind: str,
                thinking: bool, source: str, source_ids: list[str], options: list[str] | None = None,
                answer_set: list[str] | None = None, constraints: list[dict] | None = None,
                rubric: list[dict] | None = None, **meta: Any) -> dict:
    """A prompt record; the query gets the answer-format line of its kind."""
    if task not in TASKS or answer_kind not in ANSWER_KINDS:
        raise ValueError(f"unknown task {task!r} or answer kind {answer_kind!r}")
    messages = [{"role": "system", "content": SYSTEM}, *history,
                {"role": "user", "content": f"{query.rstrip()}\n{format_line(answer_kind, thinking)}"}]
    return {"id": prompt_id(task, messages, answer), "task": task, "split": "train", "messages": messages,
            "answer": answer, "answer_kind": answer_kind, "options": list(options or []),
            "answer_set": list(answer_set or []), "constraints": list(constraints or []),
            "rubric": list(rubric or []), "hints": [], "source_ids": list(source_ids),
            "meta": {"source": source, **meta}}


def validate_prompt(p: Any) -> dict:
    """The contract, checked; raises ValueError naming the field."""
    if not isinstance(p, dict):
        raise ValueError("a prompt is a JSON object")
    for key, typ in (("id", str), ("task", str), ("split", str), ("messages", list), ("answer", str),
                     ("answer_kind", str), ("options", list), ("answer_set", list), ("constraints", list),
                     ("rubric", list), ("hints", list), ("source_ids", list), ("meta", dict)):
        if not isinstance(p.get(key), typ):
            raise ValueError(f"prompt {p.get('id')!r}: field {key!r} must be {typ.__name__}")
    if p["task"] not in TASKS or p["answer_kind"] not in ANSWER_KINDS or p["split"] not in SPLITS:
        raise ValueError(f"prompt {p['id']}: task/answer_kind/split out of range")
    if not p["messages"] or p["messages"][-1].get("role") != "user":
        raise ValueError(f"prompt {p['id']}: the last message must be the user's query")
    if p["answer_kind"] == "choice" and len(p["options"]) < 2:
        raise ValueError(f"prompt {p['id']}: a choice prompt needs its options")
    if p["answer_kind"] == "set" and not p["answer_set"]:
        raise ValueError(f"prompt {p['id']}: a set prompt needs its answer_set")
    return p


def words(p: dict) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in p["messages"] if m["role"] != "system")


def phase_of(p: dict, long_words: int) -> str:
    """Foundation: short closed prompts with a stable rule reward; specialization: long-horizon (tool
    turns, multi-turn history, answer sets, long contexts); alignment: instruction following and the
    safety-relevant conflict scenarios (the general and safety replay)."""
    if p["task"] in ("instruct", "conflict"):
        return "alignment"
    if p["task"] in ("tool", "multi", "open") or words(p) >= long_words:
        return "specialization"
    return "foundation"
