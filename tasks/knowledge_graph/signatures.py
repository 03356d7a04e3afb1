"""Type signatures of the KG's relations: which entity types may be a relation's head and tail, and
the check that rejects the edges that break them.

Node type = the tree's tier-1 category name (run.entity_type). The entities stage types every entity
as exactly one of ENTITY_TYPES (Symptom = symptom or sign, Chemical = chemical or drug, Test =
diagnostic test or laboratory measurement). Why check: the edge sources type relations by their
*context*, not by what the two entities are. A MedQuAD "treatment" answer names drugs, but also the
disease's other names, its complications and the tests that monitor it, and every one of them used to
become `treated_by`; a lexical pattern such as "Y of the X" says `located_in` only when X is a body
part. The signature is the one place where "what may this relation connect" is written down; an edge
whose head or tail type is not allowed is not an edge of the graph: it goes to rejected_edges/ with
the reason `signature_violation`, counted by relation, kind and (head type, tail type).

DEFAULT_SIGNATURES, and why each set (relations are condition-centred: the head is the condition):

    caused_by         Disease|Symptom -> Chemical|Organism|Gene|Disease|Procedure
                      drugs and toxins (CID), pathogens, mutations, other conditions (a complication
                      as a cause), iatrogenic procedures ("radiation-induced"); not anatomy or tests
    treated_by        Disease|Symptom -> Chemical|Procedure      drugs and interventions only
    has_symptom       Disease -> Symptom                         a symptom has no symptoms
    diagnosed_by      Disease|Symptom -> Test|Procedure          tests, imaging, biopsy
    prevented_by      Disease|Symptom -> Chemical|Procedure      vaccines and prophylactic drugs are
                      Chemicals, screening and surgery Procedures; Organism is left out: an organism
                      in a prevention answer is nearly always the pathogen being prevented
    has_risk_factor   Disease|Symptom -> anything but Anatomy and Test  (a body part or a test is
                      never a risk factor; exposures, conditions, drugs, genes, organisms can be)
    has_complication  Disease|Procedure -> Disease|Symptom       complications of a condition or of
                      an intervention ("surgery complicated by bleeding") are conditions
    located_in        Disease|Symptom -> Anatomy                 where a condition sits; the lexical
                      patterns for it ("Y of the X", "Y in the X") are only usable because this
                      signature rejects every non-anatomy tail
    associated_with, co_occurs_with: unconstrained (they assert no typed relation)

`KgConfig.signatures` holds the table (these defaults; params.yaml may replace it); a relation
without an entry is unconstrained, `signatures: {}` switches the check off.

Types outside ENTITY_TYPES (e.g. "Entity" for a node directly under the root, or a tree built before
the eight types) satisfy no constrained signature: such an edge is rejected like any other violation
and also counted under `rejected_unknown_type`, so a typing gap upstream shows as such. When *no*
node has a known type (a tree without a type tier: every node is "Entity"), signatures cannot be
checked at all; rejecting every typed edge would empty the graph for a reason that says nothing
about the edges, so the check is reported `applicable: false` (with the types seen) and every edge
is kept.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence

from tasks.common.records import rejection
from tasks.knowledge_graph.relations import ALL_RELATIONS

ENTITY_TYPES = ("Anatomy", "Disease", "Symptom", "Chemical", "Procedure", "Test", "Organism", "Gene")
REASON = "signature_violation"


@dataclasses.dataclass
class RelationSignature:
    """The entity types a relation's head and tail may have (each a non-empty subset of ENTITY_TYPES)."""
    head: list[str]
    tail: list[str]

    def __post_init__(self):
        for side in ("head", "tail"):
            types = getattr(self, side)
            bad = sorted(set(types) - set(ENTITY_TYPES))
            if not types or bad:
                raise ValueError(f"{side} must be a non-empty list of {list(ENTITY_TYPES)}"
                                 + (f"; unknown type(s) {bad}" if bad else ""))

    def allows(self, head_type: str, tail_type: str) -> bool:
        return head_type in self.head and tail_type in self.tail


_CONDITION = ["Disease", "Symptom"]
DEFAULT_SIGNATURES: dict[str, dict[str, list[str]]] = {
    "caused_by": {"head": _CONDITION, "tail": ["Chemical", "Organism", "Gene", "Disease", "Procedure"]},
    "treated_by": {"head": _CONDITION, "tail": ["Chemical", "Procedure"]},
    "has_symptom": {"head": ["Disease"], "tail": ["Symptom"]},
    "diagnosed_by": {"head": _CONDITION, "tail": ["Test", "Procedure"]},
    "prevented_by": {"head": _CONDITION, "tail": ["Chemical", "Procedure"]},
    "has_risk_factor": {"head": _CONDITION,
                        "tail": ["Disease", "Symptom", "Chemical", "Procedure", "Organism", "Gene"]},
    "has_complication": {"head": ["Disease", "Procedure"], "tail": _CONDITION},
    "located_in": {"head": _CONDITION, "tail": ["Anatomy"]},
}


def default_signatures() -> dict[str, RelationSignature]:
    return {r: RelationSignature(list(s["head"]), list(s["tail"])) for r, s in DEFAULT_SIGNATURES.items()}


def check_relations(signatures: dict[str, RelationSignature]) -> None:
    bad = sorted(set(signatures) - set(ALL_RELATIONS))
    if bad:
        raise ValueError(f"signatures: unknown relation(s) {bad}; known: {list(ALL_RELATIONS)}")


def edge_key(kind: str, head: str, relation: str, tail: str) -> str:
    """The stable key of an edge across runs: its kind, relation and the two entity norms."""
    return f"{kind}|{head}|{relation}|{tail}"


class SignatureCheck:
    """Splits edge records into kept and rejected by the relation signatures (module docstring)."""

    def __init__(self, signatures: dict[str, RelationSignature], node_types: Sequence[str]):
        self.signatures = signatures
        self.node_types = node_types
        self.unknown_types = Counter(t for t in node_types if t not in ENTITY_TYPES)
        self.applicable = any(t in ENTITY_TYPES for t in set(node_types))

    def violation(self, relation: str, head_type: str, tail_type: str) -> str | None:
        """Why (head_type, relation, tail_type) breaks its signature, or None if it does not."""
        sig = self.signatures.get(relation)
        if not self.applicable or sig is None or sig.allows(head_type, tail_type):
            return None
        unknown = [t for t in dict.fromkeys((head_type, tail_type)) if t not in ENTITY_TYPES]
        note = f" ({', '.join(unknown)}: not an entity type)" if unknown else ""
        return (f"{relation} expects head {'|'.join(sig.head)} and tail {'|'.join(sig.tail)}, "
                f"got {head_type} -> {tail_type}{note}")

    def partition(self, edges: Iterable[dict]) -> tuple[list[dict], list[dict], dict]:
        """(kept edges, rejection entries, summary: what was checked, violations by relation, head
        type, tail type). Kept edges are renumbered (`id` = position in edges.jsonl); a rejected edge
        keeps its provenance in the entry's record, with its key as id (it has no position in
        edges.jsonl) and the two node types."""
        kept, rejected = [], []
        checked, unconstrained, unknown = Counter(), Counter(), Counter()
        violations: dict[str, dict[str, Counter]] = {}
        for e in edges:
            ht, tt = self.node_types[e["head_idx"]], self.node_types[e["tail_idx"]]
            rel = e["relation"]
            (checked if self.applicable and rel in self.signatures else unconstrained)[rel] += 1
            why = self.violation(rel, ht, tt)
            if why is None:
                e["id"] = len(kept)
                kept.append(e)
                continue
            violations.setdefault(rel, {}).setdefault(ht, Counter())[tt] += 1
            if ht not in ENTITY_TYPES or tt not in ENTITY_TYPES:
                unknown[rel] += 1
            key = edge_key(e["kind"], e["head"], rel, e["tail"])
            rec = {**{k: v for k, v in e.items() if k not in ("id", "weight")}, "id": key,
                   "head_type": ht, "tail_type": tt}
            rejected.append(rejection(REASON, why, record=rec, locator=f"edge:{key}"))
        summary = {
            "applicable": self.applicable,
            "relations_constrained": sorted(self.signatures),
            "node_types_unknown": dict(sorted(self.unknown_types.items())),
            "edges_checked": sum(checked.values()), "edges_unconstrained": sum(unconstrained.values()),
            "rejected": len(rejected),
            "rejected_unknown_type": dict(sorted(unknown.items())),
            "violations": {r: {h: dict(sorted(c.items())) for h, c in sorted(v.items())}
                           for r, v in sorted(violations.items())},
        }
        if not self.applicable:
            summary["not_applicable"] = (f"no node has one of the entity types {list(ENTITY_TYPES)} "
                                         f"(types seen: {sorted(self.unknown_types)}): every edge kept")
        return kept, rejected, summary
