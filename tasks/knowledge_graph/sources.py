"""Where the knowledge graph's edges come from, besides relation extraction: PubTator CID relations,
MedQuAD focus/question-type structure, and sentence co-occurrence statistics; plus the edge store
that merges them with their provenance.

Entity resolution (`TreeLookup`): a string becomes a tree entity when its normalised form
(tasks.extraction.common.normalize_entity: NFKC, whitespace collapsed, casefolded -- how the
entities stage builds every `norm` the tree holds) is an entity norm ("exact"), else when it folds to
the same automaton key as one ("folded": "IL-2" / "il 2", tasks.mapping.automaton.key_of). A MedQuAD
focus may also resolve "partial"ly: the longest tree entity found inside it by the tree's
Aho-Corasick matcher, if it covers at least `min_cover` of the focus's characters
("Adult Acute Lymphoblastic Leukemia" -> "acute lymphoblastic leukemia").

PubTator CID: each relation {chemical: MeSH, disease: MeSH} is resolved inside its own document:
the MeSH id's single-concept mentions (composite "D1|D2" mentions name several concepts and are not
used), resolved to tree entities; the most-mentioned one represents the concept (ties: the longer,
then the alphabetically first norm). Edge: disease caused_by chemical. A relation whose side has no
mention or no tree entity is rejected with that reason, counted in summary.json. The documents of the
seeded held-out share (tasks/knowledge_graph/heldout.py) are resolved the same way, but their
relations are gold for measuring edge precision, counted `heldout`, and never become edges.

MedQuAD: the focus entity is linked to every distinct tree entity hit in the answer (the text after
the question) except its own abbreviation ("Tuberculosis (TB)"), with the relation given by the question type (`qtype_relations`, e.g. symptoms ->
has_symptom, treatment -> treated_by); the first answer sentence naming the entity is kept as
provenance. Question types without a relation (information, research, ...) are counted, not linked:
their answers mention everything about the focus and co-occurrence already covers them.

Co-occurrence: sentence-level counts n(a), n(a,b) over all N sentences of the corpus and the
normalised PMI  npmi = log(n(a,b) N / (n(a) n(b))) / -log(n(a,b) / N)  in [-1, 1]; a pair becomes an
undirected `co_occurs_with` edge if n(a,b) >= min_count and npmi >= min_npmi. A sentence with many
entities (lists, tables) contributes at most `max_pairs_per_sentence` pairs, nearest entities first,
so one list cannot dominate the statistics.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from tasks.extraction.common import normalize_entity
from tasks.knowledge_graph.relations import CO_OCCURS, SYMMETRIC, Sentence, fold_aliases
from tasks.mapping.automaton import EntityMatcher, key_of

# Kinds of edge source, in the order summaries list them.
KINDS = ("cid", "medquad", "pattern", "llm", "cooccurrence")
SENTENCE_KINDS = frozenset({"pattern", "llm", "cooccurrence"})   # support = sentences, else documents

DEFAULT_QTYPE_RELATIONS = {
    "symptoms": "has_symptom", "treatment": "treated_by", "causes": "caused_by",
    "exams and tests": "diagnosed_by", "prevention": "prevented_by", "susceptibility": "has_risk_factor",
    "complications": "has_complication", "genetic changes": "caused_by",
}


class TreeLookup:
    """Strings -> graph node indices (see module docstring)."""

    def __init__(self, norms: Sequence[str], matcher: EntityMatcher | None = None):
        self.index = {n: i for i, n in enumerate(norms)}
        self.folded: dict[str, int] = {}
        for i, n in enumerate(norms):            # norms are sorted: the first norm owns a shared key
            self.folded.setdefault(key_of(n), i)
        self.matcher = matcher

    def resolve(self, text: str) -> tuple[int, str] | None:
        if not isinstance(text, str) or not text.strip():
            return None
        i = self.index.get(normalize_entity(text))
        if i is not None:
            return i, "exact"
        i = self.folded.get(key_of(text))
        return (i, "folded") if i is not None else None

    def resolve_partial(self, text: str, min_cover: float) -> tuple[int, str] | None:
        found = self.resolve(text)
        if found is not None or self.matcher is None:
            return found
        hits = self.matcher.scan(text)
        if not hits:
            return None
        s, e, (norm, _) = max(hits, key=lambda h: (h[1] - h[0], -h[0]))
        if (e - s) / max(len(text.strip()), 1) < min_cover:
            return None
        return self.index[norm], "partial"


@dataclasses.dataclass
class _Edge:
    docs: set = dataclasses.field(default_factory=set)
    sentence_keys: set = dataclasses.field(default_factory=set)
    sentences: list = dataclasses.field(default_factory=list)
    tags: dict = dataclasses.field(default_factory=lambda: defaultdict(set))
    scores: dict = dataclasses.field(default_factory=dict)


class EdgeStore:
    """Edges keyed by (kind, head, relation, tail), each accumulating its provenance."""

    def __init__(self, max_docs: int, max_sentences: int):
        self.max_docs = max_docs
        self.max_sentences = max_sentences
        self.edges: dict[tuple[str, int, str, int], _Edge] = {}

    def add(self, kind: str, head: int, relation: str, tail: int, doc_id: str,
            sentence: Sentence | None = None, **tags: str) -> None:
        if relation in SYMMETRIC and head > tail:
            head, tail = tail, head
        e = self.edges.get((kind, head, relation, tail))
        if e is None:
            e = self.edges[(kind, head, relation, tail)] = _Edge()
        e.docs.add(doc_id)
        if sentence is not None:
            key = (sentence.doc_id, sentence.index)
            if key not in e.sentence_keys:
                e.sentence_keys.add(key)
                if len(e.sentences) < self.max_sentences:
                    e.sentences.append(sentence.provenance())
        for k, v in tags.items():
            e.tags[k].add(v)

    def set_scores(self, kind: str, head: int, relation: str, tail: int, **scores: float) -> None:
        self.edges[(kind, head, relation, tail)].scores.update(scores)

    def records(self, names: Sequence[str], kind_weights: dict[str, float]) -> list[dict]:
        """Edge records sorted by (head, tail, relation, kind); `id` = position in that order.

        weight = kind_weights[kind] * log(1 + support) (* npmi for co-occurrence), where support is
        the number of distinct supporting sentences (sentence-level kinds) or documents.
        """
        out = []
        for (kind, head, relation, tail), e in sorted(self.edges.items(),
                                                      key=lambda kv: (kv[0][1], kv[0][3], kv[0][2], kv[0][0])):
            support = len(e.sentence_keys) if kind in SENTENCE_KINDS else len(e.docs)
            w = kind_weights[kind] * math.log1p(support) * e.scores.get("npmi", 1.0)
            docs = sorted(e.docs)
            prov = {"kind": kind, "doc_ids": docs[:self.max_docs], "n_docs": len(docs),
                    "sentences": e.sentences, "n_sentences": len(e.sentence_keys),
                    **{k: sorted(v) for k, v in sorted(e.tags.items())}, **e.scores}
            out.append({"id": len(out), "head": names[head], "tail": names[tail], "head_idx": head,
                        "tail_idx": tail, "relation": relation, "kind": kind,
                        "directed": relation not in SYMMETRIC, "support": support,
                        "weight": round(w, 6), "provenance": prov})
        return out


def _pick(counter: Counter, names: Sequence[str]) -> int:
    """The concept's representative: most mentions, then the longer norm, then alphabetical."""
    return min(counter, key=lambda i: (-counter[i], -len(names[i]), names[i]))


def cid_relations(meta: dict, lookup: TreeLookup, names: Sequence[str], tally: Counter, kept_as: str = "kept"
                  ) -> list[tuple[int, int, str]]:
    """(disease node, chemical node, "chemMeSH>disMeSH") per usable CID relation of one document;
    usable relations are counted as `kept_as` ("heldout" for a document kept out as gold)."""
    by_mesh: dict[str, Counter] = defaultdict(Counter)
    mentioned: set[str] = set()
    composite: set[str] = set()
    for m in meta.get("mentions") or []:
        mid = m.get("id") if isinstance(m, dict) else None
        if not isinstance(mid, str) or mid in ("", "-1"):
            continue
        if "|" in mid:
            composite.update(x for x in mid.split("|") if x)
            continue
        mentioned.add(mid)
        found = lookup.resolve(m.get("text", ""))
        if found is not None:
            by_mesh[mid][found[0]] += 1
    out, seen = [], set()
    for r in meta.get("relations") or []:
        tally["read"] += 1
        chem, dis = (r.get("chemical"), r.get("disease")) if isinstance(r, dict) else (None, None)
        if not (isinstance(chem, str) and isinstance(dis, str)) or (isinstance(r, dict) and r.get("type", "CID") != "CID"):
            tally["rejected.malformed_relation"] += 1
            continue
        reason = None
        for side, mesh in (("chemical", chem), ("disease", dis)):
            if mesh not in mentioned:
                reason = f"{side}_composite_mention_only" if mesh in composite else f"{side}_no_mention"
            elif not by_mesh.get(mesh):
                reason = f"{side}_not_in_tree"
            if reason:
                break
        if reason is None:
            c, d = _pick(by_mesh[chem], names), _pick(by_mesh[dis], names)
            reason = "self_loop" if c == d else "duplicate_in_doc" if (d, c) in seen else None
        if reason:
            tally[f"rejected.{reason}"] += 1
            continue
        seen.add((d, c))
        tally[kept_as] += 1
        out.append((d, c, f"{chem}>{dis}"))
    return out


def answer_start(text: str, meta: dict) -> int:
    """Where a MedQuAD record's answer begins: after the question, when the text starts with it."""
    q = meta.get("question")
    return len(q) if isinstance(q, str) and q and text.startswith(q) else 0


def medquad_links(text: str, meta: dict, sentences: list[Sentence], lookup: TreeLookup,
                  qtype_relations: dict[str, str], max_tails: int, min_cover: float, tally: Counter
                  ) -> list[tuple[int, str, int, Sentence, str, str]]:
    """(focus node, relation, answer entity node, its first sentence, qtype, focus match) of one record."""
    tally["docs"] += 1
    focus, qtype = meta.get("focus"), meta.get("qtype")
    if not isinstance(focus, str) or not focus.strip():
        tally["rejected.focus_missing"] += 1
        return []
    relation = qtype_relations.get(qtype) if isinstance(qtype, str) else None
    if relation is None:
        tally["rejected.qtype_unmapped"] += 1
        tally[f"qtype_unmapped.{qtype}"] += 1
        return []
    found = lookup.resolve_partial(focus, min_cover)
    if found is None:
        tally["rejected.focus_not_in_tree"] += 1
        return []
    head, how = found
    start = answer_start(text, meta)
    aliases = {head}                          # "tuberculosis (TB)": TB names the focus, not a tail
    for s in sentences:
        for a, b in fold_aliases(s)[1]:
            if head in (a, b):
                aliases.update((a, b))
    tails: dict[int, Sentence] = {}
    for s in sentences:
        for h in s.hits:
            if h.start >= start and h.node not in aliases and h.node not in tails:
                tails[h.node] = s
    tally["focus_aliases"] += len(aliases) - 1
    if not tails:
        tally["rejected.no_answer_entities"] += 1
        return []
    if len(tails) > max_tails:
        tally["tails_capped"] += len(tails) - max_tails
    tally["docs_linked"] += 1
    tally[f"focus_{how}"] += 1
    out = [(head, relation, t, s, qtype, how) for t, s in list(tails.items())[:max_tails]]
    tally["links"] += len(out)
    return out


class Cooccurrence:
    """Sentence-level entity and pair counts, then NPMI-thresholded pairs (see module docstring)."""

    def __init__(self, max_pairs_per_sentence: int):
        self.max_pairs = max_pairs_per_sentence
        self.n_sentences = 0
        self.single: Counter = Counter()
        self.pair: Counter = Counter()
        self.capped_sentences = 0

    def pairs(self, s: Sentence) -> list[tuple[int, int]]:
        """The sentence's entity pairs (a < b), at most max_pairs, nearest first occurrences first."""
        first: dict[int, int] = {}
        for h in s.hits:
            first.setdefault(h.node, h.start)
        nodes = list(first)
        allp = [(min(a, b), max(a, b), abs(first[a] - first[b])) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
        if len(allp) > self.max_pairs:
            allp.sort(key=lambda p: (p[2], p[0], p[1]))
            allp = allp[:self.max_pairs]
        return [(a, b) for a, b, _ in allp]

    def add(self, s: Sentence) -> None:
        self.n_sentences += 1
        nodes = s.nodes
        self.single.update(nodes)
        if len(nodes) >= 2:
            n_all = len(nodes) * (len(nodes) - 1) // 2
            self.capped_sentences += n_all > self.max_pairs
            self.pair.update(self.pairs(s))

    def npmi(self, a: int, b: int) -> float:
        n, nab = self.n_sentences, self.pair[(a, b)]
        if nab == n:
            return 1.0
        return math.log(nab * n / (self.single[a] * self.single[b])) / -math.log(nab / n)

    def select(self, min_count: int, min_npmi: float, tally: Counter) -> dict[tuple[int, int], float]:
        """{(a, b): npmi} of the pairs that pass both thresholds; the others counted by reason."""
        kept = {}
        for (a, b), c in sorted(self.pair.items()):
            tally["pairs"] += 1
            if c < min_count:
                tally["rejected.below_min_count"] += 1
                continue
            score = self.npmi(a, b)
            if score < min_npmi:
                tally["rejected.below_min_npmi"] += 1
                continue
            kept[(a, b)] = round(score, 6)
        tally["kept"] += len(kept)
        return kept


def add_cooccurrence_edges(store: EdgeStore, co: Cooccurrence, kept: dict[tuple[int, int], float],
                           sentences: list[Sentence]) -> None:
    """One co_occurs_with edge per kept pair, with its documents and first sentences as provenance."""
    for s in sentences:
        for a, b in co.pairs(s):
            if (a, b) in kept:
                store.add("cooccurrence", a, CO_OCCURS, b, s.doc_id, s)
    for (a, b), score in kept.items():
        store.set_scores("cooccurrence", a, CO_OCCURS, b, npmi=score, count=co.pair[(a, b)])
