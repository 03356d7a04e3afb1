"""The dangling-reference filter: each reason on a real-looking sentence, answers may lean on their question."""

from __future__ import annotations

import pytest

from tasks.cpt_synthesis.samples import make_sample
from tasks.cpt_synthesis.self_contained import dangling_reference, filter_self_contained


@pytest.mark.parametrize("text,reason", [
    ("As mentioned above, metformin lowers glucose.", "external_reference"),
    ("The aforementioned drug is contraindicated in renal failure.", "external_reference"),
    ("The following table lists the reference ranges for adults.", "external_reference"),
    ("Lesion size is summarized in Table 2.", "figure_table_reference"),
    ("As shown in Figure 2, the nodule enlarged.", "figure_table_reference"),
    ("The nodule enlarged over six months (Fig. 3A).", "figure_table_reference"),
    ("In this study, 40% of participants improved.", "study_reference"),
    ("Our patients tolerated the regimen well.", "study_reference"),
    ("These patients developed lactic acidosis. Metformin was stopped.", "dangling_demonstrative"),
    ("It is caused by a deficiency of factor VIII.", "pronoun_start"),
    ("They are treated with inhaled corticosteroids.", "pronoun_start"),
    ("如图2所示，病灶位于右肺上叶。", "figure_table_reference"),
    ("本研究纳入了120名患者。", "study_reference"),
])
def test_dangling_reasons(text, reason):
    found = dangling_reference(text)
    assert found is not None and found[0] == reason


@pytest.mark.parametrize("text", [
    "Hemophilia A is caused by a deficiency of factor VIII.",
    "Asthma can be treated with inhaled corticosteroids. These drugs reduce airway inflammation.",
    "Thyroid-stimulating hormone above the reference range suggests hypothyroidism.",
    "Table salt intake raises blood pressure in salt-sensitive people.",   # 'table' not followed by a number
])
def test_self_contained_texts_pass(text):
    assert dangling_reference(text) is None


def test_answers_may_point_at_their_question_but_not_outside():
    ok = make_sample("text", "atomic_qa", ["e"], messages=[
        {"role": "user", "content": "What causes hemophilia A?"},
        {"role": "assistant", "content": "It is caused by a deficiency of factor VIII."}])
    outside = make_sample("text", "atomic_qa", ["e"], messages=[
        {"role": "user", "content": "What causes hemophilia A?"},
        {"role": "assistant", "content": "As shown in Figure 1, factor VIII is low."}])
    vague_q = make_sample("text", "atomic_qa", ["e"], messages=[
        {"role": "user", "content": "What causes it?"}, {"role": "assistant", "content": "Factor VIII deficiency."}])
    passage = make_sample("text", "passage", ["e"], text="This study enrolled 40 adults with asthma.")
    out = filter_self_contained([ok, outside, vague_q, passage])
    assert out.kept == [ok]
    assert [r["reason"] for r in out.rejected] == ["figure_table_reference", "unresolved_pronoun", "study_reference"]
    assert out.rejected[0]["item"]["id"] == outside["id"] and "Figure 1" in out.rejected[0]["detail"]
