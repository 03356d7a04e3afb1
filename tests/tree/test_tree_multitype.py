"""Multi-type entities: the entity table's `alt_types` reach the tree as more candidate types of the
same mentions (the count is not doubled), and the local attacher then finds a parent under each type
node -- a conflict the resolver must decide, which one type per entity could never produce."""

from __future__ import annotations

import json

from tasks.tree.attach import LocalAttacher
from tasks.tree.build import BuildParams, FrozenCore, build_core
from tasks.tree.embed import Entity, embed, read_entities

SYMPTOMS = ["fever", "cough", "headache", "nausea", "fatigue", "dizziness"]
DISEASES = ["influenza", "common cold", "pneumonia", "bronchitis", "measles", "tuberculosis"]


def _row(norm, etype, count, **extra):
    return {"norm": norm, "text": norm, "type": etype, "count": count, "doc_count": count, **extra}


def test_alt_types_become_candidate_types_without_more_mentions(tmp_path):
    path = tmp_path / "entities.jsonl"
    rows = [_row("cold", "Symptom", 9, types={"Disease": 4, "Symptom": 9}, alt_types=["Disease"]),
            _row("fever", "Symptom", 5, types={"Symptom": 5}, alt_types=[]),
            _row("bad", "Symptom", 2, alt_types="Disease")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ents, rejected, read = read_entities(path)
    cold = next(e for e in ents if e.norm == "cold")
    assert cold.types == ["Symptom", "Disease"] and cold.count == 9 and cold.type == "Symptom"
    assert cold.input_rows == 1          # one line read: the accounting unit of the tree stage
    assert next(e for e in ents if e.norm == "fever").types == ["Symptom"]
    assert read == 3 and [r["reason"] for r in rejected] == ["bad_row"]


def test_a_multi_type_entity_gets_a_candidate_under_each_type():
    core_ents = [Entity(t, t, "Symptom", 40 - i, 1, [{"text": t, "type": "Symptom", "count": 40 - i}])
                 for i, t in enumerate(SYMPTOMS)]
    core_ents += [Entity(t, t, "Disease", 30 - i, 1, [{"text": t, "type": "Disease", "count": 30 - i}])
                  for i, t in enumerate(DISEASES)]
    core_ents.sort(key=lambda e: (-e.count, e.norm))
    x = embed([e.norm for e in core_ents], seed=0)
    p = BuildParams(core_min_count=1, min_branching=2, max_branching=6, k_candidates=4, min_type_size=2)
    core = build_core(core_ents, x, list(range(len(core_ents))), p, seed=0)
    frozen = FrozenCore.freeze(core, True)
    assert set(frozen.type_nodes) == {"Symptom", "Disease"}
    att = LocalAttacher(frozen, min_similarity=0.1, beam=1, conflict_margin=0.0)
    (q,) = embed(["chills"], seed=0)
    single = Entity("chills", "chills", "Symptom", 3, 1, [{"text": "chills", "type": "Symptom", "count": 3}])
    multi = Entity("chills", "chills", "Symptom", 3, 1, [{"text": "chills", "type": "Symptom", "count": 3},
                                                         {"text": "chills", "type": "Disease", "count": 1}])
    one = att.decide(single, q)
    both = att.decide(multi, q)
    assert len(one.candidates) == 1
    roots = {frozen.tree.path(c.node_id).split(".")[0] for c in both.candidates}
    assert roots == {"Symptom", "Disease"}, [c.path for c in both.candidates]
