"""Conflict resolution, local path: evidence from the real Disease Ontology definitions (BM25) and the
paper's principles; the etiology/anatomy parent beats the symptom parent, with an audit record."""

from __future__ import annotations

import pytest

from tasks.tree.attach import Candidate, Decision, attach_all
from tasks.tree.conflicts import (
    ETIOLOGY_ANATOMY,
    SYMPTOM,
    EvidenceIndex,
    LocalResolver,
    cue_hits,
    read_obo_definitions,
    tokenize,
)
from tasks.tree.embed import Entity
from tasks.tree.model import ENTITY, Node, Tree


@pytest.fixture(scope="module")
def doid_defs(data_root):
    return read_obo_definitions(data_root / "vocab" / "doid_2016-09-01.obo")


def small_tree() -> Tree:
    t = Tree([Node("c", "Medical Entity Tree", None, 0), Node("c1", "Disease", "c", 1),
              Node("c1.1", "neurological disorders", "c1", 2), Node("c1.2", "digestive symptoms", "c1", 2),
              Node("c1.1.1", "temporal lobe epilepsy", "c1.1", 3)])
    for norm, parent, freq in [("epilepsy", "c1.1", 9), ("brain injury", "c1.1", 7),
                               ("temporal lobe lesion", "c1.1.1", 5), ("nausea", "c1.2", 9),
                               ("vomiting", "c1.2", 8), ("abdominal pain", "c1.2", 6)]:
        tier = t.nodes[parent].tier + 1
        t.add(Node(f"e:{norm}", norm, parent, tier, ENTITY, [norm], freq, True))
    t.refresh()
    return t


def kluver() -> Entity:
    return Entity("kluver-bucy syndrome", "Kluver-Bucy syndrome", "Disease", 2, 1,
                  [{"text": "Kluver-Bucy syndrome", "type": "Disease", "count": 2}])


def test_obo_definitions_are_evidence_text(doid_defs):
    # 3,309 def: lines, minus 538 obsolete terms and 6 non-[Term] stanzas
    ids = dict(doid_defs)
    assert len(doid_defs) == 2765 and ids["DOID:2510"].startswith("Kluver-Bucy syndrome: An impulse")
    assert all(i.startswith("DOID:") for i, _ in doid_defs)


def test_cue_lexicons():
    assert cue_hits(tokenize("Neurological Disorders of the temporal lobes"), ETIOLOGY_ANATOMY) == \
        ["disorders", "lobes", "neurological", "temporal"]
    assert cue_hits(tokenize("Digestive Symptoms: nausea, vomiting"), SYMPTOM) == \
        ["nausea", "symptoms", "vomiting"]
    assert cue_hits(["early", "significant"], ETIOLOGY_ANATOMY + SYMPTOM) == []   # short cues are exact


def test_etiology_parent_beats_symptom_parent_with_audit(doid_defs):
    tree = small_tree()
    index = EvidenceIndex(doid_defs + [("corpus-1#s0", "Nausea and vomiting are common symptoms.")])
    resolver = LocalResolver(tree, index)
    # the symptom parent comes first and is even slightly more similar: the principles must win
    d = Decision(kluver(), "local", [Candidate("c1.2", "Disease.digestive symptoms", 0.52, "type:Disease"),
                                     Candidate("c1.1", "Disease.neurological disorders", 0.51, "margin")])
    audit = resolver.resolve(d)
    assert audit["decision"] == {"keep": "Disease.neurological disorders", "keep_node": "c1.1",
                                 "delete": ["Disease.digestive symptoms"]}
    assert audit["path"] == "local" and audit["entity"] == "kluver-bucy syndrome"
    assert audit["evidence"][0]["doc_id"] == "DOID:2510"               # the definition was retrieved
    assert "temporal lobes" in audit["evidence"][0]["snippet"]
    a, b = audit["candidates"]
    assert a["label"] == "A" and b["label"] == "B"
    assert a["scores"]["etiology"] < 0 < b["scores"]["etiology"]
    assert "nausea" in a["scores"]["symptom_cues"] and "neurological" in b["scores"]["etiology_cues"]
    assert b["scores"]["total"] > a["scores"]["total"]
    assert "symptom-based" in audit["reasoning"] and "etiology/anatomy-based" in audit["reasoning"]
    assert audit["reasoning"].endswith("keep B (Disease.neurological disorders).")


def test_more_specific_parent_wins_between_ancestor_and_descendant():
    tree = small_tree()
    resolver = LocalResolver(tree, EvidenceIndex([]))
    d = Decision(kluver(), "local", [Candidate("c1.1", "Disease.neurological disorders", 0.5),
                                     Candidate("c1.1.1", "Disease.neurological disorders.temporal lobe epilepsy",
                                               0.5)])
    audit = resolver.resolve(d)
    assert audit["decision"]["keep_node"] == "c1.1.1" and audit["evidence"] == []


def test_conflicts_are_resolved_inside_the_batch_and_audited(doid_defs):
    tree = small_tree()

    class TwoParents:
        method = "local"

        def decide_batch(self, entities, vectors):
            return [Decision(e, "local", [Candidate("c1.2", "Disease.digestive symptoms", 0.52),
                                          Candidate("c1.1", "Disease.neurological disorders", 0.51)])
                    for e in entities]

    from tasks.tree.build import FrozenCore
    frozen = FrozenCore(tree, ("c", "c1", "c1.1", "c1.1.1", "c1.2"), None, {}, {}, tree.fingerprint())
    working = tree.copy()
    res = attach_all([kluver()], None, frozen, working, TwoParents(),
                     LocalResolver(tree, EvidenceIndex(doid_defs)), batch_size=8, max_tiers=5)
    assert len(res.audits) == 1 and res.attachments[0]["conflict"] is True
    assert res.attachments[0]["path"] == "Disease.neurological disorders"
    assert working.nodes["e:kluver-bucy syndrome"].parent == "c1.1"
