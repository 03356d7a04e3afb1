"""Multi-expert rejection sampling with a dual gate (paper §4.1.1, "Multi-Expert Reject Sampling"): every
expert answers every item N times (best-of-N), each reply passes or fails three gates in turn, and of the
replies that pass, a few of diverse lengths are kept per item.

    items = [RSItem("q1", "Which vitamin ...?", ("B12", "C", "D"), "A", "choice", source_ids=("medqa-train-1",))]
    out, per_expert = rejection_sample(items, experts, LocalThinkingVerifier(), RejectionParams())
    out.kept[0]["messages"][-1]      # {"role": "assistant", "reasoning_content": "...", "content": "Answer: A"}
    per_expert["ckpt-a"]             # {"asked": 4, "request_ok": 4, "passed_outcome": 3, "passed_thinking": 2, "kept": 1}

Experts (experts.Expert: checkpoints and endpoints at their own temperatures) are the "varying cognitive
configurations"; each is asked `samples_per_expert` times per item with a rotating system prompt
(COGNITIVE_STYLES: stepwise, differential, concise) and a sample tag. Why the tag: the LLM client's cache is
content-addressed, so N identical queries would come back as one reply N times; and a greedy expert
(temperature 0) still varies with the style, which is the point of asking it more than once.

The query asks the expert to think inside <think></think> and then give the final answer on its own line.
Gates, in order (each reply rejected at the first it fails, with its expert, gate and reason):
- "request": the request failed (Reply.failure);
- "outcome": Outcome-Verify (verify.verify_outcome): the final answer, read by the eval harness's
  parsers, is the gold (choice / judgement / fill / open);
- "thinking": Thinking-Verify (a verify.ThinkingVerifier, Local or LLM): the chain is there, ends on
  the same answer, admits no hindsight and does not announce the answer before reasoning.
Among an item's passing replies: exact duplicate chains are dropped (gate "diversity", reason
"duplicate"); then up to `keep_per_item` are kept at evenly spaced quantiles of reasoning length (the
shortest, the longest and between) -- the paper wants a spectrum "from concise perceptual inferences
to multi-step diagnostic deductions", and picking by length spreads the kept set over that spectrum
where picking the first passers would keep whatever the first expert's style happens to produce. The
rest are rejected at gate "diversity", reason "not_selected". Nothing is lost: read (every reply asked
for) == kept + rejected.

A kept sample: user = the question (+ options as "A. ..."; image parts first for image items),
assistant reasoning_content = the expert's reasoning, content = its final answer; meta.expert,
meta.style, meta.sample. Family "rejection_sampling"; the phase is the item's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.common.io import file_sha256
from tasks.mid_synthesis.experts import LETTERS, Expert, Query, Reply
from tasks.mid_synthesis.samples import GateOutcome, image_part, mid_sample, text_part
from tasks.mid_synthesis.verify import (
    LocalThinkingVerifier,
    OutcomeParams,
    ThinkingCase,
    ThinkingVerifier,
    split_reply,
    verify_outcome,
)

COGNITIVE_STYLES = (
    "You are a careful clinician. Reason step by step from the findings to the answer.",
    "You are a diagnostician. Weigh the plausible alternatives against the evidence before choosing.",
    "You are an experienced specialist. Reason briefly and to the point.",
)
ANSWER_FORMAT = ("Think inside <think></think> first. After </think>, give the final answer on its own line as "
                 "\"Answer: ...\"{kind_hint}.")
KIND_HINTS = {"choice": " (the option letter)", "judgement": " (yes, no or maybe)", "fill": " (a short phrase)",
              "open": ""}


@dataclasses.dataclass(frozen=True)
class RSItem:
    id: str
    question: str
    options: tuple[str, ...]             # option texts (letters A, B, ... in order); () when not multiple choice
    answer: str                          # gold: a letter or option text for choice, yes/no/maybe, a phrase, a text
    answer_kind: str                     # samples.ANSWER_KINDS
    images: tuple[str, ...] = ()         # project-relative paths
    source_ids: tuple[str, ...] = ()
    phase: int = 1


@dataclasses.dataclass
class RejectionParams:
    samples_per_expert: int = 4          # best-of-N per expert and item
    keep_per_item: int = 2               # kept trajectories per item, spread over reasoning length
    styles: tuple[str, ...] = COGNITIVE_STYLES
    outcome: OutcomeParams = dataclasses.field(default_factory=OutcomeParams)


def user_text(item: RSItem) -> str:
    opts = "\n".join(f"{LETTERS[i]}. {t}" for i, t in enumerate(item.options))
    return item.question.strip() + (f"\n{opts}" if opts else "")


REPLY_CHARS = 400


def build_queries(item: RSItem, n: int, styles: Sequence[str]) -> list[Query]:
    """The N queries of one item: rotating styles, a sample tag so no two are the same request."""
    fmt = ANSWER_FORMAT.format(kind_hint=KIND_HINTS.get(item.answer_kind, ""))
    return [Query(f"{styles[k % len(styles)]} (sample {k + 1} of {n})", f"{user_text(item)}\n\n{fmt}", item.images)
            for k in range(n)]


def length_quantile_pick(lengths: Sequence[int], k: int) -> list[int]:
    """Indices (into `lengths`) of up to k entries at evenly spaced quantiles of length; the median for k=1.
    Ties in length keep the input order (the caller sorts it deterministically)."""
    n = len(lengths)
    if n <= k:
        return list(range(n))
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    if k == 1:
        return [order[(n - 1) // 2]]
    return [order[int(round(x))] for x in np.linspace(0, n - 1, k)]


def _locator(item: RSItem, expert: str, sample: int, reply: str | None = None) -> dict:
    """Where a rejected reply came from, with the reply itself (cut) so the gate's decision can be audited."""
    loc = {"id": item.id, "question": item.question[:200], "expert": expert, "sample": sample}
    return loc if reply is None else {**loc, "reply": reply[:REPLY_CHARS]}


def rejection_sample(items: Sequence[RSItem], experts: Sequence[Expert], verifier: ThinkingVerifier | None = None,
                     params: RejectionParams | None = None, root: str | Path = ".") -> tuple[GateOutcome, dict]:
    """Rejection-sampled trajectories for `items` (module docstring) and per-expert counts
    {expert: {asked, request_ok, passed_outcome, passed_thinking, kept}}."""
    p, root = params or RejectionParams(), Path(root)
    verifier = verifier or LocalThinkingVerifier()
    n = p.samples_per_expert
    out = GateOutcome()
    stats = {e.name: {"asked": 0, "request_ok": 0, "passed_outcome": 0, "passed_thinking": 0, "kept": 0}
             for e in experts}
    queries = [q for it in items for q in build_queries(it, n, p.styles)]
    # candidates that passed the outcome gate: (item index, expert, sample, reasoning, answer)
    outcome_ok: list[tuple[int, str, int, str, str]] = []
    for expert in experts:
        replies = list(expert.answer(queries)) if queries else []
        replies += [Reply(expert.name, None, "no_reply")] * (len(queries) - len(replies))
        for j, reply in enumerate(replies[: len(queries)]):
            i, k = divmod(j, n)
            item, st = items[i], stats[expert.name]
            st["asked"] += 1
            out.read += 1
            if reply.failure or reply.text is None:
                out.reject("request", reply.failure or "no_text", "", _locator(item, expert.name, k))
                continue
            st["request_ok"] += 1
            reasoning, answer = split_reply(reply.text)
            if not answer:
                out.reject("outcome", "no_answer", reply.text[-300:], _locator(item, expert.name, k))
                continue
            v = verify_outcome(answer, item.answer, item.answer_kind, item.options, p.outcome)
            if not v.ok:
                out.reject("outcome", v.reason or "wrong", f"read={v.parsed!r} gold={item.answer!r}",
                           _locator(item, expert.name, k, reply.text))
                continue
            st["passed_outcome"] += 1
            outcome_ok.append((i, expert.name, k, reasoning, answer))
    cases = [ThinkingCase(items[i].question, items[i].options, r, a, items[i].answer, items[i].answer_kind)
             for i, _, _, r, a in outcome_ok]
    verdicts = verifier.verify(cases) if cases else []
    passed: dict[int, list[tuple[str, int, str, str]]] = {}
    for (i, name, k, r, a), fails in zip(outcome_ok, verdicts):
        if fails:
            out.reject("thinking", fails[0], ",".join(fails), _locator(items[i], name, k, f"{r}\nAnswer: {a}"))
            continue
        stats[name]["passed_thinking"] += 1
        passed.setdefault(i, []).append((name, k, r, a))
    shas: dict[str, str] = {}
    for i in sorted(passed):
        item, cands, seen, unique = items[i], passed[i], set(), []
        for c in cands:
            key = " ".join(c[2].split()).lower()
            if key in seen:
                out.reject("diversity", "duplicate", "", _locator(item, c[0], c[1]))
            else:
                seen.add(key)
                unique.append(c)
        picked = set(length_quantile_pick([len(c[2].split()) for c in unique], p.keep_per_item))
        for j, (name, k, reasoning, answer) in enumerate(unique):
            if j not in picked:
                out.reject("diversity", "not_selected", f"reasoning_words={len(reasoning.split())}",
                           _locator(item, name, k))
                continue
            out.kept.append(_sample(item, name, k, reasoning, answer, p, root, shas, verifier.name))
            stats[name]["kept"] += 1
    return out, stats


def _sample(item: RSItem, expert: str, k: int, reasoning: str, answer: str, p: RejectionParams, root: Path,
            shas: dict, verifier_name: str) -> dict:
    images = []
    for path in item.images:
        if path not in shas:
            shas[path] = file_sha256(root / path)
        images.append({"path": path, "sha256": shas[path]})
    text = user_text(item)
    user = [image_part() for _ in images] + [text_part(text)] if images else text
    messages = [{"role": "user", "content": user},
                {"role": "assistant", "reasoning_content": reasoning, "content": answer}]
    return mid_sample("rejection_sampling", item.phase, list(item.source_ids) or [f"item:{item.id}"], messages,
                      answer=item.answer, answer_kind=item.answer_kind, images=images,
                      generator="llm", expert=expert, sample=k, style=p.styles[k % len(p.styles)],
                      item_id=item.id, reasoning_words=len(reasoning.split()), verifier=verifier_name)
