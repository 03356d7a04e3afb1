"""KG-verifiable reasoning for existing QA pairs (paper §4.1.1): map, connect, re-rank, write on the paths.

    from tasks.mid_synthesis.kg_multihop import TypedGraph, load_edge_precision
    from tasks.mid_synthesis.kg_paths import KGPathsParams, build_matcher, kg_paths, load_huatuo, ...
    g = TypedGraph.from_kg(KnowledgeGraph.load("data/kg"), precision=load_edge_precision("data/kg/edge_precision.json"))
    matcher = build_matcher(g, params.stop_keys)
    items = load_vqa_rad(path, 200, seed) + load_medquad("data/quality/kept", 200, seed) + ...
    out = kg_paths(items, g, matcher, KGPathsParams(), seed=1234)       # GateOutcome, family kg_paths

A QA item is a dict {id, question, answer, answer_kind, options?, source, images?, source_ids?, context?}
(context: words the question implies without saying them, e.g. the region of a VQA-RAD image); loaders
for VQA-RAD train, MedQuAD (corpus documents), the KG atomic QA samples and the HuatuoGPT-o1 sample give
bounded, seeded lists of them. Per item (one candidate each; every drop is a rejection with its gate):
1. mapping -- question and answer entities are found by the project's word-bounded Aho-Corasick matcher
             (tasks/mapping/automaton.py) over the names and norms of typed KG nodes; answer entities are
             those of the gold answer not already in the question, and for a choice/fill answer they must cover
             `min_answer_coverage` of it ("infection" does not explain "Parvovirus B19 infection") (for
             choice items: the gold option; the
             other options are never mapped, a path to a distractor would argue for it). No question or no
             answer entity: rejected. A choice question asking for the exception ("NOT", "EXCEPT", "least")
             is rejected first (gate quality): a supporting path would argue for the wrong option; an
             item whose image is not in the project's image store: mapping/missing_image.
2. paths   -- a bidirectional BFS over typed edges (co-occurrence is statistics, never a step) from the
             question entities and from the answer entities, ceil(L/2) and floor(L/2) layers for
             L = `max_path_len`, each layer capped at `max_frontier` nodes (lowest degree first, hubs are
             never expanded through), a few parents kept per node; the halves meet in simple paths whose
             inner nodes are neither question nor answer entities; only the item's shortest ones (+
             `max_extra_hops`); context entities only link directly. A `PathRanker` keeps the top `max_paths`:
             Local = score = sum over steps of log(reviewed precision of the edge's kind/relation) -
             `hub_penalty` x sum over the path's nodes of log(typed degree) - `sibling_penalty` per step
             pair that only says two entities share a neighbour: the first term is the log-probability that
             every step is right (independent edges), the second says a path at a hub ("pain", "Drug
             Therapy") links almost anything and explains nothing, the third that "both affect the joint"
             relates two entities loosely; ties: shorter, heavier (support), then edge ids. LLM = the LLM
             keeps the relevant, correct ones among numbered candidates (the paper's re-ranking).
3. write   -- a `ReasoningWriter` (kg_multihop) writes the reasoning conditioned on the kept paths, each step
             with its provenance sentence quoted, concluding with the item's gold answer. The Local writer
             is a template over the paths (the facts are the graph's; the wording is fixed); LLM = the paper's
             path-conditioned trajectory.
4. quality -- a `QualityJudge` (kg_multihop): every step quoted, length bounds, the answer reached, no
             duplicate item; the LLM judge adds its verdict.

Phase 1 (foundational logic), not 2: the paths are short (<= `max_path_len` = 3 hops) links that ground an
existing answer in stated facts, the knowledge-to-answer step; kg_multihop's >5-hop chains are phase 2.
The assistant's `content` is the item's gold answer (choice: "B. <option>"), never a generated one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tasks.common.io import file_sha256, iter_jsonl, shard_paths
from tasks.llm.ask import ask_parsed, json_object
from tasks.llm.parsing import ParseError
from tasks.mapping.automaton import EntityMatcher, MatchEntry, key_of
from tasks.mid_synthesis.experts import LETTERS, stable_seed
from tasks.mid_synthesis.kg_multihop import (
    REPAIR,
    Arc,
    JudgeItem,
    LocalQualityJudge,
    LocalReasoningWriter,
    QualityJudge,
    QualityLimits,
    ReasoningWriter,
    Step,
    TypedGraph,
    WriteRequest,
    generator_of,
)
from tasks.mid_synthesis.samples import GateOutcome, image_part, mid_sample, text_part

FAMILY = "kg_paths"
PHASE = 1


@dataclasses.dataclass
class KGPathsParams:
    max_items: dict[str, int] = dataclasses.field(default_factory=lambda: {
        "vqa_rad": 200, "medquad": 200, "atomic_qa": 200, "huatuo_o1": 200})   # per source, seeded sample
    stop_keys: list[str] = dataclasses.field(default_factory=list)   # as entity_map: upper case only
    # tree entities that QA text almost only uses as verbs ("has lead to" is not the metal)
    extra_stop_keys: list[str] = dataclasses.field(default_factory=lambda: ["lead"])
    max_question_entities: int = 12  # first by position: a vignette names many findings
    max_answer_entities: int = 6     # a MedQuAD answer's first entities are its subject
    max_path_len: int = 3
    max_frontier: int = 300          # nodes kept per BFS layer (lowest typed degree first)
    max_parents: int = 3             # parents kept per node: paths per meeting node stay bounded
    max_candidates: int = 200        # candidate paths per item before ranking
    max_paths: int = 3               # kept after ranking
    max_extra_hops: int = 0          # candidates at most this much longer than the item's shortest path
    context_max_hops: int = 1        # paths from an item's context (VQA-RAD: the image's region)
    max_node_degree: int = 150       # hubs are endpoints at most, never inner nodes
    hub_penalty: float = 0.25        # per log(typed degree) of every node on the path
    sibling_penalty: float = 1.0     # per "both X and Y affect Z" step pair (`siblings`)
    min_answer_coverage: float = 0.5  # choice/fill answers: share of their characters entities cover
    require_evidence: bool = True    # steps only along edges with a provenance sentence (quoted)
    max_evidence_chars: int = 400
    max_answer_chars: int = 3000     # MedQuAD loader: longer answers are not loaded
    max_target_chars: int = 120      # a longer gold answer is concluded by its entities in the reasoning
    min_question_chars: int = 10
    max_question_chars: int = 6000
    max_reasoning_chars: int = 8000
    max_llm_candidates: int = 10
    max_tokens: int = 768

    def __post_init__(self):
        if self.max_path_len < 1 or self.max_paths < 1 or self.max_parents < 1:
            raise ValueError("max_path_len, max_paths and max_parents must be >= 1")


# ----------------------------------------------------------------------------- loaders
def _sample(rows: list, n: int, seed: int, tag: str) -> list:
    """A seeded sample of n rows, in their original order."""
    if len(rows) <= n:
        return list(rows)
    rng = np.random.default_rng(stable_seed(seed, "kg_paths_items", tag))
    return [rows[i] for i in sorted(rng.choice(len(rows), size=n, replace=False).tolist())]


def _hid(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


YES_NO = {"yes", "no"}
# The image's region (VQA-RAD image_organ) as words the graph knows: the image is part of the question, so
# "What is the hyperdensity?" on a head CT is a question about the brain.
NEGATED = re.compile(r"\b(not|except|least|false|incorrect|never)\b", re.IGNORECASE)
ORGAN_CONTEXT = {"ABD": "abdomen", "CHEST": "chest, lungs, heart", "HEAD": "head, brain"}


def load_vqa_rad(path: str | Path, n: int, seed: int, image_store: str | Path = "data/collect/images",
                 root: str | Path = ".") -> list[dict]:
    """VQA-RAD train items (trainset.json); the image is referenced by its copy in the collect stage's
    content-addressed store (project-relative path + sha256); `image_error` is set when it is missing."""
    path = Path(path)
    rows = json.loads(path.read_text())
    out = []
    for r in _sample(rows, n, seed, "vqa_rad"):
        answer = str(r.get("answer", "")).strip()
        item = {"id": f"vqa_rad-train-{r.get('qid')}", "question": str(r.get("question", "")).strip(),
                "answer": answer, "answer_kind": "judgement" if answer.casefold() in YES_NO else "fill",
                "source": "vqa_rad", "images": [], "source_ids": [f"vqa_rad-train-{r.get('qid')}"],
                "context": ORGAN_CONTEXT.get(str(r.get("image_organ", "")).strip(), "")}
        src = path.parent / "images" / str(r.get("image_name", ""))
        if src.is_file():
            sha = file_sha256(src)
            rel = Path(image_store) / sha[:2] / f"{sha}{src.suffix.lower()}"
            if (Path(root) / rel).is_file():
                item["images"] = [{"path": str(rel), "sha256": sha}]
            else:
                item["image_error"] = f"{src.name} not in {image_store}"
        else:
            item["image_error"] = f"{src.name} missing"
        out.append(item)
    return out


def load_medquad(kept_dir: str | Path, n: int, seed: int, max_answer_chars: int = 3000) -> list[dict]:
    """MedQuAD QA pairs from the corpus (quality-kept documents, source medquad: text = question, blank
    line, answer; meta.question); answers longer than `max_answer_chars` are not loaded."""
    rows = []
    for shard in shard_paths(kept_dir):
        for doc, _ in iter_jsonl(shard):
            if not doc or doc.get("source") != "medquad":
                continue
            q = str((doc.get("meta") or {}).get("question") or "").strip()
            text = str(doc.get("text", ""))
            a = text[len(q):].strip() if q and text.startswith(q) else ""
            if q and a and len(a) <= max_answer_chars:
                rows.append({"id": doc["id"], "question": q, "answer": a, "answer_kind": "open",
                             "source": "medquad", "source_ids": [doc["id"]]})
    return _sample(rows, n, seed, "medquad")


def load_atomic_qa(samples_dir: str | Path, n: int, seed: int) -> list[dict]:
    """The CPT stage's KG atomic QA samples (task atomic_qa): user question, assistant answer sentence."""
    rows = []
    for shard in shard_paths(samples_dir):
        for s, _ in iter_jsonl(shard):
            if not s or s.get("task") != "atomic_qa" or len(s.get("messages") or []) < 2:
                continue
            rows.append({"id": s["id"], "question": s["messages"][0]["content"],
                         "answer": s["messages"][-1]["content"], "answer_kind": "open", "source": "atomic_qa",
                         "source_ids": list(s.get("source_ids") or [s["id"]])})
    return _sample(rows, n, seed, "atomic_qa")


def load_huatuo(path: str | Path, n: int, seed: int) -> list[dict]:
    """HuatuoGPT-o1 sample items: question, options {letter: text}, answer_idx (the gold letter)."""
    rows = []
    for r in json.loads(Path(path).read_text()):
        opts = r.get("options") or {}
        letters = sorted(opts)
        if not letters or r.get("answer_idx") not in opts:
            continue
        iid = f"huatuo_o1-{_hid(r['question'], r['answer_idx'])}"
        rows.append({"id": iid, "question": str(r["question"]).strip(), "answer": str(opts[r["answer_idx"]]),
                     "answer_kind": "choice", "options": [str(opts[k]) for k in letters],
                     "gold_index": letters.index(r["answer_idx"]), "source": "huatuo_o1", "source_ids": [iid]})
    return _sample(rows, n, seed, "huatuo_o1")


# ----------------------------------------------------------------------------- mapping
def build_matcher(g: TypedGraph, stop_keys: Sequence[str] = ()) -> EntityMatcher:
    """An automaton over the name and norm of every node with typed edges and a usable name (payload:
    node index). Matched only where the text writes them in upper case: keys that are stop words (as in
    entity_map) and short acronyms (an upper-case name of <= 4 characters: "CM" must not match "3.4 cm",
    "NO" not "no")."""
    stop = {key_of(w) for w in stop_keys}
    entries = []
    for i, name in enumerate(g.names):
        if not name or not g.degree[i]:
            continue
        acronym = name.isupper() and len(name) <= 4
        for surface in dict.fromkeys([name, g.norm(i)]):
            if key_of(surface).strip():
                entries.append(MatchEntry(surface, i, acronym or key_of(surface) in stop))
    return EntityMatcher(entries)


def entities(matcher: EntityMatcher, text: str, limit: int) -> list[int]:
    """Distinct node indices found in `text`, in order of first mention, at most `limit`."""
    return list(dict.fromkeys(p for _, _, p in matcher.scan(text)))[:limit]


def coverage(matcher: EntityMatcher, text: str) -> float:
    """Share of the text's letters and digits inside entity hits: "infection" covers little of
    "Parvovirus B19 infection", so a path to it would not explain that answer."""
    total = sum(c.isalnum() for c in text)
    hit = sum(sum(c.isalnum() for c in text[a:b]) for a, b, _ in matcher.scan(text))
    return hit / total if total else 0.0


# ----------------------------------------------------------------------------- path search
@dataclasses.dataclass(frozen=True)
class KGPath:
    nodes: tuple[int, ...]
    arcs: tuple[Arc, ...]        # arcs[i] leads from nodes[i] to nodes[i + 1]


def _flip(arc: Arc, to: int) -> Arc:
    return dataclasses.replace(arc, node=to, forward=not arc.forward)


def _expand(g: TypedGraph, seeds: Sequence[int], depth: int, params: KGPathsParams) -> dict[int, list]:
    """Shortest-layer BFS from `seeds`: node -> up to max_parents (previous node, arc into the node)
    entries ([None] for a seed)."""
    parents: dict[int, list] = {s: [None] for s in seeds}
    dist = {s: 0 for s in seeds}
    frontier = sorted(set(seeds))
    for d in range(1, depth + 1):
        found: list[int] = []
        for u in frontier:
            if d > 1 and g.degree[u] > params.max_node_degree:
                continue                       # a hub is an endpoint at most
            for a in g.adj[u]:
                if params.require_evidence and not a.evidence or not g.names[a.node]:
                    continue
                v = a.node
                if dist.get(v, d) < d:
                    continue
                if v not in dist:
                    dist[v] = d
                    parents[v] = []
                    found.append(v)
                if len(parents[v]) < params.max_parents:
                    parents[v].append((u, a))
        frontier = sorted(found, key=lambda v: (g.degree[v], v))[: params.max_frontier]
    return parents


def _walk_back(parents: dict[int, list], v: int, limit: int) -> list[list[tuple[int, Arc | None]]]:
    """Every parent chain from a seed to v: [(seed, None), (n1, arc seed->n1), ..., (v, arc)]."""
    out: list[list] = []
    for p in parents.get(v, []):
        if p is None:
            out.append([(v, None)])
            continue
        u, arc = p
        for chain in _walk_back(parents, u, limit):
            out.append(chain + [(v, arc)])
            if len(out) >= limit:
                return out
    return out


def find_paths(g: TypedGraph, sources: Sequence[int], targets: Sequence[int], params: KGPathsParams) -> list[KGPath]:
    """Simple paths of 1..max_path_len typed steps from a source to a target (bidirectional BFS, module
    docstring), inner nodes outside sources and targets; deduplicated, in a deterministic order."""
    src, tgt = set(sources), set(targets) - set(sources)
    if not src or not tgt:
        return []
    fwd = _expand(g, sorted(src), math.ceil(params.max_path_len / 2), params)
    bwd = _expand(g, sorted(tgt), params.max_path_len // 2, params)
    out: dict[tuple[int, ...], KGPath] = {}
    for m in sorted(set(fwd) & set(bwd)):
        for left in _walk_back(fwd, m, params.max_parents ** 2):
            for right in _walk_back(bwd, m, params.max_parents ** 2):
                nodes = [n for n, _ in left] + [n for n, _ in reversed(right[:-1])]
                arcs = [a for _, a in left[1:]]
                for k in range(len(right) - 1, 0, -1):      # right runs target..m: flip its arcs back
                    arcs.append(_flip(right[k][1], right[k - 1][0]))
                if not 1 <= len(arcs) <= params.max_path_len or len(set(nodes)) != len(nodes):
                    continue
                if nodes[0] not in src or nodes[-1] not in tgt or any(n in src or n in tgt for n in nodes[1:-1]):
                    continue
                if any(g.degree[n] > params.max_node_degree for n in nodes[1:-1]):
                    continue                    # the halves may meet at a hub neither side expanded
                key = tuple(a.edge for a in arcs) + (nodes[0],)
                out.setdefault(key, KGPath(tuple(nodes), tuple(arcs)))
                if len(out) >= params.max_candidates:
                    return [out[k] for k in sorted(out)]
    return [out[k] for k in sorted(out)]


# ----------------------------------------------------------------------------- rankers
def siblings(p: KGPath) -> int:
    """Steps pairs that only say two entities share a neighbour by the same relation ("pain affects the
    joint", "infection affects the joint"): a loose link, not a reason."""
    return sum(a.relation == b.relation and a.forward != b.forward for a, b in zip(p.arcs, p.arcs[1:]))


def path_score(g: TypedGraph, p: KGPath, hub_penalty: float, sibling_penalty: float = 1.0) -> float:
    """log P(every step right) - hub_penalty x sum log(typed degree) over the path's nodes - sibling_penalty
    per sibling pair (module docstring)."""
    s = sum(math.log(max(a.precision, 1e-6)) for a in p.arcs)
    s -= hub_penalty * sum(math.log(max(g.degree[v], 1)) for v in p.nodes)
    return s - sibling_penalty * siblings(p)


def _rank_key(g: TypedGraph, p: KGPath, hub_penalty: float, sibling_penalty: float) -> tuple:
    return (-round(path_score(g, p, hub_penalty, sibling_penalty), 9), len(p.arcs), -sum(a.weight for a in p.arcs),
            tuple(a.edge for a in p.arcs))


class PathRanker(Protocol):
    name: str

    def rank(self, g: TypedGraph, questions: Sequence[str], candidates: Sequence[Sequence[KGPath]],
             keep: int) -> list[list[KGPath] | dict]:
        """Per item the kept paths, best first (possibly empty), or {"failure": ...}."""
        ...


class LocalPathRanker:
    """Sort by `path_score` (and the tie-breaks), keep the top `keep`."""
    name = "local"

    def __init__(self, hub_penalty: float = 0.25, sibling_penalty: float = 1.0):
        self.hub_penalty, self.sibling_penalty = hub_penalty, sibling_penalty

    def rank(self, g, questions, candidates, keep):
        out = []
        for c in candidates:
            kept, seen = [], set()
            for p in sorted(c, key=lambda p: _rank_key(g, p, self.hub_penalty, self.sibling_penalty)):
                said = (p.nodes, tuple((a.relation, a.forward) for a in p.arcs))
                if said not in seen:        # parallel edges (medquad + pattern) state the same path twice
                    seen.add(said)
                    kept.append(p)
                if len(kept) == keep:
                    break
            out.append(kept)
        return out


def describe(g: TypedGraph, p: KGPath) -> str:
    return " ".join(g.statement(a.edge) for a in p.arcs)


RANK_SYSTEM = "You are a medical expert who checks reasoning evidence. You answer only with JSON."
RANK_PROMPT = ("Question:\n{question}\n\nCandidate chains of medical facts:\n{paths}\n\nWhich chains are correct and "
               "relevant for answering the question? Keep at most {keep}, best first.\n"
               'Reply with only JSON: {{"keep": [chain numbers]}}')


class LLMPathRanker:
    """The paper's re-ranking: the Local order picks the candidates shown (at most `max_candidates`), the
    LLM keeps the relevant, correct ones."""
    name = "llm"

    def __init__(self, client, max_candidates: int = 10, hub_penalty: float = 0.25, sibling_penalty: float = 1.0,
                 max_tokens: int = 128):
        self.client, self.max_candidates, self.max_tokens = client, max_candidates, max_tokens
        self.local = LocalPathRanker(hub_penalty, sibling_penalty)

    def rank(self, g, questions, candidates, keep):
        shown = self.local.rank(g, questions, candidates, self.max_candidates)
        chats = [[{"role": "system", "content": RANK_SYSTEM},
                  {"role": "user", "content": RANK_PROMPT.format(
                      question=q, keep=keep, paths="\n".join(f"{i + 1}. {describe(g, p)}" for i, p in enumerate(s)))}]
                 for q, s in zip(questions, shown)]
        answers = ask_parsed(self.client, chats, _parse_keep, REPAIR, max_tokens=self.max_tokens)
        out: list[list[KGPath] | dict] = []
        for s, a in zip(shown, answers):
            if not a.ok:
                out.append({"failure": a.failure})
                continue
            picks = [k for k in dict.fromkeys(a.value) if 1 <= k <= len(s)]
            out.append([s[k - 1] for k in picks][:keep])
        return out


def _parse_keep(reply: str) -> list[int]:
    keep = json_object(reply, {"keep": list})["keep"]
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in keep):
        raise ParseError("keep must be a list of chain numbers", reply)
    return keep


# ----------------------------------------------------------------------------- the engine
def path_steps(g: TypedGraph, p: KGPath, max_chars: int) -> tuple[Step, ...]:
    out = []
    for a in p.arcs:
        sent, doc = g.evidence(a.edge, max_chars)
        out.append(Step(g.statement(a.edge), sent, doc))
    return tuple(out)


def path_record(g: TypedGraph, p: KGPath, max_chars: int) -> list[dict]:
    """The path as hops {head, relation, tail, direction, sentence, doc_id, edge_id} (as chain_record)."""
    hops = []
    for a in p.arcs:
        e = g.edges[a.edge]
        sent, doc = g.evidence(a.edge, max_chars)
        hops.append({"head": g.names[e["head_idx"]] or g.norm(e["head_idx"]), "relation": a.relation,
                     "tail": g.names[e["tail_idx"]] or g.norm(e["tail_idx"]),
                     "direction": "forward" if a.forward else "backward", "sentence": sent, "doc_id": doc,
                     "edge_id": a.edge})
    return hops


def user_text(item: dict) -> str:
    if item.get("answer_kind") == "choice":
        opts = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(item["options"]))
        return f"{item['question']}\n{opts}\nReason step by step, then give the letter of the answer."
    return f"{item['question']}\nReason step by step, then answer."


def gold_text(item: dict) -> str:
    """The assistant's final content: the gold answer (choice: "B. <option>")."""
    if item.get("answer_kind") == "choice":
        return f"{LETTERS[item['gold_index']]}. {item['options'][item['gold_index']]}"
    return item["answer"]


def kg_paths(items: Sequence[dict], g: TypedGraph, matcher: EntityMatcher, params: KGPathsParams, seed: int, *,
             ranker: PathRanker | None = None, writer: ReasoningWriter | None = None,
             judge: QualityJudge | None = None, stats: dict | None = None) -> GateOutcome:
    """KG-verifiable reasoning samples for QA `items` (module docstring). `seed` is part of the contract
    for LLM roles and future sampling; the Local path is deterministic without it."""
    del seed
    ranker = ranker or LocalPathRanker(params.hub_penalty, params.sibling_penalty)
    writer = writer or LocalReasoningWriter()
    judge = judge or LocalQualityJudge(QualityLimits(params.min_question_chars, params.max_question_chars,
                                                     params.max_reasoning_chars, params.require_evidence))
    st = stats if stats is not None else {}
    out = GateOutcome(read=len(items))

    def loc(it: dict) -> dict:
        return {"id": it.get("id"), "source": it.get("source"), "question": str(it.get("question", ""))[:160]}

    # 1. mapping, 2. candidate paths
    found: list[tuple[dict, list[int], list[int], list[KGPath]]] = []
    for it in items:
        if it.get("image_error"):
            out.reject("mapping", "missing_image", it["image_error"], loc(it))
            continue
        if it.get("answer_kind") == "choice" and NEGATED.search(it["question"]):
            out.reject("quality", "negated_question", "paths support an option; this question wants the "
                       "unsupported one", loc(it))
            continue
        q_ents = entities(matcher, it["question"], params.max_question_entities)
        ctx = [v for v in entities(matcher, it.get("context") or "", params.max_question_entities) if v not in q_ents]
        a_ents = [a for a in entities(matcher, it["answer"], params.max_answer_entities + len(q_ents) + len(ctx))
                  if a not in q_ents and a not in ctx][: params.max_answer_entities]
        if not q_ents and not ctx:
            out.reject("mapping", "no_question_entity", "", loc(it))
            continue
        if not a_ents:
            yes_no = it.get("answer_kind") == "judgement"       # "yes" names nothing a path could reach
            out.reject("mapping", "yes_no_answer" if yes_no else "no_answer_entity", f"answer {it['answer'][:80]!r}",
                       loc(it))
            continue
        cov = coverage(matcher, it["answer"])
        if it.get("answer_kind") in ("choice", "fill") and cov < params.min_answer_coverage:
            out.reject("mapping", "answer_not_covered", f"entities cover {cov:.2f} of {it['answer'][:80]!r}", loc(it))
            continue
        cands = find_paths(g, q_ents, a_ents, params)
        if not cands and ctx:       # the image's region: direct links only (a detour from "abdomen" is noise)
            cands = find_paths(g, ctx, a_ents, dataclasses.replace(params, max_path_len=params.context_max_hops))
        if cands:        # a detour next to a direct link adds error (one more edge) and no relevance
            shortest = min(len(p.arcs) for p in cands)
            cands = [p for p in cands if len(p.arcs) <= shortest + params.max_extra_hops]
        if not cands:
            out.reject("paths", "no_path", f"{len(q_ents)} question x {len(a_ents)} answer entities, "
                       f"<= {params.max_path_len} hops", loc(it))
            continue
        found.append((it, q_ents, a_ents, cands))
    st["with_paths"] = len(found)
    st["candidate_paths"] = sum(len(c) for *_, c in found)

    # 2b. re-rank
    ranked = ranker.rank(g, [it["question"] for it, *_ in found], [c for *_, c in found], params.max_paths) \
        if found else []
    ready = []
    for (it, q_ents, a_ents, _), r in zip(found, ranked):
        if isinstance(r, dict):
            out.reject("paths", "llm_failed", str(r["failure"].get("detail", "")), loc(it))
        elif not r:
            out.reject("paths", "none_kept", "the ranker kept no path", loc(it))
        else:
            ready.append((it, q_ents, a_ents, r))

    # 3. reasoning conditioned on the kept paths
    reqs = []
    for it, q_ents, a_ents, paths in ready:
        reached = [v for v in a_ents if any(p.nodes[-1] == v for p in paths)]
        target = gold_text(it)
        conclusion = f"Therefore: {target}" if it.get("answer_kind") == "open" else ""   # a sentence already
        if len(target) > params.max_target_chars:       # a long answer is concluded by its entities
            target = ", ".join(g.names[v] or g.norm(v) for v in reached)
            conclusion = f"So the answer centres on {target}, as follows."
        named = ", ".join(g.names[v] or g.norm(v) for v in dict.fromkeys(p.nodes[0] for p in paths))
        reqs.append(WriteRequest(user_text(it), target,
                                 tuple(path_steps(g, p, params.max_evidence_chars) for p in paths),
                                 intro=f"The question involves {named}. Known facts link it to the answer:",
                                 conclusion=conclusion))
    texts = writer.write(reqs) if reqs else []
    written = []
    for (it, q_ents, a_ents, paths), r, t in zip(ready, reqs, texts):
        if isinstance(t, dict):
            out.reject("write", "llm_failed", str(t["failure"].get("detail", "")), loc(it))
        else:
            written.append((it, q_ents, a_ents, paths, r, t))

    # 4. quality
    verdicts = judge.judge([JudgeItem(r.question, r.answer, t, tuple(s for p in r.paths for s in p), key=it["id"])
                            for it, _, _, _, r, t in written]) if written else []
    gen = generator_of(ranker, writer, judge)
    for (it, q_ents, a_ents, paths, r, t), (ok, reason, detail) in zip(written, verdicts):
        if not ok:
            out.reject("quality", reason, detail, loc(it))
            continue
        images = list(it.get("images") or [])
        content: Any = r.question if not images else [*(image_part() for _ in images), text_part(r.question)]
        src = list(it.get("source_ids") or [it["id"]])
        src += [f"kg-node:{g.norm(v)}" for p in paths for v in p.nodes] + [f"kg-edge:{a.edge}" for p in paths
                                                                          for a in p.arcs]
        src += [s.doc_id for p in r.paths for s in p if s.doc_id]
        meta = {"item_id": it["id"], "source": it.get("source"),
                "question_entities": [g.names[v] for v in q_ents], "answer_entities": [g.names[v] for v in a_ents],
                "paths": [path_record(g, p, params.max_evidence_chars) for p in paths]}
        if it.get("answer_kind") == "choice":
            meta.update(options=list(it["options"]), gold_index=it["gold_index"])
        msgs = [{"role": "user", "content": content},
                {"role": "assistant", "reasoning_content": t, "content": gold_text(it)}]
        out.kept.append(mid_sample(FAMILY, PHASE, list(dict.fromkeys(src)), msgs, answer=it["answer"],
                                   answer_kind=it.get("answer_kind") or "open", images=images, generator=gen,
                                   **meta))
    return out
