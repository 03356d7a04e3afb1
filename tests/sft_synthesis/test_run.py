"""The stage's own pieces: the KG annotator the grid and the rewriter use, the instruction-following base
items, and the ledger that puts every rejection under the source it came from."""

from __future__ import annotations

import pytest

from tasks.sft_synthesis.run import Annotator, _ledger_key, _reject_into, instruct_base
from tasks.sft_synthesis.samples import GateOutcome, sft_sample, with_messages

NODES = [
    {"name": "Pneumonia", "norm": "pneumonia", "type": "Disease", "tree_path": ["Disease", "infection", "lung"]},
    {"name": "left lung", "norm": "left lung", "type": "Anatomy", "tree_path": ["Anatomy", "respiratory"]},
    {"name": "MRI", "norm": "mri", "type": "Procedure", "tree_path": ["Procedure"]},
    {"name": "E. coli", "norm": "e. coli", "type": "Organism", "tree_path": ["Organism", "bacteria"]},   # not annotated
    {"name": "ab", "norm": "ab", "type": "Disease", "tree_path": []},                                  # too short
]


def test_annotator_finds_typed_entities_with_their_tree_class():
    a = Annotator(NODES)
    text = "Pneumonia of the left lung on MRI; an mri in lower case is not matched, pneumonia again, E. coli grew, ab."
    # in order of first mention, each once; an upper-case acronym matches only as written; the tree class is
    # the first level under the type, None for a node on the type itself; organisms are not grid axes and
    # names under 3 characters are too ambiguous to place a sample
    assert a(text) == [("Pneumonia", "Disease", "infection"), ("left lung", "Anatomy", "respiratory"),
                       ("MRI", "Procedure", None)]
    assert a.names("the LEFT LUNG") == ["left lung"]
    assert a("nothing medical") == []


def _qa(q, a, source="medquad"):
    return sft_sample(source, [f"doc:{q}"], [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                      answer=a, answer_kind="open", accuracy="consensus")


def test_instruct_base_is_sorted_bounded_and_keyed_by_question_entities():
    a = Annotator(NODES)
    rows = [_qa("What causes pneumonia in the left lung?", "Bacteria and viruses."),
            _qa("How is MRI used?", "It images the chest."), _qa("Why?", "Because.")]
    base = instruct_base(rows, a, 2)
    assert [b["id"] for b in base] == sorted(r["id"] for r in rows)[:2]
    by_q = {b["question"]: b for b in instruct_base(rows, a, 10)}
    assert by_q["What causes pneumonia in the left lung?"]["keywords"] == ["Pneumonia", "left lung"]
    assert by_q["Why?"]["keywords"] == [] and by_q["Why?"]["answer"] == "Because."


def test_rejections_land_under_their_source_and_variants_under_rewrite():
    s = _qa("What is pneumonia?", "A lung infection.", source="pubmedqa")
    v = with_messages(s, [{"role": "user", "content": "Could you explain what pneumonia is?"}, s["messages"][1]],
                      rewrite_of=s["id"], rewriter="local")
    assert (_ledger_key(s), _ledger_key(v)) == ("pubmedqa", "rewrite")
    ledger = {"pubmedqa": GateOutcome(), "rewrite": GateOutcome()}
    _reject_into(ledger, [{"gate": "coverage", "reason": "cell_over_target", "item": {"id": s["id"]}},
                          {"gate": "decontamination", "reason": "benchmark_text", "item": {"id": v["id"]}},
                          {"gate": "human", "reason": "awaiting_review", "item": {"id": "gone", "source": "pubmedqa"}}],
                 {s["id"]: s, v["id"]: v})
    assert [len(ledger[k].rejected) for k in ("pubmedqa", "rewrite")] == [2, 1]
    with pytest.raises(RuntimeError, match="no known source"):     # never silently filed under a made-up source
        _reject_into(ledger, [{"gate": "x", "reason": "y", "item": "not a dict"}], {})
