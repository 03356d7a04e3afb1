"""Agentic search trajectories (paper §4.1.2): ReAct rollouts of multi-hop KG questions over a real search tool.

    from tasks.mid_synthesis.agentic_search import AgenticSearchParams, LocalSearchPolicy, agentic_search
    tool = SearchTool.from_corpus("data/quality/kept", SearchParams())
    out = agentic_search(questions, tool, LocalSearchPolicy(AgenticSearchParams()), AgenticSearchParams())
    out.kept        # samples of family agentic_search, phase 4, tools=[SEARCH_SCHEMA]
    out.by_gate()   # {"retrieval": {"hop_not_retrieved": n}, "answer": {...}, "quality": {...}, ...}
    replay_tool_calls(out.kept[0], tool)   # [True, True, ...]: every search re-runs to the same text

Input: multi-hop questions {id, question, answer, hops: [{head, relation, tail, direction, sentence, doc_id,
edge_id}]}. `head`/`tail` are the stored KG edge's endpoints (as in data/kg/edges.jsonl), `direction` the
way the walk crossed it ("forward" head -> tail, "backward" tail -> head). The walk is resolved by chaining:
each hop starts at the entity the previous hop ended on (the first at the endpoint it does not share with
the second hop, or by `direction` for a one-hop question); a chain that does not connect is an input
rejection. Optional question keys: answer_kind (default "fill": the answer is an entity name checked by
exact match).

A trajectory is: user question -> [assistant {reasoning_content: Thought, tool_calls: [search]} -> tool
{name: search, content: the real results}]* -> assistant {reasoning_content, content: the answer}.
Two policies behind one interface (`SearchPolicy.rollout`):
- `LocalSearchPolicy`: per hop, a query from the current entity and the relation's words (then, while the
  evidence is missing and `max_queries_per_hop` allows, the entity with the relation's alternative words, then
  the entity alone); the tool really runs; the next entity is
  taken only from a retrieved passage that names it (a name of the hop's next node, matched on word
  boundaries, and by default in the same passage as the current entity); when no retrieved passage does,
  the rollout stops and is rejected (retrieval / hop_not_retrieved): an observation is never invented. The
  Thought text is a template filled with those facts (the evidence snippet, the relation phrase).
- `LLMSearchPolicy`: the LLM reads the question and the observations so far and proposes the next step in
  JSON ({thought, action: search, query} or {thought, action: answer, answer}); the tool still really runs.
Gates, applied to both: retrieval (every hop's next entity is named in an observation, with the current
entity when `require_comention`), answer (the final answer equals the gold answer after normalization),
quality (no leaked answer in the question, no repeated query, one search per hop at least, the contract).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol

from tasks.mid_synthesis.samples import GateOutcome, SampleError, mid_sample, tool_call
from tasks.mid_synthesis.search_tool import SEARCH_SCHEMA, SearchTool, render_results

FAMILY = "agentic_search"
PHASE = 4                              # hybrid fusion: retrieval and reasoning interleaved

# relation -> (first query words, alternative query words, forward phrase, backward phrase, noun)
RELATIONS = {
    "caused_by": ("cause causes", "caused due", "{a} is caused by {b}", "{a} causes {b}", "cause"),
    "treated_by": ("treatment treated", "treat therapy", "{a} is treated with {b}", "{a} is used to treat {b}",
                   "treatment"),
    "has_symptom": ("symptoms", "signs features", "{a} has the symptom {b}", "{a} is a symptom of {b}", "symptom"),
    "has_risk_factor": ("risk factors", "risk increase", "{a} has the risk factor {b}", "{a} is a risk factor for {b}",
                        "risk factor"),
    "diagnosed_by": ("diagnosis diagnosed", "test tests", "{a} is diagnosed by {b}", "{a} is used to diagnose {b}",
                     "diagnostic test"),
    "prevented_by": ("prevention prevent", "prevented reduce", "{a} is prevented by {b}", "{a} helps prevent {b}",
                     "prevention"),
    "has_complication": ("complications", "lead cause", "{a} can lead to {b}", "{a} is a complication of {b}",
                         "complication"),
    "located_in": ("located", "found in", "{a} is located in {b}", "{b} is located in {a}", "location"),
    "associated_with": ("associated", "related linked", "{a} is associated with {b}", "{a} is associated with {b}",
                        "association"),
    "co_occurs_with": ("", "", "{a} is described together with {b}", "{a} is described together with {b}",
                       "related entity"),
}
SYSTEM = ("You answer multi-hop medical questions by searching a medical reference corpus with the `search` "
          "tool, one hop at a time. Each turn, reply with one JSON object only: "
          '{"thought": "...", "action": "search", "query": "..."} to search, or '
          '{"thought": "...", "action": "answer", "answer": "..."} when the observations are enough. '
          "Answer with the entity name as the passages write it.")
REPAIR = ("That reply could not be used ({problem}). Reply with one JSON object only: {{\"thought\": ..., "
          "\"action\": \"search\", \"query\": ...}} or {{\"thought\": ..., \"action\": \"answer\", \"answer\": ...}}.")


@dataclasses.dataclass
class AgenticSearchParams:
    k: int = 5                        # passages per search
    max_queries_per_hop: int = 2      # local policy: relation words, alternative words, entity alone (1..3)
    require_comention: bool = True    # evidence names the current and the next entity in one passage
    max_hops: int = 8
    extra_steps: int = 2              # LLM policy: searches allowed beyond one per hop
    snippet_chars: int = 240          # evidence quoted in a Thought
    prompt_observation_chars: int = 2500   # LLM prompt: each observation is cut here (samples keep it whole)
    max_tokens: int = 512

    def __post_init__(self):
        if self.k < 1 or self.max_queries_per_hop < 1 or self.max_hops < 1 or self.extra_steps < 0:
            raise ValueError("k, max_queries_per_hop, max_hops >= 1 and extra_steps >= 0 are required")


# ----------------------------------------------------------------------------- entities and the chain
def norm(text: str) -> str:
    """Comparison key of an entity name: NFKC, case-folded, whitespace collapsed, end punctuation dropped
    (KG norms carry list markers such as "- fever")."""
    t = unicodedata.normalize("NFKC", str(text)).casefold()
    t = re.sub(r"\s+", " ", t).strip()
    return re.sub(r"^[\W_]+|[\W_]+$", "", t)


def mention(text: str, name: str) -> str | None:
    """The surface form of `name` in `text` (case-insensitive, whole words, any whitespace), or None."""
    key = norm(name)
    if not key:
        return None
    pat = r"\s+".join(re.escape(w) for w in key.split(" "))
    pat = (r"(?<!\w)" if key[0].isalnum() else "") + pat + (r"(?!\w)" if key[-1].isalnum() else "")
    m = re.search(pat, unicodedata.normalize("NFKC", text), flags=re.IGNORECASE)
    return m.group() if m else None


@dataclasses.dataclass(frozen=True)
class Step:
    current: str
    next: str
    relation: str
    forward: bool
    hop: dict


def resolve_chain(hops: Sequence[dict]) -> list[Step]:
    """The walk as steps current -> next (module docstring); ValueError("broken_chain") if it does not connect."""
    steps: list[Step] = []
    for i, h in enumerate(hops):
        head, tail = str(h["head"]), str(h["tail"])
        if i == 0:
            nxt = {norm(hops[1]["head"]), norm(hops[1]["tail"])} if len(hops) > 1 else set()
            if nxt and norm(tail) in nxt and norm(head) not in nxt:
                cur = head
            elif nxt and norm(head) in nxt and norm(tail) not in nxt:
                cur = tail
            else:
                cur = tail if str(h.get("direction", "forward")) in ("backward", "reverse", "in") else head
        else:
            cur = steps[-1].next
        if norm(cur) == norm(head):
            steps.append(Step(head, tail, str(h["relation"]), True, h))
        elif norm(cur) == norm(tail):
            steps.append(Step(tail, head, str(h["relation"]), False, h))
        else:
            raise ValueError(f"broken_chain: hop {i} ({head!r} - {tail!r}) does not start at {cur!r}")
    return steps


def relation_info(relation: str) -> tuple[str, str, str, str, str]:
    words = relation.replace("_", " ")
    return RELATIONS.get(relation, (words, words, "{a} " + words + " {b}", "{b} " + words + " {a}", words))


def phrase(step: Step, nxt_surface: str | None = None) -> str:
    fwd, bwd = relation_info(step.relation)[2:4]
    return (fwd if step.forward else bwd).format(a=step.current, b=nxt_surface or step.next)


def queries_for(step: Step, current_surface: str) -> list[str]:
    first, alt = relation_info(step.relation)[:2]
    return [f"{current_surface} {first}".strip(), f"{current_surface} {alt}".strip(), current_surface]


def evidence(results: Sequence[dict], step: Step, require_comention: bool) -> tuple[int, str] | None:
    """(index into results, surface of the next entity) of the first passage that names the next entity
    (and the current one when required), or None."""
    for i, r in enumerate(results):
        surface = mention(r["text"], step.next)
        if surface and (not require_comention or mention(r["text"], step.current)):
            return i, surface
    return None


def snippet(text: str, surface: str, chars: int) -> str:
    """The sentence-ish stretch of `text` around `surface`, at most `chars` long."""
    at = max(text.find(surface), 0)
    sentence = text.rfind(". ", 0, at)
    lo = max(sentence + 2 if sentence >= 0 else 0, at - chars // 2)
    out = re.sub(r"\s+", " ", text[lo:lo + chars]).strip()
    return out + ("..." if lo + chars < len(text) else "")


# ----------------------------------------------------------------------------- rollouts
@dataclasses.dataclass
class Rollout:
    """One question's trajectory so far; `failure` = (gate, reason, detail) when the policy gave up."""
    question: dict
    steps: list[Step]
    messages: list[dict] = dataclasses.field(default_factory=list)
    observations: list[list[dict]] = dataclasses.field(default_factory=list)   # results of each search
    queries: list[str] = dataclasses.field(default_factory=list)
    evidence: list[str] = dataclasses.field(default_factory=list)              # passage ids used per hop
    answer: str | None = None
    failure: tuple[str, str, str] | None = None


class SearchPolicy(Protocol):
    generator: str                     # "local" | "llm"

    def rollout(self, rollouts: list[Rollout], tool: SearchTool) -> None:
        """Fill each rollout's messages/answer (or failure), calling `tool` for every search."""


def _search_turn(thought: str, query: str, k: int) -> dict:
    return {"role": "assistant", "content": "", "reasoning_content": thought,
            "tool_calls": [tool_call("search", {"query": query, "k": k})]}


def _tool_turn(results: list[dict]) -> dict:
    return {"role": "tool", "name": "search", "content": render_results(results)}


class LocalSearchPolicy:
    """Per-hop relation queries, evidence only from the real results (module docstring). The Thought
    sentences are templates around those facts."""

    generator = "local"

    def __init__(self, params: AgenticSearchParams | None = None):
        self.params = params or AgenticSearchParams()

    def rollout(self, rollouts: list[Rollout], tool: SearchTool) -> None:
        for r in rollouts:
            self._one(r, tool)

    def _one(self, r: Rollout, tool: SearchTool) -> None:
        p = self.params
        current = r.steps[0].current
        thought = (f"The question starts from {current}. I need to follow its links one at a time, beginning "
                   f"with the entity X such that {phrase(r.steps[0], 'X')}, and check each link against the "
                   "reference corpus.")
        chain: list[str] = [current]
        for i, step in enumerate(r.steps):
            clue = phrase(dataclasses.replace(step, current=current), "X")
            found = None
            for j, q in enumerate(queries_for(step, current)[: p.max_queries_per_hop]):
                if j:
                    thought = (f"These results do not settle the entity X such that {clue}. "
                               f"I will search again with different words.")
                results = tool.search(q, p.k)
                r.messages += [_search_turn(thought + f" Search: \"{q}\".", q, p.k), _tool_turn(results)]
                r.queries.append(q)
                r.observations.append(results)
                found = evidence(results, step, p.require_comention)
                if found:
                    break
            if not found:
                r.failure = ("retrieval", "hop_not_retrieved",
                             f"hop {i}: {step.current} -[{step.relation}]-> ? not in the top {p.k} for "
                             f"{r.queries[-min(p.max_queries_per_hop, len(r.queries)):]}")
                return
            idx, surface = found
            hit = results[idx]
            r.evidence.append(hit["passage_id"])
            fact = (f"Passage [{idx + 1}] ({hit['passage_id']}) says: \"{snippet(hit['text'], surface, p.snippet_chars)}\" "
                    f"So {phrase(step, surface)}.")
            chain.append(surface)
            current = surface
            if i + 1 < len(r.steps):
                # the clue read in the hop's own direction: "X such that eserine causes X", not "the cause of eserine"
                nxt = dataclasses.replace(r.steps[i + 1], current=surface)
                thought = f"{fact} Next I need the entity X such that {phrase(nxt, 'X')}."
        r.answer = current
        r.messages.append({"role": "assistant", "reasoning_content": f"{fact} Following the chain "
                           f"{' -> '.join(chain)}, the answer is {current}.", "content": current})


def _parse_step(reply: str) -> dict:
    from tasks.llm.ask import json_object
    from tasks.llm.parsing import ParseError

    obj = json_object(reply, {"thought": str, "action": str})
    action = obj["action"].strip().lower()
    key = {"search": "query", "answer": "answer"}.get(action)
    if key is None:
        raise ParseError(f"action must be 'search' or 'answer', got {obj['action']!r}", reply)
    if not isinstance(obj.get(key), str) or not obj[key].strip():
        raise ParseError(f"action {action!r} needs a non-empty string {key!r}", reply)
    return {"thought": obj["thought"].strip(), "action": action, key: obj[key].strip()}


class LLMSearchPolicy:
    """The LLM chooses every query and the final answer (JSON per turn); the tool really runs. All active
    rollouts advance one turn per batched request round."""

    generator = "llm"

    def __init__(self, client, params: AgenticSearchParams | None = None):
        self.client = client
        self.params = params or AgenticSearchParams()

    def _chat(self, r: Rollout) -> list[dict]:
        lines = [f"Question: {r.question['question']}"]
        for n, (q, obs) in enumerate(zip(r.queries, r.observations), 1):
            text = render_results(obs)[: self.params.prompt_observation_chars]
            lines.append(f"\nSearch {n}: {q}\nResults:\n{text}")
        lines.append("\nReply with the next JSON object.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]

    def rollout(self, rollouts: list[Rollout], tool: SearchTool) -> None:
        from tasks.llm.ask import ask_parsed

        p = self.params
        active = list(rollouts)
        budget = {id(r): len(r.steps) + p.extra_steps for r in rollouts}
        while active:
            answers = ask_parsed(self.client, [self._chat(r) for r in active], _parse_step, REPAIR,
                                 max_tokens=p.max_tokens)
            still = []
            for r, a in zip(active, answers):
                if not a.ok:
                    r.failure = ("llm", a.failure["kind"], a.failure["detail"])
                elif a.value["action"] == "answer":
                    r.answer = a.value["answer"]
                    r.messages.append({"role": "assistant", "reasoning_content": a.value["thought"],
                                       "content": r.answer})
                elif len(r.queries) >= budget[id(r)]:
                    r.failure = ("answer", "no_final_answer", f"still searching after {len(r.queries)} searches")
                else:
                    q = a.value["query"]
                    results = tool.search(q, p.k)
                    r.messages += [_search_turn(a.value["thought"], q, p.k), _tool_turn(results)]
                    r.queries.append(q)
                    r.observations.append(results)
                    still.append(r)
            active = still


# ----------------------------------------------------------------------------- the engine
def _check_question(q: dict, params: AgenticSearchParams) -> list[Step]:
    for key in ("id", "question", "answer", "hops"):
        if not q.get(key):
            raise ValueError(f"missing_field: {key}")
    if len(q["hops"]) > params.max_hops:
        raise ValueError(f"too_many_hops: {len(q['hops'])} > {params.max_hops}")
    for h in q["hops"]:
        if not all(str(h.get(k, "")).strip() for k in ("head", "relation", "tail")):
            raise ValueError("bad_hop: a hop needs head, relation and tail")
    return resolve_chain(q["hops"])


def supported_hops(r: Rollout, require_comention: bool) -> list[str | None]:
    """Per step: the first observed passage that names its next entity (with its current entity), or None."""
    passages = [res for obs in r.observations for res in obs]
    found = [evidence(passages, s, require_comention) for s in r.steps]
    return [passages[f[0]]["passage_id"] if f else None for f in found]


def quality_problem(r: Rollout) -> tuple[str, str] | None:
    if mention(r.question["question"], r.question["answer"]):
        return "answer_in_question", r.question["answer"]
    if len(set(r.queries)) < len(r.queries):
        return "repeated_query", "; ".join(r.queries)
    if len(r.queries) < len(r.steps):
        return "too_few_searches", f"{len(r.queries)} searches for {len(r.steps)} hops"
    return None


def agentic_search(questions: Sequence[dict], tool: SearchTool, policy: SearchPolicy,
                   params: AgenticSearchParams | None = None) -> GateOutcome:
    """ReAct samples for `questions` (module docstring); read == kept + rejected."""
    params = params or AgenticSearchParams()
    out = GateOutcome(read=len(questions))
    rollouts: list[Rollout] = []
    for q in questions:
        try:
            steps = _check_question(q, params)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            reason = str(e).split(":")[0] if isinstance(e, ValueError) else "bad_question"
            out.reject("input", reason, str(e), {"id": q.get("id") if isinstance(q, dict) else None})
            continue
        rollouts.append(Rollout(q, steps, messages=[{"role": "user", "content": q["question"]}]))
    policy.rollout(rollouts, tool)
    for r in rollouts:
        q = r.question
        item = {"id": q["id"], "question": q["question"][:200]}
        if r.failure:
            out.reject(*r.failure, item)
            continue
        support = supported_hops(r, params.require_comention)
        missing = [i for i, pid in enumerate(support) if pid is None]
        if missing:
            out.reject("retrieval", "hop_not_retrieved", f"hops {missing} not named in any observation", item)
            continue
        r.evidence = r.evidence or [str(pid) for pid in support]
        if r.answer is None or norm(r.answer) != norm(q["answer"]):
            out.reject("answer", "wrong_answer", f"{r.answer!r} != gold {q['answer']!r}", item)
            continue
        problem = quality_problem(r)
        if problem:
            out.reject("quality", *problem, item)
            continue
        edges = [f"kg-edge:{s.hop['edge_id']}" for s in r.steps if s.hop.get("edge_id") is not None]
        docs = sorted({pid.split("#")[0] for pid in r.evidence})
        try:
            out.kept.append(mid_sample(
                FAMILY, PHASE, [str(q["id"]), *edges, *docs], r.messages, answer=str(q["answer"]),
                answer_kind=q.get("answer_kind", "fill"), tools=[SEARCH_SCHEMA], generator=policy.generator,
                question_id=str(q["id"]), hops=len(r.steps), searches=len(r.queries), evidence=r.evidence))
        except SampleError as e:
            out.reject("quality", f"contract_{e.reason}", e.detail, item)
    return out


def replay_tool_calls(sample: dict, tool: SearchTool) -> list[bool]:
    """Re-run every search call of a sample; per call, whether the tool returns the recorded content."""
    msgs = sample["messages"]
    out: list[bool] = []
    for i, m in enumerate(msgs):
        calls = (m.get("tool_calls") or []) if m.get("role") == "assistant" else []
        replies = [t for t in msgs[i + 1: i + 1 + len(calls)] if t.get("role") == "tool"]
        for c, t in zip(calls, replies + [None] * (len(calls) - len(replies))):
            fn = c["function"]
            out.append(t is not None and fn["name"] == tool.name and tool.call(fn["arguments"]) == t["content"])
    return out
