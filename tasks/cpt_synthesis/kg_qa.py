"""Text knowledge from the knowledge graph (paper §3.3.1): atomic QA and aggregated QA.

    from tasks.cpt_synthesis.kg_qa import KGQAParams, atomic_qa, aggregated_qa, LocalQAWriter, LLMQAWriter
    out = atomic_qa(nodes, edges, LocalQAWriter(), KGQAParams())          # Outcome(kept samples, rejected)
    out = aggregated_qa(graph, LocalQAWriter(), KGQAParams(), seed=1234)

Atomic QA ("inject discrete knowledge points"): one fact per node (its type) and per edge (its typed
relation), each turned into question/answer pairs: locally by templates per relation (both directions
for directed relations, the variant chosen by a seeded hash of the edge), or by the LLM from the fact
and its supporting corpus sentence.

Aggregated QA ("multi-fact synthesis"): a seeded random walk over the graph gives a connected set of
facts; they are rewritten into one passage (local: per-relation sentences grouped by entity; LLM: a
rewrite prompt) and the passage is questioned (local: bridge questions through an entity shared by two
facts plus list questions over an entity's facts; LLM: a prompt asking for questions that need several
facts). Both the passage (task `passage`) and its QA pairs (task `aggregated_qa`) become samples.

The graph is read through a minimal protocol that the kg stage's loader (tasks.knowledge_graph.graph.
KnowledgeGraph) satisfies: `nodes` (list of {name, type, norm, ...}), `edge(id)` ({head_idx, tail_idx,
relation, kind, provenance}), `degree(node)` and `random_walk(start, length, rng)` -> .nodes/.edges; `ListGraph` is an
in-memory implementation for small graphs. Node names are shown as written, minus list bullets; a node
with an unusable name (empty, too many words) and an edge whose relation is not in `relations`
(co-occurrence is statistics, not a stated fact) are rejected with a reason, never silently skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from tasks.cpt_synthesis.replies import qa_pairs
from tasks.cpt_synthesis.samples import Outcome, make_sample
from tasks.llm.ask import ask_parsed, json_object

# relation -> (statement, question about the tail, question about the head, clue for the tail given
# the head, clue for the head given the tail). {h}/{t} are display names.
TEMPLATES: dict[str, tuple[str, str, str, str, str]] = {
    "caused_by": ("{h} can be caused by {t}.", "What can cause {h}?", "Which condition can {t} cause?",
                  "a cause of {h}", "a condition that {t} can cause"),
    "treated_by": ("{h} can be treated with {t}.", "What is a treatment for {h}?",
                   "Which condition can be treated with {t}?", "a treatment for {h}", "a condition treated with {t}"),
    "has_symptom": ("{t} is a symptom of {h}.", "What is a symptom of {h}?",
                    "Which condition can present with {t}?", "a symptom of {h}", "a condition presenting with {t}"),
    "diagnosed_by": ("{h} can be diagnosed with {t}.", "Which test helps diagnose {h}?",
                     "Which condition can {t} help diagnose?", "a test for {h}", "a condition that {t} helps diagnose"),
    "prevented_by": ("{h} can be prevented by {t}.", "What can help prevent {h}?",
                     "Which condition can {t} help prevent?", "a way to prevent {h}", "a condition that {t} helps prevent"),
    "has_risk_factor": ("{t} is a risk factor for {h}.", "What is a risk factor for {h}?",
                        "Which condition is {t} a risk factor for?", "a risk factor for {h}",
                        "a condition with {t} as a risk factor"),
    "has_complication": ("{t} is a possible complication of {h}.", "What is a possible complication of {h}?",
                         "Which condition can lead to the complication {t}?", "a complication of {h}",
                         "a condition that can be complicated by {t}"),
    "located_in": ("{h} affects the {t}.", "Which part of the body does {h} affect?",
                   "Which condition can affect the {t}?", "the body site of {h}", "a condition of the {t}"),
    "associated_with": ("{h} is associated with {t}.", "What is {h} associated with?",
                        "What is {t} associated with?", "something associated with {h}",
                        "something associated with {t}"),
    "co_occurs_with": ("{h} and {t} are often discussed together.", "What is often discussed together with {h}?",
                       "What is often discussed together with {t}?", "something discussed with {h}",
                       "something discussed with {t}"),
}
PLURALS = {"caused_by": "causes", "treated_by": "treatments", "has_symptom": "symptoms",
           "diagnosed_by": "diagnostic tests", "prevented_by": "preventive measures",
           "has_risk_factor": "risk factors", "has_complication": "possible complications",
           "located_in": "body sites", "associated_with": "associated entities", "co_occurs_with": "related entities"}
DEFAULT_RELATIONS = ["caused_by", "treated_by", "has_symptom", "diagnosed_by", "prevented_by",
                     "has_risk_factor", "has_complication", "located_in", "associated_with"]
_BULLET = re.compile(r"^[\s\-–•*·,;:.]+|[\s,;:]+$")


@dataclasses.dataclass
class KGQAParams:
    relations: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_RELATIONS))
    node_qa: bool = True             # one "what type of entity is X" pair per named node with edges
    max_name_words: int = 8          # longer node names are list fragments, not entities
    max_name_chars: int = 80
    walks: int = 200                 # aggregated: random walks (one passage each)
    walk_length: int = 6             # steps per walk
    min_facts: int = 2               # distinct usable facts a walk needs to become a passage
    max_facts: int = 8
    max_docs_per_sample: int = 3     # corpus doc ids copied into source_ids (lineage)
    max_tokens: int = 384            # LLM reply budget

    def __post_init__(self):
        unknown = sorted(set(self.relations) - set(TEMPLATES))
        if unknown:
            raise ValueError(f"relations: no templates for {unknown}; known: {sorted(TEMPLATES)}")
        if self.walk_length < 1 or self.min_facts < 1 or self.max_facts < self.min_facts:
            raise ValueError("walk_length >= 1 and 1 <= min_facts <= max_facts are required")


@dataclasses.dataclass(frozen=True)
class Fact:
    head: str
    relation: str
    tail: str
    edge_id: int | None = None
    evidence: str = ""               # one supporting corpus sentence, when the graph keeps one
    doc_ids: tuple[str, ...] = ()

    def statement(self) -> str:
        if self.relation == "is_a":
            return _cap(f"{self.head} is classified as a {self.tail.lower()}.")
        return _cap(TEMPLATES[self.relation][0].format(h=self.head, t=self.tail))


class GraphLike(Protocol):
    nodes: Sequence[dict]

    def edge(self, edge_id: int) -> dict: ...

    def degree(self, node: int) -> int: ...

    def random_walk(self, start: int, length: int, rng: Any = None) -> Any: ...


@dataclasses.dataclass
class _Walk:
    nodes: list[int]
    edges: list[int]


class ListGraph:
    """An in-memory GraphLike over node and edge records (edges need head_idx, tail_idx, relation;
    `weight` defaults to 1). The walk picks an incident edge with probability proportional to weight."""

    def __init__(self, nodes: Sequence[dict], edges: Sequence[dict]):
        self.nodes = list(nodes)
        self._edges = list(edges)
        self._adj: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
        for i, e in enumerate(self._edges):
            w = float(e.get("weight", 1.0))
            self._adj[e["head_idx"]].append((e["tail_idx"], i, w))
            self._adj[e["tail_idx"]].append((e["head_idx"], i, w))

    def edge(self, edge_id: int) -> dict:
        return self._edges[edge_id]

    def degree(self, node: int) -> int:
        return len(self._adj.get(node, ()))

    def random_walk(self, start: int, length: int, rng: Any = None) -> _Walk:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        cur, nodes, edges = int(start), [int(start)], []
        for u in gen.random(length):
            row = self._adj.get(cur)
            if not row:
                break
            cum = np.cumsum([w for _, _, w in row])
            j = min(int(np.searchsorted(cum, u * cum[-1], side="right")), len(row) - 1)
            cur, eid = row[j][0], row[j][1]
            nodes.append(cur)
            edges.append(eid)
        return _Walk(nodes, edges)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def display_name(node: dict, params: KGQAParams) -> str | None:
    """The node's name as shown in text (list bullets stripped), or None if it is not usable."""
    name = _BULLET.sub("", str(node.get("name") or node.get("norm") or ""))
    name = " ".join(name.split())
    if not name or len(name) > params.max_name_chars or len(name.split()) > params.max_name_words:
        return None
    if name.count(" - ") or not re.search(r"[^\W\d_]", name):
        return None                  # "appetite loss - nausea - vomiting": a list, not one entity
    if len(name) < 2 or (len(name) == 2 and not name.isupper()):
        return None                  # "T", "mm": fragments; two letters only as an acronym ("TB")
    return name


def edge_fact(edge: dict, names: dict[int, str]) -> Fact:
    prov = edge.get("provenance") or {}
    sents = prov.get("sentences") or []
    evidence = sents[0]["text"] if sents and isinstance(sents[0], dict) else ""
    return Fact(names[edge["head_idx"]], edge["relation"], names[edge["tail_idx"]], edge.get("id"),
                evidence[:600], tuple(prov.get("doc_ids") or ()))


def _pick(key: str, n: int) -> int:
    """A stable variant index for `key` (same edge -> same template, no global RNG state)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % n


# ----------------------------------------------------------------------------- writers
class QAWriter(Protocol):
    """What the two paths provide: QA pairs for one fact, a passage for many, QA over a passage."""
    name: str

    def atomic(self, facts: Sequence[Fact]) -> list[list[dict] | dict]: ...

    def passages(self, groups: Sequence[Sequence[Fact]]) -> list[str | dict]: ...

    def passage_qa(self, passages: Sequence[str], groups: Sequence[Sequence[Fact]]) -> list[list[dict] | dict]: ...


class LocalQAWriter:
    """Templates: no model needed, deterministic, every answer stated by the graph."""
    name = "local"

    def atomic(self, facts: Sequence[Fact]) -> list[list[dict]]:
        out = []
        for f in facts:
            if f.relation == "is_a":
                out.append([{"question": f"What type of medical entity is {f.head}?", "answer": f.statement()}])
                continue
            _, q_tail, q_head, _, _ = TEMPLATES[f.relation]
            key = f"{f.head}|{f.relation}|{f.tail}"
            q = (q_tail, q_head)[_pick(key, 2)]
            out.append([{"question": q.format(h=f.head, t=f.tail), "answer": f.statement()}])
        return out

    def passages(self, groups: Sequence[Sequence[Fact]]) -> list[str]:
        out = []
        for facts in groups:
            by_head: dict[str, list[Fact]] = defaultdict(list)
            for f in facts:
                by_head[f.head].append(f)
            sentences = []
            for head, fs in by_head.items():
                by_rel: dict[str, list[str]] = defaultdict(list)
                for f in fs:
                    by_rel[f.relation].append(f.tail)
                for rel, tails in by_rel.items():
                    if len(tails) == 1:
                        sentences.append(Fact(head, rel, tails[0]).statement())
                    else:
                        sentences.append(f"{_cap(PLURALS[rel])} of {head} include {_join(tails)}."
                                         if rel != "associated_with" else
                                         f"{head} is associated with {_join(tails)}.")
            out.append(" ".join(_cap(s) for s in sentences))
        return out

    def passage_qa(self, passages: Sequence[str], groups: Sequence[Sequence[Fact]]) -> list[list[dict]]:
        return [multi_fact_questions(facts) for facts in groups]


def _join(items: Sequence[str]) -> str:
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def multi_fact_questions(facts: Sequence[Fact]) -> list[dict]:
    """Questions that need two or more facts: bridges (an entity linked to two others) and lists (all
    tails of one relation of one head)."""
    qa: list[dict] = []
    role: dict[str, list[tuple[Fact, str]]] = defaultdict(list)   # entity -> (fact, "head"|"tail")
    for f in facts:
        role[f.tail].append((f, "tail"))
        role[f.head].append((f, "head"))
    for bridge, uses in role.items():
        clues, used = [], []
        for f, side in uses:
            _, _, _, clue_tail, clue_head = TEMPLATES[f.relation]
            clue = clue_tail.format(h=f.head, t=f.tail) if side == "tail" else clue_head.format(h=f.head, t=f.tail)
            if clue not in clues:
                clues.append(clue)
                used.append(f)
        if len(clues) >= 2:
            q = f"What is both {clues[0]} and {clues[1]}?"
            a = f"{bridge}: {used[0].statement()[:-1]}, and {_lower_first(used[1].statement())}"
            qa.append({"question": q, "answer": _cap(a)})
    lists: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in facts:
        lists[(f.head, f.relation)].append(f.tail)
    for (head, rel), tails in lists.items():
        tails = list(dict.fromkeys(tails))
        if len(tails) >= 2:
            qa.append({"question": f"Name {len(tails)} {PLURALS[rel]} of {head}.",
                       "answer": f"{_cap(PLURALS[rel])} of {head} include {_join(tails)}."})
    return qa


def _lower_first(s: str) -> str:
    # keep acronyms and proper names ("MRI", "Crohn") as written
    return s if s[:2].isupper() or not s else s[0].lower() + s[1:]


SYSTEM = "You are a medical educator who writes accurate, self-contained study material. You answer only with JSON."
ATOMIC_PROMPT = ("Write one or two question-answer pairs that test this single medical fact. Each question must "
                 "name the entities it is about (no 'it', 'this', 'the above'); each answer must be a full sentence "
                 "stating only the fact.\nFact: {fact}\n{evidence}"
                 'Reply with only JSON: [{{"question": "...", "answer": "..."}}]')
PASSAGE_PROMPT = ("Rewrite these medical facts into one coherent, self-contained paragraph for a textbook. Use every "
                  "fact, add no new claims, name every entity explicitly.\nFacts:\n{facts}\n"
                  'Reply with only JSON: {{"passage": "..."}}')
QUESTION_PROMPT = ("Write up to {n} question-answer pairs about the passage below. Each question must need at least "
                   "two facts of the passage to answer and must name its entities (no 'the passage', 'above', "
                   "'it'); each answer is a full sentence supported by the passage.\nPassage:\n{passage}\n"
                   'Reply with only JSON: [{{"question": "...", "answer": "..."}}]')
REPAIR = ("That reply could not be used ({problem}). Answer again with only the JSON described above "
          "and nothing else.")


class LLMQAWriter:
    """The paper's method through the project client; an answer that does not parse after one repair
    turn comes back as {"failure": ...} in its slot."""
    name = "llm"

    def __init__(self, client, max_tokens: int = 384, max_pairs: int = 4):
        self.client = client
        self.max_tokens = max_tokens
        self.max_pairs = max_pairs

    def _ask(self, prompts: Sequence[str], parse) -> list:
        chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
        answers = ask_parsed(self.client, chats, parse, REPAIR, max_tokens=self.max_tokens)
        return [a.value if a.ok else {"failure": a.failure} for a in answers]

    def atomic(self, facts: Sequence[Fact]) -> list:
        prompts = [ATOMIC_PROMPT.format(fact=f.statement(), evidence=f"Evidence: {f.evidence}\n" if f.evidence else "")
                   for f in facts]
        return self._ask(prompts, lambda r: qa_pairs(r, max_pairs=2))

    def passages(self, groups: Sequence[Sequence[Fact]]) -> list:
        prompts = [PASSAGE_PROMPT.format(facts="\n".join(f"- {f.statement()}" for f in g)) for g in groups]
        return self._ask(prompts, lambda r: json_object(r, {"passage": str})["passage"].strip())

    def passage_qa(self, passages: Sequence[str], groups: Sequence[Sequence[Fact]]) -> list:
        prompts = [QUESTION_PROMPT.format(n=self.max_pairs, passage=p) for p in passages]
        return self._ask(prompts, lambda r: qa_pairs(r, max_pairs=self.max_pairs))


# ----------------------------------------------------------------------------- synthesis
def _qa_sample(task: str, qa: dict, source_ids: list[str], generator: str, **meta) -> dict:
    return make_sample("text", task, source_ids, generator=generator,
                       messages=[{"role": "user", "content": qa["question"]},
                                 {"role": "assistant", "content": qa["answer"]}], **meta)


def _lineage(facts: Iterable[Fact], nodes: Iterable[str], max_docs: int) -> list[str]:
    ids = [f"kg-node:{n}" for n in dict.fromkeys(nodes)]
    ids += [f"kg-edge:{f.edge_id}" for f in facts if f.edge_id is not None]
    docs = [d for f in facts for d in f.doc_ids]
    return ids + list(dict.fromkeys(docs))[:max_docs]


def node_names(nodes: Sequence[dict], params: KGQAParams) -> dict[int, str | None]:
    return {i: display_name(n, params) for i, n in enumerate(nodes)}


def atomic_qa(nodes: Sequence[dict], edges: Iterable[dict], writer: QAWriter, params: KGQAParams) -> Outcome:
    """Atomic QA samples from node records (nodes.jsonl order = node index) and edge records."""
    out = Outcome()
    names = node_names(nodes, params)
    facts: list[Fact] = []
    lineage: list[list[str]] = []
    if params.node_qa:
        for i, n in enumerate(nodes):
            if not n.get("degree", 1):
                continue             # isolated nodes carry no corpus-backed knowledge beyond the name
            if names[i] is None:
                out.reject("bad_node_name", "empty, a list fragment or too long", {"node": n.get("norm")})
                continue
            if not n.get("type"):
                out.reject("missing_attribute", "node has no type", {"node": n.get("norm")})
                continue
            facts.append(Fact(names[i], "is_a", str(n["type"])))
            lineage.append([f"kg-node:{n.get('norm', names[i])}"])
    for e in edges:
        loc = {"edge": e.get("id"), "relation": e.get("relation")}
        if e.get("relation") not in params.relations:
            out.reject("relation_excluded", f"relation {e.get('relation')!r} not in params.relations", loc)
            continue
        if names.get(e.get("head_idx")) is None or names.get(e.get("tail_idx")) is None:
            out.reject("bad_node_name", "head or tail name unusable", loc)
            continue
        f = edge_fact(e, names)
        facts.append(f)
        lineage.append(_lineage([f], [nodes[e["head_idx"]].get("norm", f.head),
                                      nodes[e["tail_idx"]].get("norm", f.tail)], params.max_docs_per_sample))
    for f, src, res in zip(facts, lineage, writer.atomic(facts)):
        loc = {"fact": f.statement(), "edge": f.edge_id}
        if isinstance(res, dict) and "failure" in res:
            out.reject("llm_failed", res["failure"]["detail"], {**loc, "failure": res["failure"]})
            continue
        for qa in res:
            out.kept.append(_qa_sample("atomic_qa", qa, src, writer.name, relation=f.relation,
                                       edge_id=f.edge_id))
    return out


def walk_facts(graph: GraphLike, walk, names: dict[int, str | None], params: KGQAParams) -> tuple[list[Fact], list[str]]:
    """Distinct usable facts along a walk (in walk order, largest connected group) and their node norms."""
    facts, seen = [], set()
    for eid in walk.edges:
        if eid in seen or len(facts) >= params.max_facts:
            continue
        seen.add(eid)
        e = graph.edge(int(eid))
        if e.get("relation") in params.relations and names.get(e["head_idx"]) and names.get(e["tail_idx"]):
            facts.append(edge_fact({**e, "id": e.get("id", int(eid))}, names))
    facts = largest_component(facts)
    keep = {f.head for f in facts} | {f.tail for f in facts}
    norms = [graph.nodes[int(n)].get("norm", str(n)) for n in walk.nodes if names.get(int(n)) in keep]
    return facts, norms


def largest_component(facts: Sequence[Fact]) -> list[Fact]:
    """The facts of the largest entity-connected group (first such group on ties), in input order.
    A walk that crossed an excluded relation (co-occurrence) would otherwise stitch unrelated facts
    into one passage."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for f in facts:
        parent[find(f.head)] = find(f.tail)
    sizes: dict[str, int] = defaultdict(int)
    for f in facts:
        sizes[find(f.head)] += 1
    if not sizes:
        return []
    best = max(sizes, key=lambda r: (sizes[r], -next(i for i, f in enumerate(facts) if find(f.head) == r)))
    return [f for f in facts if find(f.head) == best]


def aggregated_qa(graph: GraphLike, writer: QAWriter, params: KGQAParams, seed: int) -> Outcome:
    """Passages and multi-fact QA from `params.walks` seeded random walks. Starts are drawn uniformly
    among nodes with a usable name and at least one edge, so every entity is equally likely to seed a
    passage whatever its degree (hubs still appear, as neighbours)."""
    out = Outcome()
    names = node_names(graph.nodes, params)
    starts = [i for i, nm in names.items() if nm and graph.degree(i) > 0]
    if not starts:
        out.reject("empty_graph", "no node with a usable name and an edge", {"nodes": len(graph.nodes)})
        return out
    rng = np.random.default_rng(seed)
    groups, lineages = [], []
    for k in range(params.walks):
        start = starts[int(rng.integers(len(starts)))]
        walk = graph.random_walk(start, params.walk_length, rng)
        facts, norms = walk_facts(graph, walk, names, params)
        if len(facts) < params.min_facts:
            out.reject("walk_too_short", f"{len(facts)} connected usable fact(s) < min_facts {params.min_facts}",
                       {"walk": k, "start": graph.nodes[start].get("norm")})
            continue
        groups.append(facts)
        lineages.append(_lineage(facts, norms, params.max_docs_per_sample))
    passages = writer.passages(groups)
    ok = [i for i, p in enumerate(passages) if isinstance(p, str) and p.strip()]
    ok_set = set(ok)
    for i, p in enumerate(passages):
        if i not in ok_set:
            fail = p.get("failure") if isinstance(p, dict) else {"detail": "empty passage"}
            out.reject("llm_failed", f"passage: {fail['detail']}", {"facts": [f.statement() for f in groups[i]],
                                                                    "failure": fail})
    qas = writer.passage_qa([passages[i] for i in ok], [groups[i] for i in ok])
    for i, res in zip(ok, qas):
        meta = {"facts": len(groups[i]), "relations": sorted({f.relation for f in groups[i]})}
        out.kept.append(make_sample("text", "passage", lineages[i], text=passages[i], generator=writer.name, **meta))
        if isinstance(res, dict) and "failure" in res:
            out.reject("llm_failed", f"questions: {res['failure']['detail']}",
                       {"passage": passages[i][:300], "failure": res["failure"]})
            continue
        if not res:
            out.reject("no_multi_fact_question", "the facts share no entity and no relation list",
                       {"passage": passages[i][:300]})
            continue
        for qa in res:
            out.kept.append(_qa_sample("aggregated_qa", qa, lineages[i], writer.name, **meta))
    return out
