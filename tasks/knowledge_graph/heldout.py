"""Edge precision against held-out gold: the PubTator CID relations of documents kept out of the KG.

Why held out: CID relations are curated chemical-induced-disease pairs, the only relation gold in the
corpus, but they are also an edge source; measured on documents whose CID relations became edges, the
graph would be checked against itself. So a seeded share of the PubTator documents that carry CID
relations gives no `cid` edges (counted `heldout` in the cid tally) and is the gold the graph's other
paths are measured on. Their text is still read like any document: its pattern/LLM relations and
co-occurrences are what is measured.

Selection: a document with at least one CID relation is held out when
    u = int(sha256(f"{seed}:cid-heldout:{doc_id}")[:8 bytes]) / 2**64  <  cid_fraction
-- a function of the seed and the document id only: a re-run, a reordered or grown corpus hold out
the same documents, and a larger fraction holds out a superset.

Gold: the document's CID relations resolved to tree nodes exactly as `cid_relations` resolves them
for edges; doc-level (disease node, chemical node) pairs. A relation that does not resolve is counted
by reason in the cid tally (gold_relations_not_usable here) and is not gold: no path of the graph
could name it.

Predictions, doc-level pairs of each held-out document, scored micro over (doc, disease, chemical):
- the typed relation path (`pattern`, or `llm` with relations=llm: only the sentences selected for
  the LLM are asked, so its recall is bounded by that sample): `caused_by` relations whose head is
  typed Disease|Symptom and tail Chemical -- CID's scope. A caused_by with another tail type (a gene,
  an organism) is outside what CID annotates, neither right nor wrong here: counted out_of_scope;
- `cooccurrence_baseline`: every (Disease|Symptom, Chemical) pair sharing a sentence of the document,
  before any count or NPMI threshold -- what "co-occurrence means relation" would claim.
Each gets tp / fp / fn, precision with a Wilson 95% interval, recall (tasks/knowledge_graph/precision.py).

Signature effect: of the caused_by relations found in held-out documents, how many the signature check
rejects and how many of those are gold (correct pairs the check removes); and the gold pairs whose
tree types break the caused_by signature (what the check would cost CID itself).

With no typed nodes (the signature check not applicable) types cannot define CID's scope: every
caused_by relation and every co-occurring pair is scored, unordered, and the report says so.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from tasks.knowledge_graph.precision import precision_recall
from tasks.knowledge_graph.relations import Relation, Sentence
from tasks.knowledge_graph.signatures import SignatureCheck

CID_HEAD_TYPES = frozenset({"Disease", "Symptom"})
CID_TAIL_TYPES = frozenset({"Chemical"})
RELATION = "caused_by"


def heldout_value(seed: int, doc_id: str) -> float:
    """The document's uniform draw in [0, 1): held out when below the fraction."""
    digest = hashlib.sha256(f"{seed}:cid-heldout:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


class HeldOutCid:
    """Holds out CID documents, collects their gold and predicted pairs, scores them (module docstring)."""

    def __init__(self, seed: int, fraction: float, check: SignatureCheck):
        self.seed = seed
        self.fraction = fraction
        self.check = check
        self.types = check.node_types
        self.typed = check.applicable
        self.tally: Counter = Counter()          # cid_relations counts of the held-out documents
        self.docs_with_cid = 0
        self.docs: set[str] = set()
        self.gold: set[tuple[str, int, int]] = set()
        self.found: dict[str, set[tuple[str, int, int]]] = defaultdict(set)   # kind -> caused_by pairs
        self.cooccurring: set[tuple[str, int, int]] = set()

    def holds_out(self, doc_id: str, meta: dict) -> bool:
        """Whether this PubTator document is held out (only documents with CID relations can be)."""
        if not meta.get("relations"):
            return False
        self.docs_with_cid += 1
        if heldout_value(self.seed, doc_id) < self.fraction:
            self.docs.add(doc_id)
            return True
        return False

    def _pair(self, doc_id: str, condition: int, chemical: int) -> tuple[str, int, int]:
        return (doc_id, condition, chemical) if self.typed else (doc_id, *sorted((condition, chemical)))

    def _in_scope(self, head: int, tail: int) -> bool:
        return not self.typed or (self.types[head] in CID_HEAD_TYPES and self.types[tail] in CID_TAIL_TYPES)

    def add_gold(self, doc_id: str, pairs: Iterable[tuple[int, int]]) -> None:
        self.gold.update(self._pair(doc_id, d, c) for d, c in pairs)

    def add_sentence(self, s: Sentence) -> None:
        """Co-occurrence baseline: every CID-scope pair sharing the sentence (no threshold)."""
        nodes = s.nodes
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                for head, tail in ((a, b), (b, a)):
                    if self._in_scope(head, tail):
                        self.cooccurring.add(self._pair(s.doc_id, head, tail))
                        break

    def add_relation(self, kind: str, r: Relation) -> None:
        if r.relation == RELATION and r.sentence.doc_id in self.docs:
            self.found[kind].add((r.sentence.doc_id, r.head, r.tail))

    def report(self, kinds: Sequence[str]) -> dict:
        """edge_precision.json's `heldout_cid` block for the typed path(s) `kinds`."""
        gold_violating = sum(self.check.violation(RELATION, self.types[d], self.types[c]) is not None
                             for _, d, c in self.gold) if self.typed else 0
        scores, effect = {}, {}
        for kind in kinds:
            found = self.found.get(kind, set())
            scored = {self._pair(doc, h, t) for doc, h, t in found if self._in_scope(h, t)}
            rejected = {(doc, h, t) for doc, h, t in found
                        if self.check.violation(RELATION, self.types[h], self.types[t]) is not None}
            scores[kind] = precision_recall(scored, self.gold)
            effect[kind] = {"caused_by_found": len(found), "in_scope": len(scored),
                            "out_of_scope": len(found) - len(scored),
                            "rejected_by_signature": len(rejected),
                            "rejected_but_gold": sum(self._pair(*p) in self.gold for p in rejected)}
        scope = ("caused_by, head Disease|Symptom, tail Chemical (PubTator CID: chemical-induced disease); "
                 "doc-level pairs" if self.typed else
                 "no typed nodes: every caused_by relation and co-occurring pair, unordered; doc-level pairs")
        return {"cid_fraction": self.fraction, "docs_with_cid": self.docs_with_cid,
                "docs_heldout": len(self.docs), "gold_relations_read": self.tally["read"],
                "gold_relations_not_usable": sum(v for k, v in self.tally.items() if k.startswith("rejected.")),
                "gold_pairs": len(self.gold), "gold_pairs_violating_signature": gold_violating,
                "typed": self.typed, "scope": scope, "relations": scores,
                "cooccurrence_baseline": precision_recall(self.cooccurring, self.gold),
                "signature_effect": effect}
