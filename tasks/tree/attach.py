"""Stage 3 of paper §3.2: incremental attachment of the remaining entities to the frozen core.

Deferred insertion: the core tree is frozen (`FrozenCore`: read-only embeddings, its own tree copy,
a fingerprint); entities are decided in batches of `batch_size` against that frozen core only, their
insertions are buffered, conflicts in the batch are resolved, and only then is the batch applied to the
separate working tree. Nothing a batch inserts can influence another decision, exactly as in the
paper, where the LLM predicts insertion paths relative to the frozen core.

Two attachers behind one interface (`decide_batch(entities, vectors) -> [Decision]`):

- `LocalAttacher` (default): cosine similarity of the entity embedding to the core's category
  embeddings, descending tier by tier from the entity's type node (or the root) with a beam of
  `beam` nodes. The best terminal category wins if its similarity >= `min_similarity`, else the entity
  is unclassified with the best path and similarity as the reason. Other finalists within
  `conflict_margin` of the best, and the best placements of an entity's other types, are extra
  candidate parents: a conflict for the resolver.
- `LLMAttacher`: the paper's Stage 3 prompt with the frozen core's category paths; the reply must carry
  `<Reason>...</Reason><InsertionPath>A.B.Entity</InsertionPath>` whose category prefix exists in the
  frozen core. Replies go through the project's one parse/repair loop (`tasks.llm.ask.ask_parsed`):
  empty, truncated, unparseable or invalid replies get one repair turn, then the entity is unclassified
  with the reason and the raw replies. The paper's "unclassifiable" answer
  (`<Reason>..</Reason><Reasoning>..</Reasoning>` without a path) is recorded as such, not retried.
  Several valid paths in one reply are a conflict. A path's trailing element(s) may name the entity
  itself; the parse accepts the name of any entity of the batch there (one parse serves the batch), and
  the decision then checks it names this entity (if not: unclassified, `llm_invalid_path`).
  The prompt's tree is at most `tree_max_chars` characters (the local model's context). When the frozen
  core's paths do not fit, each entity is shown the part most relevant to it (`CoreView`): its type
  node's subtree first, then the other categories nearest to its embedding by cosine (within the
  subtree too, if that alone is too long), in tree order, with a last line saying how many paths are
  shown of how many. Nothing is cut silently: every decision carries its view, the attachment and
  unclassified records say how many core paths were shown of how many and whether the chosen parent
  was among them, and `stats` counts truncated prompts, cut type branches, answers naming a path that
  was not shown and entities left unclassified after a truncated prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks.tree.build import ROOT_ID, FrozenCore
from tasks.tree.embed import Entity
from tasks.tree.model import ENTITY, Node, Tree, norm_name


@dataclass
class Candidate:
    node_id: str
    path: str
    similarity: float | None = None
    via: str = ""             # type:<T> | margin | llm
    reason: str = ""          # the LLM's <Reason>, or the local similarity statement

    def to_json(self) -> dict:
        return {"node_id": self.node_id, "path": self.path, "similarity": self.similarity,
                "via": self.via}


@dataclass(frozen=True)
class CoreView:
    """The part of the frozen core one LLM prompt shows."""
    text: str                      # category paths, one per line, in tree order (+ a note when cut)
    shown: frozenset[str]          # category ids shown, with their ancestors (a path names them)
    n_shown: int                   # path lines shown
    n_available: int               # category paths in the frozen core
    branch_complete: bool          # the entity's whole type subtree was shown (True without a type node)

    @property
    def truncated(self) -> bool:
        return self.n_shown < self.n_available


@dataclass
class Decision:
    entity: Entity
    method: str                               # local | llm
    candidates: list[Candidate] = field(default_factory=list)
    reason: str = ""                          # unclassified reason (empty when attached)
    detail: str = ""
    raw: list[str] = field(default_factory=list)   # LLM replies, in order
    view: CoreView | None = None              # llm: the part of the core the prompt showed

    @property
    def attached(self) -> bool:
        return not self.reason and bool(self.candidates)


class LocalAttacher:
    method = "local"

    def __init__(self, core: FrozenCore, *, min_similarity: float = 0.35, beam: int = 2,
                 conflict_margin: float = 0.02):
        self.core = core
        self.min_similarity = min_similarity
        self.beam = max(1, beam)
        self.conflict_margin = conflict_margin

    def descend(self, q: np.ndarray, start: str) -> list[tuple[str, float]]:
        """Terminal categories reached from `start` with a beam, best first: [(node, cosine)]."""
        core = self.core
        start_sim = float(core.similarity(q, [start])[0]) if start in core.row else -1.0
        frontier = [(start, start_sim)]
        finished: list[tuple[str, float]] = []
        while frontier:
            nxt: list[tuple[str, float]] = []
            for nid, s in frontier:
                kids = [c for c in core.tree.category_children(nid) if c in core.row]
                if not kids:
                    finished.append((nid, s))
                    continue
                nxt.extend(zip(kids, (float(v) for v in core.similarity(q, kids))))
            nxt.sort(key=lambda t: (-round(t[1], 6), t[0]))
            frontier = nxt[:self.beam]
        finished = [(n, round(s, 6)) for n, s in finished if n != ROOT_ID]
        return sorted(finished, key=lambda t: (-t[1], t[0]))

    def decide(self, e: Entity, q: np.ndarray) -> Decision:
        core = self.core
        d = Decision(e, self.method)
        if not core.ids:
            d.reason, d.detail = "empty_core", "the core tree has no categories to attach to"
            return d
        starts: list[tuple[str, str]] = []
        for t in e.types:
            s = core.type_nodes.get(t, ROOT_ID)
            if s not in [x for x, _ in starts]:
                starts.append((s, f"type:{t}" if s != ROOT_ID else "root"))
        best_overall: tuple[str, float] | None = None
        cands: dict[str, Candidate] = {}
        for start, via in starts:
            finals = self.descend(q, start)
            if not finals:
                continue
            top_node, top_sim = finals[0]
            if best_overall is None or top_sim > best_overall[1]:
                best_overall = (top_node, top_sim)
            if top_sim < self.min_similarity:
                continue
            for node, sim in finals:
                if node == top_node or top_sim - sim <= self.conflict_margin:
                    old = cands.get(node)
                    if old is None or sim > (old.similarity or -1):
                        cands[node] = Candidate(node, core.tree.path(node), sim,
                                                via if node == top_node else "margin",
                                                f"cosine {sim:.3f} to {core.tree.path(node)}")
        if not cands:
            if best_overall is None:
                d.reason, d.detail = "no_path", "no category reachable from the entity's type node"
            else:
                node, sim = best_overall
                d.reason = "below_min_similarity"
                d.detail = (f"best {core.tree.path(node)} cosine {sim:.3f} < min_similarity "
                            f"{self.min_similarity}")
            return d
        d.candidates = sorted(cands.values(), key=lambda c: (-(c.similarity or 0), c.node_id))
        return d

    def decide_batch(self, entities: list[Entity], vectors: np.ndarray) -> list[Decision]:
        return [self.decide(e, vectors[i]) for i, e in enumerate(entities)]


SYSTEM = "You are a medical entity taxonomy expert."
PROMPT = """You must strictly follow the guidelines below to integrate the medical entity noun I provide into the existing medical entity tree.

**Maintain Original Structure**: You are NOT allowed to change the names of nodes on the medical entity tree. Each line of the tree below is one existing path of node names joined by ".".

**Precise Insertion**: Insert the medical entity noun into the appropriate sub-category. Ensure only valid medical entities are inserted and adhere to hierarchical relationships.

**Rationality of New Insertions**: If you insert a medical entity into the tree, you must provide the reason for its insertion.
Output Format: <Reason>xxx</Reason><InsertionPath>Node1.Node2.InsertedNode</InsertionPath>

**Handling Unclassifiable Cases**: Report medical entity nouns that cannot be classified and explain the reasons for the uncertainty.
Output Format: <Reason>xxx</Reason><Reasoning>yyy</Reasoning>

Medical Entity Tree:
{tree}

Medical Entity Nouns:
{entity}"""
REPAIR = ("Your answer could not be used: {problem}. Answer again for the medical entity noun above with "
          "exactly <Reason>...</Reason><InsertionPath>Path.Entity</InsertionPath>, where Path is one of the "
          "tree paths listed above, copied exactly, and Entity is that noun.")


TRUNCATION_NOTE = "... ({shown} of {available} category paths shown: {which})"
NOTE_RESERVE = 120        # characters of the budget kept for the note (its longest form is ~95)


class LLMAttacher:
    method = "llm"

    def __init__(self, client, core: FrozenCore, *, tree_max_chars: int = 3000):
        self.client = client
        self.core = core
        self.tree_max_chars = tree_max_chars
        self.stats = {"asked": 0, "parsed_first": 0, "parsed_after_repair": 0, "repairs": 0,
                      "unclassifiable": 0, "failed": 0,
                      "core_paths_available": 0,       # category paths in the frozen core
                      "core_paths_shown_mean": 0.0,    # per prompt
                      "prompts_truncated": 0,          # prompts that showed fewer paths than available
                      "type_branch_cut": 0,            # ... not even the entity's whole type subtree
                      "answer_not_shown": 0,           # attached under a core path the prompt did not show
                      "unclassified_after_truncation": 0}
        self._shown_total = 0
        self._branches: dict[str, frozenset[str]] = {}
        self.ids = [nid for nid in core.ids if nid != ROOT_ID]
        self.paths = {nid: core.tree.path(nid) for nid in self.ids}
        self.order = {nid: i for i, nid in enumerate(self.ids)}
        self.full_text = "\n".join(self.paths[nid] for nid in self.ids)
        self.stats["core_paths_available"] = len(self.ids)

    def branch(self, start: str | None) -> frozenset[str]:
        """The category ids of the subtree under `start` (the entity's type node); empty for none."""
        if not start or start == ROOT_ID:
            return frozenset()
        if start not in self._branches:       # once per type node, not per entity
            self._branches[start] = frozenset(nid for nid in self.ids
                                              if nid == start or start in self.core.tree.ancestors(nid))
        return self._branches[start]

    def core_view(self, e: Entity, q: np.ndarray | None = None) -> CoreView:
        """The frozen core's paths for `e` within `tree_max_chars`: all of them if they fit, else the
        type subtree first, then by cosine to `q` (tree order without `q`), shown in tree order."""
        ids, n = self.ids, len(self.ids)
        if not self.tree_max_chars or len(self.full_text) <= self.tree_max_chars:
            return CoreView(self.full_text, frozenset(ids), n, n, True)
        branch = self.branch(self.core.type_nodes.get(e.type))
        sims = dict(zip(ids, (round(float(v), 6) for v in self.core.similarity(q, ids)))) if q is not None \
            else {}
        ranked = sorted(ids, key=lambda i: (i not in branch, -sims.get(i, 0.0), self.order[i]))
        budget, used, chosen = self.tree_max_chars - NOTE_RESERVE, 0, []
        for nid in ranked:                     # greedy: a shorter path may still fit after a long one did not
            cost = len(self.paths[nid]) + 1
            if used + cost <= budget:
                chosen.append(nid)
                used += cost
        chosen.sort(key=self.order.__getitem__)
        which = " and ".join([*(["this noun's type branch"] if branch else []),
                              *(["those nearest to this noun"] if q is not None else [])])
        note = TRUNCATION_NOTE.format(shown=len(chosen), available=n, which=which or "the first in tree order")
        text = "\n".join([*(self.paths[i] for i in chosen), note])
        shown = set(chosen)
        for nid in chosen:
            shown.update(a for a in self.core.tree.ancestors(nid) if a != ROOT_ID)
        return CoreView(text, frozenset(shown), len(chosen), n, branch <= set(chosen))

    def messages(self, e: Entity, view: CoreView) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT.format(tree=view.text, entity=e.text)}]

    @staticmethod
    def entity_names(e: Entity) -> set[str]:
        """The names a path may end with for `e` (its norm, surface forms)."""
        return {norm_name(e.text), norm_name(e.norm), *(norm_name(r["text"]) for r in e.rows)}

    def resolve(self, parts: list[str], names: set[str]) -> str | None:
        """The frozen-core category a path names; its last element(s) may be one of `names`."""
        tree = self.core.tree
        node = tree.resolve_names(parts)
        if node is not None and node != ROOT_ID:
            return node
        for cut in range(len(parts) - 1, 0, -1):
            if norm_name(".".join(parts[cut:])) in names:
                node = tree.resolve_names(parts[:cut])
                if node is not None and node != ROOT_ID:
                    return node
        return None

    def evaluate(self, reply: str, names: set[str]) -> tuple[list[Candidate], str, str]:
        """(candidates, problem, unclassifiable reasoning) of a reply; problem "" when usable."""
        from tasks.llm.parsing import extract_tags
        if not reply.strip():
            return [], "empty_reply", ""
        reasons = extract_tags(reply, "Reason")
        paths = extract_tags(reply, "InsertionPath")
        if not paths:
            reasoning = [r for r in extract_tags(reply, "Reasoning") if r]
            if reasoning:
                return [], "", reasoning[0][:500]
            return [], "no_insertion_path", "no <InsertionPath>...</InsertionPath> in the reply"
        found: dict[str, Candidate] = {}
        bad = []
        for p in paths:
            parts = [s.strip() for s in p.split(".")]
            node = self.resolve(parts, names) if p and all(parts) else None
            if node is None:
                bad.append(p[:120])
            elif node not in found:
                found[node] = Candidate(node, self.core.tree.path(node), None, "llm",
                                        (reasons[0] if reasons else "")[:500])
        if not found:
            return [], "invalid_path", f"not a path of the frozen core: {bad[:3]}"
        return list(found.values()), "", ""

    def decide_batch(self, entities: list[Entity], vectors=None) -> list[Decision]:
        from tasks.llm.ask import RAW_CHARS, ask_parsed

        batch_names = set().union(*(self.entity_names(e) for e in entities)) if entities else set()
        seen: dict[str, tuple] = {}      # raw text a failure records -> (candidates, problem, info)

        def parse(reply: str):
            _, problem, info = seen[reply[:RAW_CHARS]] = self.evaluate(reply, batch_names)
            if problem:
                raise ValueError(_problem_text(problem, info))
            return reply

        views = [self.core_view(e, vectors[i] if vectors is not None else None) for i, e in enumerate(entities)]
        answers = ask_parsed(self.client, [self.messages(e, v) for e, v in zip(entities, views)], parse,
                             REPAIR) if entities else []
        out: list[Decision] = []
        for e, a, view in zip(entities, answers, views):
            self.stats["asked"] += 1
            f = a.failure
            if a.ok:
                reply, repaired = a.value, a.repaired
                d = Decision(e, self.method, raw=[reply])
                cands, problem, info = self.evaluate(reply, self.entity_names(e))
                if problem:                     # the path ends with another entity of the batch
                    d.reason, d.detail = f"llm_{problem}", info
                elif cands:
                    d.candidates = cands
                    self.stats["parsed_after_repair" if repaired else "parsed_first"] += 1
                else:
                    d.reason, d.detail = "llm_unclassifiable", info
            elif f["kind"] == "request_failed":
                d = Decision(e, self.method, reason="llm_request_failed", detail=f["detail"][:300], raw=[""])
            elif f.get("raw_repair") is None:   # the repair request itself failed
                d = Decision(e, self.method, reason="llm_request_failed", raw=[f["raw"], ""],
                             detail=f["detail"].split("; repair request failed: ", 1)[-1])
            else:
                (_, p1, i1), (_, p2, i2) = seen[f["raw"]], seen[f["raw_repair"]]
                d = Decision(e, self.method, reason=f"llm_{p2}", detail=f"first reply: {p1} {i1}; repair: {p2} {i2}",
                             raw=[f["raw"], f["raw_repair"]])
            self.stats["repairs"] += a.repaired if a.ok else f["kind"] != "request_failed"
            d.view = view
            out.append(d)
        self.count(out)
        return out

    def count(self, decisions: list[Decision]) -> None:
        """Add a decided batch to `stats`: outcomes, and what each prompt's core view left out."""
        s = self.stats
        for d in decisions:
            v = d.view
            self._shown_total += v.n_shown
            s["prompts_truncated"] += v.truncated
            s["type_branch_cut"] += not v.branch_complete
            if d.attached and any(c.node_id not in v.shown for c in d.candidates):
                s["answer_not_shown"] += 1
            if not d.attached and v.truncated:
                s["unclassified_after_truncation"] += 1
            if d.reason == "llm_unclassifiable":
                s["unclassifiable"] += 1
            elif d.reason:
                s["failed"] += 1
        s["core_paths_shown_mean"] = round(self._shown_total / s["asked"], 2) if s["asked"] else 0.0


def _problem_text(problem: str, info: str) -> str:
    return {"empty_reply": "the reply was empty",
            "no_insertion_path": "it has no <InsertionPath>...</InsertionPath> tag (or it is cut off)",
            "invalid_path": f"the path is not in the tree ({info})"}.get(problem, problem)


@dataclass
class AttachResult:
    attachments: list[dict] = field(default_factory=list)
    unclassified: list[dict] = field(default_factory=list)
    audits: list[dict] = field(default_factory=list)
    batches: int = 0


def view_record(view: CoreView | None) -> dict:
    """How much of the frozen core an LLM prompt showed ({} for a local decision)."""
    if view is None:
        return {}
    return {"core_paths_shown": view.n_shown, "core_paths_available": view.n_available}


def unclassified_record(e: Entity, reason: str, detail: str, method: str, raw: list[str] | None = None,
                        view: CoreView | None = None) -> dict:
    rec = {"entity": e.norm, "text": e.text, "type": e.type, "count": e.count, "rows": e.input_rows,
           "reason": reason, "detail": detail, "method": method, **view_record(view)}
    if raw:
        rec["raw_replies"] = raw
    return rec


def apply_batch(working: Tree, insertions: list[tuple[Entity, str]], max_tiers: int) -> None:
    """Add the buffered entities as non-core leaves of the working tree (after a batch is decided)."""
    for e, parent in insertions:
        p = working.nodes[parent]
        if p.tier + 1 >= max_tiers:
            raise ValueError(f"attaching {e.norm!r} under {parent!r} would exceed {max_tiers} tiers")
        working.add(Node(f"e:{e.norm}", e.text, parent, p.tier + 1, ENTITY, [e.norm], e.count, False))


def attach_all(entities: list[Entity], vectors: np.ndarray | None, core: FrozenCore, working: Tree,
               attacher, resolver, *, batch_size: int, max_tiers: int) -> AttachResult:
    """Decide every entity against the frozen core in batches; resolve conflicts; apply per batch."""
    res = AttachResult()
    for b, start in enumerate(range(0, len(entities), batch_size)):
        batch = entities[start:start + batch_size]
        vecs = vectors[start:start + batch_size] if vectors is not None else None
        decisions = attacher.decide_batch(batch, vecs)
        conflicts = [d for d in decisions if d.attached and len(d.candidates) > 1]
        audits = resolver.resolve_batch(conflicts) if conflicts else []
        keep = {id(d): a["decision"]["keep_node"] for d, a in zip(conflicts, audits)}
        buffer: list[tuple[Entity, str]] = []
        for d in decisions:
            if not d.attached:
                res.unclassified.append(unclassified_record(d.entity, d.reason or "no_candidate",
                                                            d.detail, d.method, d.raw, d.view))
                continue
            node = keep.get(id(d), d.candidates[0].node_id)
            chosen = next(c for c in d.candidates if c.node_id == node)
            e = d.entity
            res.attachments.append({
                "entity": e.norm, "text": e.text, "type": e.type, "count": e.count, "rows": e.input_rows,
                "node_id": node, "path": core.tree.path(node), "method": d.method,
                "similarity": chosen.similarity, "reason": chosen.reason, "conflict": len(d.candidates) > 1,
                "batch": b, **view_record(d.view),
                **({"parent_shown": node in d.view.shown} if d.view is not None else {})})
            buffer.append((e, node))
        res.audits.extend(audits)
        if core.tree.fingerprint() != core.fingerprint:   # never: decisions only read the core
            raise RuntimeError("the frozen core changed while a batch was being decided")
        apply_batch(working, buffer, max_tiers)
        res.batches += 1
    return res
