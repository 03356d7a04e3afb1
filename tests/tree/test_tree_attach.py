"""Stage 3 with the real all-MiniLM-L6-v2 (offline): a synonym-like entity attaches under the right
cluster, a far-off one is unclassified with the reason, bad rows never reach the encoder, and
deferred insertion leaves the frozen core untouched while a batch is decided."""

from __future__ import annotations

import json

import pytest

from tasks.tree.attach import LocalAttacher, attach_all
from tasks.tree.build import BuildParams, FrozenCore, build_core
from tasks.tree.conflicts import EvidenceIndex, LocalResolver
from tasks.tree.embed import Entity, embed, load_encoder, read_entities
from tasks.tree.model import validate_tree

GROUPS = {
    "heart": ["myocardial infarction", "heart failure", "cardiac arrhythmia", "coronary artery disease",
              "atrial fibrillation", "cardiomyopathy"],
    "cancer": ["breast cancer", "lung cancer", "colon carcinoma", "ovarian cancer", "prostate cancer",
               "pancreatic cancer"],
    "infection": ["bacterial pneumonia", "urinary tract infection", "sepsis", "tuberculosis",
                  "bacterial meningitis", "viral hepatitis"],
    "mind": ["major depression", "schizophrenia", "bipolar disorder", "anxiety disorder",
             "panic disorder", "psychosis"],
}


@pytest.fixture(scope="session")
def encoder():
    return load_encoder()          # cached per process: loaded once for all tree tests


def ent(text: str, count: int, etype: str = "Disease") -> Entity:
    return Entity(text, text, etype, count, 1, [{"text": text, "type": etype, "count": count}])


@pytest.fixture(scope="module")
def core_setup(encoder):
    ents = [ent(t, 50 - i) for g in GROUPS.values() for i, t in enumerate(g)]
    ents.sort(key=lambda e: (-e.count, e.norm))
    x = embed([e.norm for e in ents], seed=0)
    p = BuildParams(core_min_count=1, min_branching=3, max_branching=6, k_candidates=6)
    core = build_core(ents, x, list(range(len(ents))), p, seed=0)
    return ents, core, FrozenCore.freeze(core, True), p


def group_of(frozen: FrozenCore, node_id: str) -> set[str]:
    members = {n for n, nid in frozen.tree.entity_index().items()
               if frozen.tree.nodes[nid].parent == node_id}
    return {g for g, names in GROUPS.items() if members & set(names)}


def test_synonym_like_entities_attach_under_their_cluster(core_setup):
    ents, core, frozen, p = core_setup
    # the core clusters are the planted groups (the silhouette found the 4 groups)
    leaves = {nid for nid in frozen.ids if frozen.tree.entity_children(nid)}
    assert all(len(group_of(frozen, nid)) == 1 for nid in leaves)
    new = [ent("heart attack", 3), ent("carcinoma of the breast", 2), ent("staphylococcal sepsis", 2),
           ent("depressive disorder", 2)]
    expect = ["heart", "cancer", "infection", "mind"]
    q = embed([e.norm for e in new], seed=0)
    att = LocalAttacher(frozen, min_similarity=0.3, beam=1, conflict_margin=0.0)
    for e, v, want in zip(new, q, expect):
        d = att.decide(e, v)
        assert d.attached, (e.text, d.reason, d.detail)
        assert group_of(frozen, d.candidates[0].node_id) == {want}, (e.text, d.candidates[0].path)
        assert d.candidates[0].similarity >= 0.3


def test_far_entity_is_unclassified_with_reason_and_batches_are_deferred(core_setup):
    ents, core, frozen, p = core_setup
    new = [ent("heart attack", 3), ent("quarterly tax return form", 2), ent("depressive disorder", 2)]
    q = embed([e.norm for e in new], seed=0)
    working = core.tree.copy()
    seen_during = []

    class Spy(LocalAttacher):
        def decide_batch(self, entities, vectors):
            seen_during.append(len(working.nodes))     # the working tree only grows between batches
            return super().decide_batch(entities, vectors)

    att = Spy(frozen, min_similarity=0.35, beam=2, conflict_margin=0.02)
    res = attach_all(new, q, frozen, working, att, LocalResolver(frozen.tree, EvidenceIndex([])),
                     batch_size=2, max_tiers=p.max_tiers)
    assert [u["entity"] for u in res.unclassified] == ["quarterly tax return form"]
    u = res.unclassified[0]
    assert u["reason"] == "below_min_similarity" and "< min_similarity 0.35" in u["detail"]
    assert {a["entity"] for a in res.attachments} == {"heart attack", "depressive disorder"}
    assert seen_during == [len(core.tree.nodes), len(core.tree.nodes) + 1]   # batch 1 applied after
    assert frozen.tree.fingerprint() == frozen.fingerprint                  # the core never changed
    working.refresh()
    tree = validate_tree(working.to_json())
    assert not tree.nodes["e:heart attack"].core and tree.nodes["e:myocardial infarction"].core


def test_bad_rows_are_rejected_before_embedding(tmp_path, monkeypatch):
    rows = [{"norm": "sepsis", "text": "Sepsis", "type": "Disease", "count": 5, "doc_count": 3},
            {"norm": "", "text": "", "type": "Disease", "count": 2, "doc_count": 1},
            {"norm": "   ", "text": " \t", "type": "Disease", "count": 2, "doc_count": 1},
            {"norm": "x" * 10_000, "text": "x" * 10_000, "type": "Disease", "count": 2, "doc_count": 1},
            {"norm": "bad\x00name", "text": "bad", "type": "Disease", "count": 1, "doc_count": 1},
            {"norm": "sepsis", "text": "sepsis", "type": "Chemical", "count": 1, "doc_count": 1},
            {"norm": 5, "text": "five"},
            {"norm": "neg", "count": -1},
            ["not", "an", "object"]]
    f = tmp_path / "entities.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n")
    f.write_bytes(f.read_bytes() + b"\xff\xfe\n")
    ents, rejected, read = read_entities(f, max_entity_chars=200)
    assert read == 11
    assert [e.norm for e in ents] == ["sepsis"] and ents[0].count == 6 and len(ents[0].rows) == 2
    assert ents[0].types == ["Disease", "Chemical"]          # a second type: a conflict source
    assert [r["reason"] for r in rejected] == ["empty_entity", "empty_entity", "entity_too_long",
                                               "control_chars", "bad_row", "bad_row", "bad_row",
                                               "bad_json", "invalid_utf8"]
    assert all(r["rows"] == 1 and r["detail"] for r in rejected)
    assert len(ents) + len(rejected) == read - 1              # two rows merged into one entity
