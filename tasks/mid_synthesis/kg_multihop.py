"""KG-guided multi-hop QA (paper §4.1.1): weak entities -> long random walks -> masked-chain questions.

    from tasks.knowledge_graph.graph import KnowledgeGraph
    from tasks.mid_synthesis.kg_multihop import MultiHopParams, TypedGraph, LocalHopChooser, multihop_qa
    typed = TypedGraph.from_kg(KnowledgeGraph.load("data/kg"), MultiHopParams().relations)
    out = multihop_qa(typed, probe, MultiHopParams(), seed=1234)      # GateOutcome, family kg_multihop
    chains = [s["meta"]["chain"] for s in out.kept]                   # chain_record(...) per kept chain

Pipeline (one candidate = one probed entity; every drop is a rejection with its gate):
1. weak   -- entities with >= `min_typed_degree` typed edges (seeded sample of `max_probe_entities`) get one
             atomic `ChoiceQuestion` each from one of their typed edges ("Which of the following is a
             treatment for X?": gold = the other end, distractors = nodes of the gold's type that X does
             NOT have that relation with); `probe.pass_at_k` scores them; weak = pass@k < `weak_below`.
2. walk   -- from each weak entity a walk of `min_hops`..`max_hops` hops over typed edges only
             (co-occurrence is statistics, never a hop), no revisits; when stuck it restarts from the start
             with the dead end barred, up to `max_restarts`. A `HopChooser` picks each next hop: Local =
             weighted draw, weight = edge weight x reviewed precision of the edge's kind/relation (when the
             graph was built with `load_edge_precision`) / typed_degree(neighbour)^`degree_alpha`; LLM = the
             LLM picks the most informative candidate among numbered ones. Terminal node = the answer.
3. answerable -- the question names the start and describes each later entity only by a clue (its type,
             optionally its tree class: "a chemical in the 'propranolol' class"). A set traversal from the
             start applying every hop's relation + direction + clue over ALL typed edges of the graph must
             end in exactly {terminal}; clues start at the most specific class that leaks no hidden name and
             are then coarsened one hop at a time while the answer stays unique (harder, still determined).
4. difficulty -- pass@k of the probe on the chain as a ChoiceQuestion (answer + same-type distractors)
             must lie in [difficulty_lo, difficulty_hi].
5. write  -- a `ReasoningWriter` states the chain hop by hop with each edge's provenance sentence quoted.
6. quality -- a `QualityJudge`: Local = code checks (every hop has a provenance sentence, no masked name or
             the answer in the question, length bounds, no duplicate question); LLM = the same checks, then
             an LLM verdict on the ones that pass.

Why prefer low-degree neighbours (`degree_alpha`): the typed graph's hubs are generic ("Drug Therapy",
"Rehabilitation": ~575 edges each) or extraction noise ("lead" the verb, "T"); a chain through them states
nothing specific, and the set traversal explodes at a hub, so the answer stops being unique. Weighting by
1/degree keeps chains on specific entities and is what makes the answerable yield usable (measured in
the report of the stage). Why edges with a provenance sentence only (`require_evidence`): the gold
reasoning quotes one per hop; the answerable traversal still uses every typed edge, since a reader's
knowledge is not limited to quotable facts.

Roles (each Local and LLM behind one Protocol): HopChooser, ReasoningWriter, QualityJudge. The Local
writer is a template over the graph path (the path itself is the reasoning chain the paper asks for;
only its wording is a template); LLM failures are rejections with the reply recorded, never crashes.
`chain_record(chain)` is the engine-neutral form of a kept chain (agentic search answers these).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasks.cpt_synthesis.kg_qa import DEFAULT_RELATIONS, TEMPLATES, KGQAParams, display_name
from tasks.llm.ask import ask_parsed, json_object
from tasks.llm.parsing import ParseError
from tasks.mapping.automaton import key_of, spaced
from tasks.mid_synthesis.experts import ChoiceQuestion, stable_seed
from tasks.mid_synthesis.samples import GateOutcome, mid_sample, sample_id

FAMILY = "kg_multihop"
PHASE = 2                       # long-horizon deduction: >5 chained facts
TYPE_WORDS = {"Disease": "disease", "Chemical": "chemical", "Gene": "gene", "Anatomy": "anatomical structure",
              "Symptom": "symptom", "Procedure": "procedure", "Test": "test", "Organism": "organism"}
REPAIR = "That reply could not be used ({problem}). Answer again with only the JSON described above."


@dataclasses.dataclass
class MultiHopParams:
    relations: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_RELATIONS))
    max_probe_entities: int = 300    # seeded sample of candidate entities probed with atomic questions
    min_typed_degree: int = 2        # a candidate needs this many typed edges (one to probe, one to leave by)
    weak_below: float = 0.5          # weak entity: atomic pass@k below this
    n_options: int = 4               # options of the probe questions (gold + distractors)
    min_hops: int = 6                # paper: paths "exceeding 5 hops"
    max_hops: int = 6
    max_restarts: int = 10           # back to the start when stuck, the dead end barred
    walk_attempts: int = 3           # walks per weak entity until one is answerable
    degree_alpha: float = 1.0        # Local chooser: p ~ weight / typed_degree(next)^alpha (module docstring)
    max_node_degree: int = 150       # hubs above this never join a chain (generic: "Drug Therapy")
    require_evidence: bool = True    # hops only along edges with a provenance sentence
    clue_depth: int = 2              # deepest tree_path level a clue may name (0 = type only)
    coarsen_clues: bool = True       # coarsen clues while the answer stays unique
    max_frontier: int = 5000         # set traversal bound (beyond it: ambiguous)
    difficulty_lo: float = 0.0       # the answer is graph-verified: a question no sample solves is kept
    difficulty_hi: float = 0.75      # one the probe mostly solves teaches little
    min_question_chars: int = 80
    max_question_chars: int = 2500
    max_reasoning_chars: int = 6000
    max_evidence_chars: int = 400    # a quoted provenance sentence is cut beyond this
    max_llm_candidates: int = 12     # LLM chooser: candidates shown (best by the Local weight)
    max_tokens: int = 512            # LLM reply budget

    def __post_init__(self):
        unknown = sorted(set(self.relations) - set(TEMPLATES) | ({"co_occurs_with"} & set(self.relations)))
        if unknown:
            raise ValueError(f"relations: {unknown} are not typed relations with templates")
        if not 1 <= self.min_hops <= self.max_hops or self.n_options < 2:
            raise ValueError("1 <= min_hops <= max_hops and n_options >= 2 are required")
        if not 0.0 <= self.difficulty_lo <= self.difficulty_hi <= 1.0:
            raise ValueError("0 <= difficulty_lo <= difficulty_hi <= 1 is required")


# ----------------------------------------------------------------------------- typed graph
@dataclasses.dataclass(frozen=True)
class Arc:
    node: int           # the neighbour
    edge: int
    relation: str
    forward: bool       # True: the current node is the edge's head
    directed: bool
    weight: float
    evidence: bool      # the edge keeps at least one provenance sentence
    precision: float = 1.0   # reviewed precision of the edge's (kind, relation), `load_edge_precision`


class TypedGraph:
    """The typed-relation part of the KG as adjacency lists (co-occurrence and unknown relations left
    out), with display names, types and tree paths per node. Built from node and edge records (edge id =
    its `id`, else its position), or from the kg stage's loader with `from_kg`."""

    def __init__(self, nodes: Sequence[dict], edges: Iterable[dict], relations: Sequence[str] = DEFAULT_RELATIONS,
                 name_params: KGQAParams | None = None, precision: dict[str, float] | None = None,
                 default_precision: float = 0.7):
        self.nodes = list(nodes)
        self.relations = tuple(relations)
        names = name_params or KGQAParams()
        self.names: list[str | None] = [display_name(n, names) for n in self.nodes]
        self.types = [str(n.get("type") or "") for n in self.nodes]
        self.paths = [list(n.get("tree_path") or []) for n in self.nodes]
        self.adj: list[list[Arc]] = [[] for _ in self.nodes]
        self.edges: dict[int, dict] = {}
        for pos, e in enumerate(edges):
            if e.get("relation") not in self.relations or e.get("kind") == "cooccurrence":
                continue
            eid = int(e.get("id", pos))
            self.edges[eid] = e
            sents = (e.get("provenance") or {}).get("sentences") or []
            ev = any(isinstance(s, dict) and str(s.get("text", "")).strip() for s in sents)
            directed, w = bool(e.get("directed", True)), float(e.get("weight", 1.0))
            h, t = int(e["head_idx"]), int(e["tail_idx"])
            p = 1.0 if precision is None else precision.get(f"{e.get('kind')}/{e['relation']}", default_precision)
            self.adj[h].append(Arc(t, eid, e["relation"], True, directed, w, ev, p))
            self.adj[t].append(Arc(h, eid, e["relation"], False, directed, w, ev, p))
        for row in self.adj:
            row.sort(key=lambda a: (a.edge, a.forward))
        self.degree = [len(row) for row in self.adj]

    @classmethod
    def from_kg(cls, kg, relations: Sequence[str] = DEFAULT_RELATIONS, name_params: KGQAParams | None = None,
                precision: dict[str, float] | None = None) -> TypedGraph:
        """From tasks.knowledge_graph.graph.KnowledgeGraph (every edge sits twice in its CSR)."""
        return cls(kg.nodes, (kg.edge(i) for i in range(len(kg.edge_ids) // 2)), relations, name_params, precision)

    def norm(self, i: int) -> str:
        return str(self.nodes[i].get("norm", i))

    def evidence(self, edge_id: int, max_chars: int = 400) -> tuple[str, str]:
        """(sentence, doc id) quoted for an edge: the first sentence naming both ends, else the first
        short one, else the first (cut); ("", "") when the edge keeps none."""
        e = self.edges[edge_id]
        sents = [s for s in (e.get("provenance") or {}).get("sentences") or []
                 if isinstance(s, dict) and str(s.get("text", "")).strip()]
        if not sents:
            return "", ""
        keys = [key_of(self.names[i] or self.norm(i)) for i in (e["head_idx"], e["tail_idx"])]

        def rank(j: int) -> tuple:
            text = " ".join(str(sents[j]["text"]).split())
            both = all(k in spaced(text) for k in keys)
            return (not both, len(text) > max_chars, j)

        best = sents[min(range(len(sents)), key=rank)]
        text = " ".join(str(best["text"]).split())
        if len(text) > max_chars:
            text = text[:max_chars - 1].rsplit(" ", 1)[0] + "…"
        return text, str(best.get("doc_id") or "")

    def statement(self, edge_id: int) -> str:
        """The edge as a sentence in the direction it was stated (TEMPLATES[relation][0])."""
        e = self.edges[edge_id]
        h, t = (self.names[e["head_idx"]] or self.norm(e["head_idx"]), self.names[e["tail_idx"]] or self.norm(e["tail_idx"]))
        s = TEMPLATES[e["relation"]][0].format(h=h, t=t)
        return s[:1].upper() + s[1:]


def load_edge_precision(path: str | Path) -> dict[str, float]:
    """{"kind/relation": precision} from the kg stage's reviewed edge labels (data/kg/edge_precision.json,
    review.kept.by_kind_relation); {} when the file is missing. Why: medquad caused_by edges are right
    about half the time, pattern located_in always: walks and path ranking should know that."""
    path = Path(path)
    if not path.exists():
        return {}
    table = json.loads(path.read_text()).get("review", {}).get("kept", {}).get("by_kind_relation", {})
    return {f"{k}/{r}": float(v["precision"]) for k, rels in sorted(table.items()) for r, v in sorted(rels.items())
            if isinstance(v, dict) and "precision" in v}


def relation_clue(arc: Arc, ref: str) -> str:
    """What the neighbour reached through `arc` is, relative to `ref` (the current node's mention):
    "a treatment for asthma" (forward), "a condition treated with E1" (backward)."""
    _, _, _, clue_tail, clue_head = TEMPLATES[arc.relation]
    text = clue_tail.format(h=ref, t=ref) if arc.forward or not arc.directed else clue_head.format(h=ref, t=ref)
    return _MASKED_THE.sub(r"\1", text)        # "a condition of the E2" -> "a condition of E2"


_MASKED_THE = re.compile(r"\bthe (E\d+|the answer)\b")


def _a(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


# ----------------------------------------------------------------------------- probe (weak entities)
class Probe(Protocol):
    """What the current checkpoint knows: pass@k per multiple-choice question (experts.ChoiceProbe)."""

    def pass_at_k(self, questions: Sequence[ChoiceQuestion]) -> list[float]: ...


def _linked(g: TypedGraph, x: int, relation: str) -> set[int]:
    return {a.node for a in g.adj[x] if a.relation == relation}


def _distractors(g: TypedGraph, pools: dict[str, list[int]], typ: str, exclude: set[int], avoid_names: set[str],
                 n: int, rng: np.random.Generator) -> list[int]:
    """`n` seeded nodes of type `typ` with usable, distinct names, none in `exclude`."""
    pool = pools.get(typ, [])
    out: list[int] = []
    names = set(avoid_names)
    if not pool:
        return out
    for j in rng.permutation(len(pool))[: 8 * n + 16].tolist():
        v = pool[j]
        nm = (g.names[v] or "").casefold()
        if v in exclude or nm in names:
            continue
        out.append(v)
        names.add(nm)
        if len(out) == n:
            break
    return out


def type_pools(g: TypedGraph) -> dict[str, list[int]]:
    pools: dict[str, list[int]] = {}
    for i, t in enumerate(g.types):
        if g.degree[i] and g.names[i]:
            pools.setdefault(t, []).append(i)
    return pools


def _choice(question: str, gold: int, distractors: list[int], g: TypedGraph, rng: np.random.Generator,
            qid: str) -> ChoiceQuestion:
    opts = [g.names[v] or "" for v in distractors]
    pos = int(rng.integers(len(opts) + 1))
    opts.insert(pos, g.names[gold] or "")
    return ChoiceQuestion(question, tuple(opts), pos, id=qid)


def atomic_question(g: TypedGraph, x: int, pools: dict[str, list[int]], params: MultiHopParams,
                    seed: int) -> ChoiceQuestion | None:
    """One atomic multiple-choice question about entity `x` from one of its typed edges (seeded), or
    None when no edge has a usable other end or enough same-type distractors."""
    rng = np.random.default_rng(stable_seed(seed, "atomic", g.norm(x)))
    arcs = [a for a in g.adj[x] if g.names[a.node] and a.node != x]
    for j in rng.permutation(len(arcs)).tolist():
        a = arcs[j]
        linked = _linked(g, x, a.relation) | {x}
        ds = _distractors(g, pools, g.types[a.node], linked, {(g.names[x] or "").casefold(),
                                                               (g.names[a.node] or "").casefold()},
                          params.n_options - 1, rng)
        if len(ds) == params.n_options - 1:
            q = f"Which of the following is {relation_clue(a, g.names[x] or g.norm(x))}?"
            return _choice(q, a.node, ds, g, rng, f"kg-node:{g.norm(x)}")
    return None


# ----------------------------------------------------------------------------- hop choosers
@dataclasses.dataclass(frozen=True)
class HopStep:
    """One choice: the path so far (node indices, arcs) and the candidate next arcs; `u` is the walk's
    seeded uniform draw for this step (Local uses it, so batching never changes a walk)."""
    nodes: tuple[int, ...]
    arcs: tuple[Arc, ...]
    candidates: tuple[Arc, ...]
    u: float


class HopChooser(Protocol):
    name: str

    def choose(self, g: TypedGraph, steps: Sequence[HopStep]) -> list[int | dict]:
        """Per step the index of the chosen candidate, or {"failure": ...}."""
        ...


def local_weights(g: TypedGraph, cands: Sequence[Arc], alpha: float) -> np.ndarray:
    """weight x reviewed precision / typed_degree^alpha: likely-true, specific hops first."""
    return np.array([a.weight * a.precision / max(g.degree[a.node], 1) ** alpha for a in cands], dtype=np.float64)


class LocalHopChooser:
    """Weighted draw: p ~ edge weight x precision / typed_degree(neighbour)^alpha (module docstring)."""
    name = "local"

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def choose(self, g: TypedGraph, steps: Sequence[HopStep]) -> list[int]:
        out = []
        for s in steps:
            cum = np.cumsum(local_weights(g, s.candidates, self.alpha))
            out.append(min(int(np.searchsorted(cum, s.u * cum[-1], side="right")), len(cum) - 1))
        return out


HOP_SYSTEM = "You are a medical knowledge engineer. You answer only with JSON."
HOP_PROMPT = ("We are building a chain of medical facts that starts at {start}.\nChain so far:\n{chain}\n"
              "Candidate next facts:\n{cands}\nPick the candidate that is clinically valid and most informative "
              "(specific, not generic) as the next link of the chain.\n"
              'Reply with only JSON: {{"choice": <candidate number>}}')


class LLMHopChooser:
    """The paper's LLM-based next-hop sampling: numbered candidates (at most `max_candidates`, the best
    by the Local weight), the LLM names one."""
    name = "llm"

    def __init__(self, client, max_candidates: int = 12, alpha: float = 1.0, max_tokens: int = 64):
        self.client, self.max_candidates, self.alpha, self.max_tokens = client, max_candidates, alpha, max_tokens

    def choose(self, g: TypedGraph, steps: Sequence[HopStep]) -> list[int | dict]:
        chats, shown = [], []
        for s in steps:
            w = local_weights(g, s.candidates, self.alpha)
            top = sorted(range(len(w)), key=lambda i: (-w[i], i))[: self.max_candidates]
            shown.append(top)
            chain = "\n".join(f"- {g.statement(a.edge)}" for a in s.arcs) or "- (nothing yet)"
            cands = "\n".join(f"{k + 1}. {g.statement(s.candidates[i].edge)}" for k, i in enumerate(top))
            chats.append([{"role": "system", "content": HOP_SYSTEM},
                          {"role": "user", "content": HOP_PROMPT.format(start=g.names[s.nodes[0]], chain=chain,
                                                                        cands=cands)}])
        answers = ask_parsed(self.client, chats, _parse_choice, REPAIR, max_tokens=self.max_tokens)
        out: list[int | dict] = []
        for top, a in zip(shown, answers):
            if a.ok and a.value > len(top):
                out.append({"failure": {"kind": "unparseable", "detail": f"choice {a.value} > {len(top)} candidates"}})
            else:
                out.append(top[a.value - 1] if a.ok else {"failure": a.failure})
        return out


def _parse_choice(reply: str) -> int:
    k = json_object(reply, {"choice": int})["choice"]
    if isinstance(k, bool) or k < 1:
        raise ParseError(f"choice {k!r} is not a candidate number", reply)
    return k


# ----------------------------------------------------------------------------- walks
@dataclasses.dataclass
class _Walker:
    start: int
    length: int
    rng: np.random.Generator
    nodes: list[int]
    arcs: list[Arc]
    dead: set[int] = dataclasses.field(default_factory=set)
    restarts: int = 0
    failure: tuple[str, str] | None = None

    @property
    def done(self) -> bool:
        return self.failure is not None or len(self.arcs) == self.length


def stem(name: str) -> str:
    """A crude identity key for "the same entity twice": folded words, a plural -s dropped
    ("hernias" = "hernia")."""
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
                    for w in key_of(name).split())


def _candidates(g: TypedGraph, w: _Walker, params: MultiHopParams) -> list[Arc]:
    """Usable next arcs: typed, not back to a node of the path (by index or by name stem), not a dead end,
    not a hub, quotable, and not an entity the start's name already says ("bronchitis" from "acute
    bronchitis" would leak a masked name)."""
    seen = set(w.nodes)
    stems = {stem(g.names[v] or "") for v in w.nodes}
    start = spaced(g.names[w.start] or "")
    return [a for a in g.adj[w.nodes[-1]]
            if a.node not in seen and a.node not in w.dead and g.names[a.node]
            and g.degree[a.node] <= params.max_node_degree and (a.evidence or not params.require_evidence)
            and stem(g.names[a.node]) not in stems and key_of(g.names[a.node]) not in start]


def random_walks(g: TypedGraph, starts: Sequence[int], chooser: HopChooser, params: MultiHopParams,
                 seed: int, attempt: int = 0) -> list[_Walker]:
    """One walk per start, advanced in lockstep so an LLM chooser gets one batch per step. Seeded per
    (seed, start, attempt): a walk does not depend on the other walks of the batch."""
    walkers = []
    for s in starts:
        rng = np.random.default_rng(stable_seed(seed, "walk", g.norm(s), attempt))
        length = int(rng.integers(params.min_hops, params.max_hops + 1))
        walkers.append(_Walker(s, length, rng, [s], []))
    while True:
        steps, owners = [], []
        for w in walkers:
            while not w.done:
                cands = _candidates(g, w, params)
                if cands:
                    steps.append(HopStep(tuple(w.nodes), tuple(w.arcs), tuple(cands), float(w.rng.random())))
                    owners.append(w)
                    break
                if len(w.nodes) == 1:
                    w.failure = ("no_exit", "no usable typed edge leaves the start")
                elif w.restarts >= params.max_restarts:
                    w.failure = ("dead_end", f"stuck after {w.restarts} restarts (best {len(w.arcs)} hops)")
                else:                 # restart from the start; the node we got stuck at stays barred
                    w.dead.add(w.nodes[-1])
                    w.restarts += 1
                    w.nodes, w.arcs = [w.start], []
        if not steps:
            return walkers
        for w, s, pick in zip(owners, steps, chooser.choose(g, steps)):
            if isinstance(pick, dict):
                w.failure = ("llm_failed", str(pick["failure"].get("detail", ""))[:300])
                continue
            a = s.candidates[pick]
            w.nodes.append(a.node)
            w.arcs.append(a)


# ----------------------------------------------------------------------------- clues and answerability
@dataclasses.dataclass(frozen=True)
class Clue:
    type: str
    level: int                       # 0: type only; k: tree_path[k] must match
    label: str = ""

    def text(self) -> str:
        word = TYPE_WORDS.get(self.type, self.type.lower() or "entity")
        return _a(word) + (f" in the '{self.label}' class" if self.level else "")

    def matches(self, g: TypedGraph, v: int) -> bool:
        if g.types[v] != self.type:
            return False
        return not self.level or (len(g.paths[v]) > self.level and g.paths[v][self.level] == self.label)


def clue_for(g: TypedGraph, v: int, level: int) -> Clue:
    return Clue(g.types[v], level, g.paths[v][level] if level else "")


def clue_levels(g: TypedGraph, v: int, hidden_keys: Sequence[str], depth: int) -> list[int]:
    """The tree levels (<= depth, deepest first, 0 = type only always) whose label names none of the
    hidden entities: a class label may be another entity's name ("neurological disorder")."""
    levels = [lv for lv in range(min(depth, len(g.paths[v]) - 1), 0, -1)
              if not any(k in spaced(g.paths[v][lv]) for k in hidden_keys)]
    return levels + [0]


def traverse(g: TypedGraph, start: int, arcs: Sequence[Arc], clues: Sequence[Clue], max_frontier: int) -> set[int] | None:
    """Every node a reader can reach from `start` by applying, hop by hop, the arc's relation and direction
    and the clue, over all typed edges; None once a frontier exceeds `max_frontier`."""
    frontier = {start}
    for arc, clue in zip(arcs, clues):
        nxt: set[int] = set()
        for u in frontier:
            for a in g.adj[u]:
                if a.relation == arc.relation and (a.forward == arc.forward or not arc.directed) \
                        and clue.matches(g, a.node):
                    nxt.add(a.node)
        if len(nxt) > max_frontier:
            return None
        frontier = nxt
    return frontier


def fit_clues(g: TypedGraph, nodes: Sequence[int], arcs: Sequence[Arc], params: MultiHopParams
              ) -> tuple[list[Clue] | None, str, str]:
    """(clues, "", "") when the chain determines its terminal uniquely, else (None, reason, detail).
    Clues start at the deepest non-leaking level and are coarsened hop by hop while still unique."""
    hidden = [key_of(g.names[v] or g.norm(v)) for v in nodes[1:]]
    allowed = [clue_levels(g, v, hidden, params.clue_depth) for v in nodes[1:]]
    pick = [0] * len(allowed)            # position in allowed[i]: 0 = the deepest non-leaking level

    def result(p: list[int]) -> set[int] | None:
        return traverse(g, nodes[0], arcs, [clue_for(g, v, al[k]) for v, al, k in zip(nodes[1:], allowed, p)],
                        params.max_frontier)

    end = result(pick)
    if end is None:
        return None, "frontier_overflow", f"a frontier exceeded {params.max_frontier} nodes"
    if end != {nodes[-1]}:
        return None, "ambiguous", f"{len(end)} entities satisfy the chain"
    if params.coarsen_clues:
        for i in range(len(pick)):
            while pick[i] + 1 < len(allowed[i]):
                trial = pick[:i] + [pick[i] + 1] + pick[i + 1:]
                if result(trial) != {nodes[-1]}:
                    break
                pick = trial
    levels = [al[k] for al, k in zip(allowed, pick)]
    return [clue_for(g, v, k) for v, k in zip(nodes[1:], levels)], "", ""


# ----------------------------------------------------------------------------- chains
@dataclasses.dataclass
class Chain:
    nodes: list[int]
    arcs: list[Arc]
    clues: list[Clue]
    question: str = ""
    answer: str = ""
    evidence: list[tuple[str, str]] = dataclasses.field(default_factory=list)   # (sentence, doc id) per hop
    restarts: int = 0


def mention(i: int, n_hops: int) -> str:
    return "the answer" if i == n_hops else f"E{i}"


def render_question(g: TypedGraph, chain: Chain) -> str:
    """The start named, every later entity masked as E1.. / "the answer" with its clue, each hop phrased
    with the relation templates (TEMPLATES clue columns)."""
    n = len(chain.arcs)
    lines = [f"Start from {g.names[chain.nodes[0]]}. Each clue below introduces a new entity:"]
    for i, (arc, clue) in enumerate(zip(chain.arcs, chain.clues), start=1):
        prev = g.names[chain.nodes[0]] if i == 1 else mention(i - 1, n)
        who = mention(i, n)
        lines.append(f"{i}. {who[:1].upper() + who[1:]} ({clue.text()}) is {relation_clue(arc, prev)}.")
    lines.append(f"Which {TYPE_WORDS.get(chain.clues[-1].type, 'entity')} is the answer? "
                 "Reason step by step, then give the answer.")
    return "\n".join(lines)


def chain_steps(g: TypedGraph, chain: Chain) -> list[Step]:
    n = len(chain.arcs)
    out = []
    for i, (arc, (sent, doc)) in enumerate(zip(chain.arcs, chain.evidence), start=1):
        v = chain.nodes[i]
        note = f"{g.names[v]} is {chain.clues[i - 1].text()}, so {mention(i, n)} is {g.names[v]}."
        out.append(Step(g.statement(arc.edge), sent, doc, note))
    return out


def chain_record(g: TypedGraph, chain: Chain) -> dict:
    """{id, question, answer, hops: [{head, relation, tail, direction, sentence, doc_id, edge_id}]}: a kept
    chain in a form any engine can use (head/tail as the edge states them; direction: how the chain
    traverses it)."""
    hops = []
    for arc, (sent, doc) in zip(chain.arcs, chain.evidence):
        e = g.edges[arc.edge]
        hops.append({"head": g.names[e["head_idx"]] or g.norm(e["head_idx"]), "relation": arc.relation,
                     "tail": g.names[e["tail_idx"]] or g.norm(e["tail_idx"]),
                     "direction": "forward" if arc.forward else "backward", "sentence": sent, "doc_id": doc,
                     "edge_id": arc.edge})
    rid = sample_id("kg_chain", "|".join(map(str, chain.nodes)), "|".join(str(a.edge) for a in chain.arcs),
                    chain.question).replace("mid-kg_chain-", "kgchain-")
    return {"id": rid, "question": chain.question, "answer": chain.answer, "hops": hops}


# ----------------------------------------------------------------------------- reasoning writers
@dataclasses.dataclass(frozen=True)
class Step:
    statement: str      # the fact in words
    evidence: str       # the provenance sentence quoted for it ("" when the edge keeps none)
    doc_id: str
    note: str = ""      # what the step establishes in the question's terms


@dataclasses.dataclass(frozen=True)
class WriteRequest:
    question: str
    answer: str                          # what the reasoning must conclude
    paths: tuple[tuple[Step, ...], ...]  # one chain (multi-hop) or several paths (kg_paths)
    intro: str = ""
    conclusion: str = ""                 # the closing line; default "Therefore, the answer is <answer>."


class ReasoningWriter(Protocol):
    name: str

    def write(self, requests: Sequence[WriteRequest]) -> list[str | dict]:
        """Per request the reasoning text, or {"failure": ...}."""
        ...


def _quote(step: Step) -> str:
    return f' Evidence ({step.doc_id}): "{step.evidence}"' if step.evidence else ""


class LocalReasoningWriter:
    """A template over the graph path: each step states its fact, quotes its evidence and says what it
    establishes, then the conclusion. The facts and their order are the graph's; the wording is fixed."""
    name = "local"

    def write(self, requests: Sequence[WriteRequest]) -> list[str]:
        out = []
        for r in requests:
            lines = [r.intro] if r.intro else []
            for p, path in enumerate(r.paths, start=1):
                if len(r.paths) > 1:
                    lines.append(f"Path {p}:")
                for i, s in enumerate(path, start=1):
                    lines.append(f"Step {i}. {s.statement}{_quote(s)}" + (f" {s.note}" if s.note else ""))
            lines.append(r.conclusion or f"Therefore, the answer is {r.answer}.")
            out.append("\n".join(lines))
        return out


WRITE_SYSTEM = ("You are a medical expert who explains reasoning step by step. You answer only with JSON.")
WRITE_PROMPT = ("Question:\n{question}\n\nVerified facts, each with its source sentence:\n{facts}\n\n"
                "Correct answer: {answer}\n\nWrite the step-by-step reasoning that solves the question using these "
                "facts, quoting the source sentence of each fact you use, and ending with the correct answer. "
                "Reason forward from the question; do not say the answer was given and do not mention a graph.\n"
                'Reply with only JSON: {{"reasoning": "..."}}')


class LLMReasoningWriter:
    """The paper's path-conditioned trajectory: the LLM writes the reasoning from the verified facts."""
    name = "llm"

    def __init__(self, client, max_tokens: int = 768):
        self.client, self.max_tokens = client, max_tokens

    def write(self, requests: Sequence[WriteRequest]) -> list[str | dict]:
        chats = []
        for r in requests:
            facts = "\n".join(f"- {s.statement}" + (f' Source: "{s.evidence}"' if s.evidence else "")
                              for path in r.paths for s in path)
            chats.append([{"role": "system", "content": WRITE_SYSTEM},
                          {"role": "user", "content": WRITE_PROMPT.format(question=r.question, facts=facts,
                                                                          answer=r.answer)}])
        answers = ask_parsed(self.client, chats, lambda t: json_object(t, {"reasoning": str})["reasoning"].strip(),
                             REPAIR, max_tokens=self.max_tokens)
        return [a.value if a.ok else {"failure": a.failure} for a in answers]


# ----------------------------------------------------------------------------- quality judges
@dataclasses.dataclass(frozen=True)
class JudgeItem:
    question: str
    answer: str
    reasoning: str
    steps: tuple[Step, ...]
    hidden: tuple[str, ...] = ()         # names that must not appear in the question (masked + answer)
    key: str = ""                        # duplicate key (default: the question; an image item: its id)


@dataclasses.dataclass
class QualityLimits:
    min_question_chars: int = 20
    max_question_chars: int = 4000
    max_reasoning_chars: int = 6000
    require_evidence: bool = True


class QualityJudge(Protocol):
    name: str

    def judge(self, items: Sequence[JudgeItem]) -> list[tuple[bool, str, str]]:
        """Per item (ok, reason, detail); a batch is judged together (duplicates are within it)."""
        ...


def mentions(text_key: str, phrase: str) -> bool:
    """Whether `phrase` occurs word-bounded in the text whose `key_of` is `text_key` (punctuation and
    case ignored: "Addison's disease," matches "addison s disease")."""
    k = key_of(phrase)
    return bool(k.strip()) and k in text_key


class LocalQualityJudge:
    """Code checks: evidence on every step, no hidden name in the question (word-bounded), length bounds,
    the reasoning reaches the answer, no duplicate question in the batch."""
    name = "local"

    def __init__(self, limits: QualityLimits | None = None):
        self.limits = limits or QualityLimits()

    def judge(self, items: Sequence[JudgeItem]) -> list[tuple[bool, str, str]]:
        seen: set[str] = set()
        out = []
        for it in items:
            out.append(self._one(it, seen))
        return out

    def _one(self, it: JudgeItem, seen: set[str]) -> tuple[bool, str, str]:
        lim = self.limits
        if lim.require_evidence:
            missing = [s.statement for s in it.steps if not s.evidence]
            if missing:
                return False, "missing_evidence", f"no provenance sentence for: {missing[0]}"
        q = key_of(it.question)
        leaked = [h for h in it.hidden if mentions(q, h)]
        if leaked:
            return False, "name_leak", f"the question names {leaked[0]!r}"
        if not lim.min_question_chars <= len(it.question) <= lim.max_question_chars:
            return False, "question_length", f"{len(it.question)} chars"
        if len(it.reasoning) > lim.max_reasoning_chars:
            return False, "reasoning_length", f"{len(it.reasoning)} chars"
        if key_of(it.answer).strip() and not mentions(key_of(it.reasoning), it.answer):
            return False, "answer_not_reached", "the reasoning never states the answer"
        norm = it.key or " ".join(it.question.casefold().split())
        if norm in seen:
            return False, "duplicate", it.question[:120]
        seen.add(norm)
        return True, "", ""


JUDGE_SYSTEM = "You are a strict medical reviewer. You answer only with JSON."
JUDGE_PROMPT = ("Review this question and its reasoning.\nQuestion:\n{question}\n\nReasoning:\n{reasoning}\n\n"
                "Answer: {answer}\n\nIs every reasoning step supported by its quoted evidence, medically plausible, "
                "and does the reasoning reach the answer without contradictions?\n"
                'Reply with only JSON: {{"ok": true or false, "reason": "one short sentence"}}')


class LLMQualityJudge:
    """The Local checks first (hard constraints an LLM must not overrule), then an LLM verdict."""
    name = "llm"

    def __init__(self, client, limits: QualityLimits | None = None, max_tokens: int = 128):
        self.client, self.local, self.max_tokens = client, LocalQualityJudge(limits), max_tokens

    def judge(self, items: Sequence[JudgeItem]) -> list[tuple[bool, str, str]]:
        out = self.local.judge(items)
        idx = [i for i, (ok, _, _) in enumerate(out) if ok]
        chats = [[{"role": "system", "content": JUDGE_SYSTEM},
                  {"role": "user", "content": JUDGE_PROMPT.format(question=items[i].question, answer=items[i].answer,
                                                                  reasoning=items[i].reasoning)}] for i in idx]
        if chats:
            for i, a in zip(idx, ask_parsed(self.client, chats, lambda t: json_object(t, {"ok": bool}), REPAIR,
                                            max_tokens=self.max_tokens)):
                if not a.ok:
                    out[i] = (False, "llm_failed", str(a.failure.get("detail", ""))[:300])
                elif not a.value["ok"]:
                    out[i] = (False, "llm_rejected", str(a.value.get("reason", ""))[:300])
        return out


# ----------------------------------------------------------------------------- the engine
def generator_of(*roles: Any) -> str:
    return "llm" if any(getattr(r, "name", "local") == "llm" for r in roles) else "local"


def probe_candidates(g: TypedGraph, params: MultiHopParams, seed: int) -> list[int]:
    """Entities with enough typed edges, a usable name and not a hub (generic, never a weak entity worth a
    chain): a seeded sample, in index order."""
    cands = [i for i in range(len(g.nodes))
             if params.min_typed_degree <= g.degree[i] <= params.max_node_degree and g.names[i]]
    if len(cands) > params.max_probe_entities:
        rng = np.random.default_rng(stable_seed(seed, "probe_sample"))
        cands = sorted(rng.choice(cands, size=params.max_probe_entities, replace=False).tolist())
    return cands


def multihop_qa(g: TypedGraph, probe: Probe, params: MultiHopParams, seed: int, *,
                chooser: HopChooser | None = None, writer: ReasoningWriter | None = None,
                judge: QualityJudge | None = None, stats: dict | None = None) -> GateOutcome:
    """Multi-hop QA samples from weak entities (module docstring); `stats` (if given) receives walk and
    traversal counts beyond the per-gate rejections."""
    chooser = chooser or LocalHopChooser(params.degree_alpha)
    writer = writer or LocalReasoningWriter()
    judge = judge or LocalQualityJudge(QualityLimits(params.min_question_chars, params.max_question_chars,
                                                     params.max_reasoning_chars, params.require_evidence))
    st = stats if stats is not None else {}
    out = GateOutcome()
    pools = type_pools(g)
    cands = probe_candidates(g, params, seed)
    out.read = len(cands)

    def loc(x: int) -> dict:
        return {"id": f"kg-node:{g.norm(x)}", "entity": g.names[x]}

    # 1. weak entities
    qs = {x: atomic_question(g, x, pools, params, seed) for x in cands}
    asked = [x for x in cands if qs[x] is not None]
    scores = dict(zip(asked, probe.pass_at_k([qs[x] for x in asked]))) if asked else {}
    weak = []
    for x in cands:
        if qs[x] is None:
            out.reject("weak", "no_probe_question", "no typed edge with a usable end and enough distractors", loc(x))
        elif scores[x] >= params.weak_below:
            out.reject("weak", "not_weak", f"pass@k {scores[x]:.3f} >= {params.weak_below}", loc(x))
        else:
            weak.append(x)
    st["probed"], st["weak"] = len(asked), len(weak)

    # 2-3. walks until answerable (a few attempts per entity), clues fitted by the set traversal
    chains: dict[int, Chain] = {}
    last_fail: dict[int, tuple[str, str, str]] = {}
    todo = list(weak)
    st["walks"], st["walks_complete"], st["walks_answerable"] = 0, 0, 0
    for attempt in range(max(params.walk_attempts, 1)):
        if not todo:
            break
        for w in random_walks(g, todo, chooser, params, seed, attempt):
            st["walks"] += 1
            if w.failure:
                last_fail[w.start] = ("walk", *w.failure)
                continue
            st["walks_complete"] += 1
            clues, reason, detail = fit_clues(g, w.nodes, w.arcs, params)
            if clues is None:
                last_fail[w.start] = ("answerable", reason, detail)
                continue
            st["walks_answerable"] += 1
            chains[w.start] = Chain(w.nodes, w.arcs, clues, restarts=w.restarts)
            last_fail.pop(w.start, None)
        # another attempt draws other hops; a start without any usable edge stays without
        todo = [x for x in todo if x not in chains and last_fail[x][1] != "no_exit"]
    for x in weak:
        if x not in chains:
            gate, reason, detail = last_fail[x]
            out.reject(gate, reason, detail, loc(x))
    order = [x for x in weak if x in chains]
    for x in order:
        c = chains[x]
        c.question = render_question(g, c)
        c.answer = g.names[c.nodes[-1]] or g.norm(c.nodes[-1])
        c.evidence = [g.evidence(a.edge, params.max_evidence_chars) for a in c.arcs]

    # 4. difficulty: the chain as a choice question
    mq: dict[int, ChoiceQuestion] = {}
    for x in order:
        c = chains[x]
        rng = np.random.default_rng(stable_seed(seed, "multihop_options", g.norm(x)))
        ds = _distractors(g, pools, g.types[c.nodes[-1]], set(c.nodes), {c.answer.casefold()},
                          params.n_options - 1, rng)
        if len(ds) < params.n_options - 1:
            out.reject("difficulty", "no_distractors", f"too few {g.types[c.nodes[-1]]} nodes", loc(x))
            continue
        mq[x] = _choice(c.question, c.nodes[-1], ds, g, rng, f"kg-node:{g.norm(x)}")
    order = [x for x in order if x in mq]
    hard = dict(zip(order, probe.pass_at_k([mq[x] for x in order]))) if order else {}
    kept_x = []
    for x in order:
        p = hard[x]
        if p < params.difficulty_lo:
            out.reject("difficulty", "too_hard", f"pass@k {p:.3f} < {params.difficulty_lo}", loc(x))
        elif p > params.difficulty_hi:
            out.reject("difficulty", "too_easy", f"pass@k {p:.3f} > {params.difficulty_hi}", loc(x))
        else:
            kept_x.append(x)

    # 5. reasoning
    reqs = [WriteRequest(chains[x].question, chains[x].answer, (tuple(chain_steps(g, chains[x])),),
                         intro=f"Start from {g.names[x]} and resolve the chain one entity at a time.")
            for x in kept_x]
    texts = writer.write(reqs) if reqs else []
    ready = []
    for x, r, t in zip(kept_x, reqs, texts):
        if isinstance(t, dict):
            out.reject("write", "llm_failed", str(t["failure"].get("detail", "")), loc(x))
        else:
            ready.append((x, r, t))

    # 6. quality
    items = [JudgeItem(r.question, r.answer, t, r.paths[0],
                       tuple(g.names[v] or g.norm(v) for v in chains[x].nodes[1:])) for x, r, t in ready]
    verdicts = judge.judge(items) if items else []
    gen = generator_of(chooser, writer, judge)
    for (x, r, t), (ok, reason, detail) in zip(ready, verdicts):
        if not ok:
            out.reject("quality", reason, detail, loc(x))
            continue
        c = chains[x]
        rec = chain_record(g, c)
        src = [f"kg-node:{g.norm(v)}" for v in c.nodes] + [f"kg-edge:{a.edge}" for a in c.arcs]
        src += [d for _, d in c.evidence if d]
        msgs = [{"role": "user", "content": c.question},
                {"role": "assistant", "reasoning_content": t, "content": c.answer}]
        out.kept.append(mid_sample(FAMILY, PHASE, list(dict.fromkeys(src)), msgs, answer=c.answer,
                                   answer_kind="fill", generator=gen, chain=rec, hops=len(c.arcs),
                                   start=g.names[x], probe_pass_at_k={"atomic": round(scores[x], 4),
                                                                      "multihop": round(hard[x], 4)},
                                   clues=[cl.text() for cl in c.clues], clue_levels=[cl.level for cl in c.clues],
                                   restarts=c.restarts,
                                   options=list(mq[x].options), gold_index=mq[x].gold))
    return out


def chain_records(outcome: GateOutcome) -> list[dict]:
    """The chain record of every kept sample, in order."""
    return [s["meta"]["chain"] for s in outcome.kept]

