"""Instruction-following SFT data (paper §5.1.2): verifiable constraints on medical answers.

    out = build_instruct(base, LocalInstructWriter(), InstructParams(), seed=0)       # or LLMInstructWriter(client)
    out.kept -> SFT samples (source "instruct", accuracy "code"); out.rejected -> {gate, reason, detail, item}

`base` is a list of QA pairs {id, question, answer, source_ids, keywords: [entity names]} (MedQuAD answers,
KG facts). Every constraint comes from the atomic-instruction library eval/constraints.py, restricted to its
"train" split: the instruction-following benchmark uses the disjoint "eval" kinds, so it measures
generalisation to constraints never trained on. Each reference answer is first cut to whole sentences
within `max_answer_words`, which keeps samples short and makes length caps bind.

Four constructions, each producing `per construction` candidates (one candidate = one unit of accounting,
read == kept + rejected):

1. forward: a conflict-free combination of 1..max_constraints train constraints (`sample_combination`)
   is appended to the question; the writer produces the reply (local: the reference rewritten by each
   constraint's `apply`; LLM: the model answers from the reference under the stated constraints).
2. multi_turn: turn 1 states rules "for this whole conversation" plus question 1; turn 2 asks question 2
   (another base item) without repeating them; both assistant turns must satisfy the rules (memory).
3. implicit: a scenario graph (SCENARIO_GRAPH, below) links who reads the reply and how it is delivered
   to the constraints that situation implies; the user turn states only the scenario path ("Reply as a
   text message to a patient"), the constraints are collected by walking the graph and checked in code.
4. reverse: the reference itself is the reply; constraints it already satisfies are inferred (its word
   count bound, bullet count, entity names it mentions, its closing sentence, ...), and the writer states
   the instruction most compatible with it (local: question + the constraints' sentences; LLM: a natural
   request, which must restate every constraint's numbers, keywords and phrases or it is rejected).

Every reply, from either writer, goes through the same code checkers; one failing constraint rejects the
candidate at gate "checker" with reason "<kind>_failed". Writer request failures are gate "llm"; unusable
base items gate "input"; a graph walk whose implications conflict gate "graph"; a reference with nothing
to infer gate "reverse".

Structured thinking: each assistant turn's `reasoning_content` lists every constraint in force and how
the reply satisfies it, with numbers measured on the reply (words, bullets, paragraphs, keywords found);
implicit samples first expand the graph path into the requirements it implies. This rationale is a
template over the real checks (same for both writers): its facts are computed, its wording is fixed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Callable, Protocol

import numpy as np

from eval.constraints import (
    REGISTRY,
    SPLITS,
    Constraint,
    apply_all,
    bullet_count,
    compatible,
    paragraph_count,
    sample_combination,
    strip_thinking,
    word_count,
)
from tasks.mid_synthesis.experts import stable_seed
from tasks.sft_synthesis.samples import GateOutcome, SampleError, sft_sample

__all__ = ["CONSTRUCTIONS", "SCENARIO_GRAPH", "InstructParams", "InstructWriter", "LLMInstructWriter",
           "LocalInstructWriter", "ReplyRequest", "InstructionRequest", "build_instruct", "implied_constraints",
           "rationale", "walk_scenario"]

CONSTRUCTIONS = ("forward", "multi_turn", "implicit", "reverse")


@dataclasses.dataclass
class InstructParams:
    forward: int = 400            # candidates per construction; forward combinations are the bulk of IFEval-style data
    multi_turn: int = 150         # fewer: each costs two base items and two replies
    implicit: int = 150
    reverse: int = 200
    min_constraints: int = 1
    max_constraints: int = 4      # IFEval/MulDimIF prompts rarely stack more; 4 keeps combinations conflict-free
    max_answer_words: int = 120   # short references: SFT sequences stay small and word caps actually bind
    kinds: tuple[str, ...] = ()   # train kinds to draw from; empty = the whole train split

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        unknown = sorted(set(self.kinds) - set(SPLITS["train"]))
        if unknown:
            raise ValueError(f"kinds must be train-split constraint kinds; not allowed: {unknown}")
        if not 1 <= self.min_constraints <= self.max_constraints <= 4:
            raise ValueError("need 1 <= min_constraints <= max_constraints <= 4")
        if min(self.forward, self.multi_turn, self.implicit, self.reverse) < 0 or self.max_answer_words < 10:
            raise ValueError("candidate counts must be >= 0 and max_answer_words >= 10")

    @property
    def train_kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self.kinds or SPLITS["train"]))


# ---- the scenario graph (implicit instructions) ----------------------------------------------------------
# Nodes are situations; an edge leads from who reads the reply (audience) to how it is delivered (channel).
# Each node says in words what the user states (`phrase`) and lists what that situation implies without
# saying it: a kind alone means "draw its arguments" (registry sampler, with the prompt's context), a
# (kind, args) pair fixes them. Why each implication holds:
#   patient / caregiver: lay readers -> a disclaimer to see a professional, no all-caps abbreviations (jargon)
#   clinician: a professional reader -> English, nothing added for lay readers
#   sms: a phone screen -> at most 60 words, plain text (no markdown renders), no phone numbers or e-mails
#   leaflet: printed handout -> a title and 3 bullet points
#   portal message: a written note in a patient portal -> 2 paragraphs separated by ***, a closing line
#   discharge summary: a formal document -> a title and 3 paragraphs
#   email to a colleague: -> at most 100 words, a P.S. with the follow-up
# A walk starts at a root and follows one random edge per node until a node without successors.
SCENARIO_GRAPH: dict[str, dict[str, Any]] = {
    "roots": ["audience:patient", "audience:caregiver", "audience:clinician"],
    "nodes": {
        "audience:patient": {"phrase": "to a patient", "implies": ["safety.disclaimer",
                                                                   "language.no_caps_abbreviations"],
                             "next": ["channel:sms", "channel:leaflet", "channel:portal"]},
        "audience:caregiver": {"phrase": "to a family caregiver", "implies": ["safety.disclaimer",
                                                                             "language.no_caps_abbreviations"],
                               "next": ["channel:sms", "channel:leaflet"]},
        "audience:clinician": {"phrase": "to a colleague on the ward", "implies": ["language.english"],
                               "next": ["channel:discharge", "channel:email"]},
        "channel:sms": {"phrase": "as a text message", "next": [],
                        "implies": [("length.max_words", {"n": 60}), "format.no_markdown", "safety.no_identifiers"]},
        "channel:leaflet": {"phrase": "as a printed leaflet", "next": [],
                            "implies": ["format.title", ("format.bullets", {"n": 3})]},
        "channel:portal": {"phrase": "as a patient-portal message", "next": [],
                           "implies": [("length.paragraphs", {"n": 2}), ("format.end_phrase", {
                               "phrase": "Let me know if you have further questions."})]},
        "channel:discharge": {"phrase": "as a section of a discharge summary", "next": [],
                              "implies": ["format.title", ("length.paragraphs", {"n": 3})]},
        "channel:email": {"phrase": "as a short email", "next": [],
                          "implies": [("length.max_words", {"n": 100}), "content.postscript"]},
    },
}


def walk_scenario(rng: np.random.Generator, graph: dict = SCENARIO_GRAPH) -> list[str]:
    """A root-to-leaf path of node names, one seeded choice per step."""
    node = graph["roots"][int(rng.integers(len(graph["roots"])))]
    path = [node]
    while graph["nodes"][node]["next"]:
        nxt = graph["nodes"][node]["next"]
        node = nxt[int(rng.integers(len(nxt)))]
        path.append(node)
    return path


def implied_constraints(path: Sequence[str], ctx: dict, rng: np.random.Generator,
                        graph: dict = SCENARIO_GRAPH) -> list[tuple[str, Constraint]]:
    """(node, constraint) for every implication along the path; a kind implied twice keeps its first node's
    constraint except that of two word caps the stricter wins."""
    out: dict[str, tuple[str, Constraint]] = {}
    for node in path:
        for imp in graph["nodes"][node]["implies"]:
            kind, args = (imp, None) if isinstance(imp, str) else imp
            c = REGISTRY[kind].sample(rng, ctx) if args is None else Constraint.make(kind, **args)
            if kind in out and not (kind == "length.max_words" and c.kwargs["n"] < out[kind][1].kwargs["n"]):
                continue
            out[kind] = (node, c)
    return [out[k] for k in sorted(out, key=lambda k: (REGISTRY[k].order, k))]


def scenario_instruction(path: Sequence[str], question: str, graph: dict = SCENARIO_GRAPH) -> str:
    phrases = [graph["nodes"][n]["phrase"] for n in path]
    return f"Reply {' '.join(reversed(phrases))}. {question}"


# ---- the structured rationale --------------------------------------------------------------------------
_MEASURES: dict[str, Callable[[Constraint, str], str]] = {
    "length.max_words": lambda c, r: f"the reply has {word_count(r)} words, within {c.kwargs['n']}",
    "format.bullets": lambda c, r: f"the reply has {bullet_count(r)} bullet points",
    "length.paragraphs": lambda c, r: f"the reply has {paragraph_count(r)} paragraphs separated by ***",
    "content.keywords": lambda c, r: "the reply mentions " + ", ".join(f'"{k}"' for k in c.kwargs["keywords"]),
    "format.end_phrase": lambda c, r: f'the reply ends with "{c.kwargs["phrase"]}"',
    "format.title": lambda c, r: "the reply opens with the title " + re.search(r"<<[^\n]*?>>", r).group(0),
}


def rationale(constraints: Sequence[Constraint], reply: str, *, implied: Sequence[tuple[str, Constraint]] = (),
              graph: dict = SCENARIO_GRAPH, carried: bool = False) -> str:
    """The reasoning_content of an assistant turn: (implicit) what each scenario node implies, then every
    constraint with what was measured on the reply. A template over the real checks (module docstring)."""
    lines = []
    if implied:
        lines.append("The request states a situation; it implies requirements it does not spell out:")
        for node in dict.fromkeys(n for n, _ in implied):
            says = " ".join(c.instruction for n, c in implied if n == node)
            lines.append(f'- "{graph["nodes"][node]["phrase"]}" ({node.split(":")[0]}) implies: {says}')
    if carried:
        lines.append("The rules set at the start of the conversation still apply to this reply.")
    lines.append("Constraints to satisfy:")
    for i, c in enumerate(constraints, 1):
        how = _MEASURES[c.kind](c, reply) if c.kind in _MEASURES else "checked on the reply"
        lines.append(f"{i}. [{c.category}] {c.instruction} -> {how}: {'satisfied' if c.check(reply) else 'NOT met'}.")
    return "\n".join(lines)


# ---- writers -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReplyRequest:
    chat: tuple[dict, ...]               # the conversation so far, ending with the user turn to answer
    reference: str                       # the trimmed base answer: the only facts the reply may use
    constraints: tuple[Constraint, ...]  # all constraints in force, stated or implied


@dataclasses.dataclass(frozen=True)
class InstructionRequest:
    question: str                        # the base question
    response: str                        # the reply the instruction must call for
    constraints: tuple[Constraint, ...]  # constraints the reply satisfies (inferred)


class InstructWriter(Protocol):
    name: str

    def reply(self, requests: Sequence[ReplyRequest]) -> list[str | dict]:
        """Per request the assistant's reply, or {"failure": ...}."""

    def instruct(self, requests: Sequence[InstructionRequest]) -> list[str | dict]:
        """Per request the user's instruction, or {"failure": ...}."""


def _best_effort(constraints: Sequence[Constraint], reference: str) -> str:
    """apply_all, or when that gives up, every apply that can run (so the checker names what failed)."""
    out = apply_all(constraints, reference)
    if out is not None:
        return out
    text = reference
    for c in sorted(constraints, key=lambda c: (c.spec.order, c.kind)):
        text = c.spec.apply(c, text) or text
    return text


class LocalInstructWriter:
    """Code transforms: replies are the reference rewritten by the constraints' `apply`; instructions are
    the question followed by the constraints' own sentences (a template)."""
    name = "local"

    def reply(self, requests: Sequence[ReplyRequest]) -> list[str]:
        return [_best_effort(r.constraints, r.reference) for r in requests]

    def instruct(self, requests: Sequence[InstructionRequest]) -> list[str]:
        return [local_instruction(r.question, r.constraints) for r in requests]


def local_instruction(question: str, constraints: Sequence[Constraint]) -> str:
    return question.strip() + "\n\n" + " ".join(c.instruction for c in constraints)


REPLY_SYSTEM = ("You are a careful medical assistant. Answer the user's last message using only the facts in "
                "the reference answer below, and satisfy every constraint exactly; they are checked by code.\n\n"
                "Reference answer:\n{reference}\n\nConstraints:\n{constraints}\n\n"
                "Write only the reply itself: no preamble, no notes about the constraints.")
INSTRUCT_SYSTEM = "You write the messages users send to a medical assistant."
INSTRUCT_PROMPT = ("Question: {question}\n\nAssistant reply:\n{response}\n\nThe reply satisfies these "
                   "constraints:\n{constraints}\n\nWrite the user's message for which this reply is the best "
                   "possible answer: ask the question and state every constraint explicitly, keeping its exact "
                   "numbers, keywords and phrases. Write only the message.")


def _failure(x: Any) -> dict | None:
    return {"failure": f"{type(x).__name__}: {x}"[:500]} if isinstance(x, BaseException) else None


class LLMInstructWriter:
    """The paper's LLM path through the project client: the model writes replies (from the reference,
    under the listed constraints) and reverse-construction instructions. Its replies meet the same
    checkers as the local ones; a failed request comes back as {"failure": ...}."""
    name = "llm"

    def __init__(self, client, temperature: float = 0.7, max_tokens: int = 512):
        # sampling (not greedy) so repeated constraint sets on one reference still vary in wording
        self.client, self.temperature, self.max_tokens = client, temperature, max_tokens

    def _ask(self, chats: list[list[dict]]) -> list[str | dict]:
        replies = self.client.complete_many(chats, return_exceptions=True, temperature=self.temperature,
                                            max_tokens=self.max_tokens)
        return [_failure(r) or strip_thinking(str(r)) for r in replies]

    def reply(self, requests: Sequence[ReplyRequest]) -> list[str | dict]:
        chats = [[{"role": "system", "content": REPLY_SYSTEM.format(
            reference=r.reference, constraints="\n".join(f"- {c.instruction}" for c in r.constraints))},
                  *[{"role": m["role"], "content": m["content"]} for m in r.chat]] for r in requests]
        return self._ask(chats)

    def instruct(self, requests: Sequence[InstructionRequest]) -> list[str | dict]:
        chats = [[{"role": "system", "content": INSTRUCT_SYSTEM},
                  {"role": "user", "content": INSTRUCT_PROMPT.format(
                      question=r.question, response=r.response,
                      constraints="\n".join(f"- {c.instruction}" for c in r.constraints))}] for r in requests]
        return self._ask(chats)


def instruction_omissions(instruction: str, constraints: Sequence[Constraint]) -> list[str]:
    """Kinds whose arguments (a count, keywords, a phrase) the instruction does not restate; kinds without
    arguments cannot be verified in free text and are not reported."""
    low = instruction.lower()
    missing = []
    for c in constraints:
        a = c.kwargs
        need = [str(a["n"])] if "n" in a else []
        need += list(a.get("keywords", ())) + ([a["phrase"]] if "phrase" in a else [])
        if any(v.lower() not in low for v in need):
            missing.append(c.kind)
    return missing


# ---- candidates ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Candidate:
    construction: str
    items: list[dict]                     # base items used (two for multi_turn)
    constraints: list[Constraint] = dataclasses.field(default_factory=list)
    messages: list[dict] = dataclasses.field(default_factory=list)
    implied: list[tuple[str, Constraint]] = dataclasses.field(default_factory=list)
    path: list[str] = dataclasses.field(default_factory=list)
    rejected: tuple[str, str, str] | None = None     # (gate, reason, detail)

    def record(self) -> dict:
        return {"construction": self.construction, "ids": [i["id"] for i in self.items],
                "constraints": [c.to_json() for c in self.constraints]}


def _clean_base(base: Sequence[Any], params: InstructParams, out: GateOutcome) -> list[dict]:
    """Valid items with their trimmed reference; each invalid one is read and rejected at gate "input"."""
    ok = []
    for raw in base:
        item = raw if isinstance(raw, dict) else {}
        q, a = item.get("question"), item.get("answer")
        if not (isinstance(item.get("id"), str) and isinstance(q, str) and q.strip() and isinstance(a, str)
                and a.strip()):
            out.read += 1
            out.reject("input", "bad_item", "needs id, question and answer strings", raw)
            continue
        text = re.sub(r"[ \t]+", " ", a).strip()
        cap = Constraint.make("length.max_words", n=params.max_answer_words)
        ref = cap.spec.apply(cap, text)
        if ref is None:
            out.read += 1
            out.reject("input", "untrimmable_answer", f"first sentence exceeds {params.max_answer_words} words",
                       item["id"])
            continue
        keywords = sorted({k for k in item.get("keywords", []) if isinstance(k, str) and k.strip()})
        ok.append({**item, "question": q.strip(), "reference": ref, "keywords": keywords,
                   "source_ids": list(item.get("source_ids") or [item["id"]])})
    return sorted(ok, key=lambda i: i["id"])


def _ctx(item: dict) -> dict:
    present = [k for k in item["keywords"] if k.lower() in item["reference"].lower()]
    return {"keywords": present or item["keywords"], "topic": (present or item["keywords"] or [None])[0]}


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    return np.random.default_rng(stable_seed(seed, "instruct", *parts))


def _n_constraints(rng: np.random.Generator, params: InstructParams) -> int:
    return int(rng.integers(params.min_constraints, params.max_constraints + 1))


def _combination(rng: np.random.Generator, n: int, params: InstructParams, ctx: dict) -> list[Constraint]:
    """sample_combination over the train split, or the same greedy conflict-free draw over params.kinds
    (which may hold fewer than n compatible kinds: then as many as fit)."""
    if not params.kinds:
        return sample_combination(rng, n, "train", ctx)
    picked: list[Constraint] = []
    for i in rng.permutation(len(params.train_kinds)):
        c = REGISTRY[params.train_kinds[int(i)]].sample(rng, ctx)
        if compatible([*picked, c]):
            picked.append(c)
            if len(picked) == n:
                break
    if not picked:
        raise ValueError("no compatible constraint")
    return sorted(picked, key=lambda c: (c.spec.order, c.kind))


def _plan_forward(item: dict, rng: np.random.Generator, params: InstructParams) -> _Candidate:
    cand = _Candidate("forward", [item])
    cand.constraints = _combination(rng, _n_constraints(rng, params), params, _ctx(item))
    cand.messages = [{"role": "user", "content": local_instruction(item["question"], cand.constraints)}]
    return cand


_NOT_PERSISTENT = {"content.keywords"}   # a keyword of question 1 makes no sense as a rule for question 2


def _plan_multi_turn(items: list[dict], rng: np.random.Generator, params: InstructParams) -> _Candidate:
    cand = _Candidate("multi_turn", items)
    keep = tuple(k for k in params.train_kinds if k not in _NOT_PERSISTENT)
    if not keep:
        cand.rejected = ("input", "no_persistent_kind", "every allowed kind is question-specific")
        return cand
    # context-free draw: the rules must make sense for every later question
    sub = dataclasses.replace(params, kinds=keep, max_constraints=min(2, params.max_constraints),
                              min_constraints=1)
    cand.constraints = _combination(rng, _n_constraints(rng, sub), sub, {})
    rules = " ".join(c.instruction for c in cand.constraints)
    cand.messages = [{"role": "user", "content": f"For this whole conversation, follow these rules: {rules}\n\n"
                                                 f"{items[0]['question']}"}]
    return cand


def _plan_implicit(item: dict, rng: np.random.Generator, params: InstructParams) -> _Candidate:
    cand = _Candidate("implicit", [item])
    cand.path = walk_scenario(rng)
    cand.implied = implied_constraints(cand.path, _ctx(item), rng)
    cand.constraints = [c for _, c in cand.implied]
    cand.messages = [{"role": "user", "content": scenario_instruction(cand.path, item["question"])}]
    outside = sorted({c.kind for c in cand.constraints} - set(params.train_kinds))
    if outside:
        cand.rejected = ("graph", "kind_not_allowed", ", ".join(outside))
    elif not compatible(cand.constraints):
        cand.rejected = ("graph", "conflicting_implications", " -> ".join(cand.path))
    return cand


def _plan_reverse(item: dict, rng: np.random.Generator, params: InstructParams) -> _Candidate:
    cand = _Candidate("reverse", [item])
    response = item["reference"]
    found: list[Constraint] = []
    for kind in params.train_kinds:
        if kind == "content.keywords":
            # the prompt's entity names, when the reply uses them, make the most natural keyword constraint
            present = [k for k in item["keywords"] if Constraint.make(kind, keywords=[k]).check(response)]
            c = (Constraint.make(kind, keywords=present[:2]) if present else REGISTRY[kind].infer(response, rng))
        else:
            c = REGISTRY[kind].infer(response, rng)
        if c is not None:
            found.append(c)
    k = min(len(found), int(rng.integers(1, 4)))
    for i in rng.permutation(len(found)):
        if len(cand.constraints) < k and compatible([*cand.constraints, found[int(i)]]):
            cand.constraints.append(found[int(i)])
    cand.constraints.sort(key=lambda c: (c.spec.order, c.kind))
    if not cand.constraints:
        cand.rejected = ("reverse", "nothing_inferred", item["id"])
    cand.messages = [{"role": "assistant", "content": response}]   # the user turn comes from the writer
    return cand


def _first_failure(constraints: Sequence[Constraint], reply: str) -> str | None:
    return next((c.kind for c in constraints if not c.check(reply)), None)


def _sample(cand: _Candidate, writer: InstructWriter) -> dict:
    replies = [m["content"] for m in cand.messages if m["role"] == "assistant"]
    checks = [all(c.check(r) for r in replies) for c in cand.constraints]   # every assistant turn, per constraint
    ids = [s for i in cand.items for s in i["source_ids"]]
    return sft_sample("instruct", list(dict.fromkeys(ids)), cand.messages, answer=cand.messages[-1]["content"],
                      answer_kind="open", accuracy="code", generator=writer.name,
                      constraints=[c.to_json() for c in cand.constraints], construction=cand.construction,
                      checks=checks, **({"scenario": cand.path} if cand.path else {}))


def build_instruct(base: list[dict], writer: InstructWriter, params: InstructParams | None = None,
                   seed: int = 0) -> GateOutcome:
    """All four constructions over `base` (module docstring); read == kept + rejected."""
    params = params or InstructParams()
    out = GateOutcome()
    items = _clean_base(base, params, out)
    cands: list[_Candidate] = []
    for construction in CONSTRUCTIONS:
        n = getattr(params, construction)
        order = _rng(seed, construction, "order").permutation(len(items)) if items else []
        for i in range(n):
            rng = _rng(seed, construction, i)
            if not items or (construction == "multi_turn" and len(items) < 2):
                cand = _Candidate(construction, [])
                cand.rejected = ("input", "not_enough_items", f"{len(items)} usable base items")
            else:
                first = items[int(order[i % len(items)])]
                if construction == "multi_turn":
                    # an offset of 1..len-1 positions: always another item than the first
                    second = items[int(order[(i + 1 + int(rng.integers(len(items) - 1))) % len(items)])]
                    cand = _plan_multi_turn([first, second], rng, params)
                else:
                    cand = {"forward": _plan_forward, "implicit": _plan_implicit,
                            "reverse": _plan_reverse}[construction](first, rng, params)
            cands.append(cand)

    # round 1: reverse instructions and the first (or only) reply of every other construction
    live = [c for c in cands if c.rejected is None]
    rev = [c for c in live if c.construction == "reverse"]
    fwd = [c for c in live if c.construction != "reverse"]
    instructions = _ask(writer.instruct, [InstructionRequest(c.items[0]["question"], c.items[0]["reference"],
                                                             tuple(c.constraints)) for c in rev])
    for c, text in zip(rev, instructions):
        _take_instruction(c, text)
    replies = _ask(writer.reply, [ReplyRequest(tuple(c.messages), c.items[0]["reference"], tuple(c.constraints))
                                  for c in fwd])
    for c, text in zip(fwd, replies):
        _take_reply(c, text)
    # round 2: the second turn of multi-turn dialogues whose first reply passed
    two = [c for c in fwd if c.construction == "multi_turn" and c.rejected is None]
    for c in two:
        c.messages.append({"role": "user", "content": c.items[1]["question"]})
    replies = _ask(writer.reply, [ReplyRequest(tuple(c.messages), c.items[1]["reference"], tuple(c.constraints))
                                  for c in two])
    for c, text in zip(two, replies):
        _take_reply(c, text, turn=2)

    seen: set[str] = set()
    for c in cands:
        out.read += 1
        if c.rejected is not None:
            out.reject(*c.rejected, item=c.record())
            continue
        try:
            sample = _sample(c, writer)
        except SampleError as e:
            out.reject("contract", "invalid_sample", str(e), c.record())
            continue
        if sample["id"] in seen:      # the same base item drawn twice with the same constraints
            out.reject("contract", "duplicate", sample["id"], c.record())
            continue
        seen.add(sample["id"])
        out.kept.append(sample)
    return out


def _ask(fn: Callable[[list], list], requests: list) -> list:
    """One writer call per round, none for an empty round (no request to an endpoint for nothing)."""
    if not requests:
        return []
    got = fn(requests)
    if len(got) != len(requests):
        raise RuntimeError(f"writer returned {len(got)} results for {len(requests)} requests")
    return got


def _take_reply(c: _Candidate, text: str | dict, turn: int = 1) -> None:
    if isinstance(text, dict):
        c.rejected = ("llm", "request_failed", str(text.get("failure", ""))[:300])
        return
    failed = _first_failure(c.constraints, text)
    if failed is not None:
        c.rejected = ("checker", f"{failed}_failed", f"turn {turn}: {text[:200]}")
        return
    c.messages.append({"role": "assistant", "content": text,
                       "reasoning_content": rationale(c.constraints, text, implied=c.implied, carried=turn > 1)})


def _take_instruction(c: _Candidate, text: str | dict) -> None:
    if isinstance(text, dict):
        c.rejected = ("llm", "request_failed", str(text.get("failure", ""))[:300])
        return
    response = c.messages[0]["content"]
    failed = _first_failure(c.constraints, response)
    omitted = instruction_omissions(text, c.constraints)
    if not text.strip():
        c.rejected = ("checker", "empty_instruction", "")
    elif failed is not None:
        c.rejected = ("checker", f"{failed}_failed", "the reference does not satisfy its inferred constraint")
    elif omitted:
        c.rejected = ("checker", f"instruction_omits_{omitted[0]}", text[:200])
    else:
        c.messages = [{"role": "user", "content": text.strip()},
                      {"role": "assistant", "content": response, "reasoning_content": rationale(c.constraints,
                                                                                                response)}]
