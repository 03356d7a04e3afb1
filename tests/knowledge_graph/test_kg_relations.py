"""The relation vocabulary, sentence units and the local lexical pattern extractor of the kg stage."""

from __future__ import annotations

import pytest
from knowledge_graph.test_kg_fixtures import kg_tree

from tasks.knowledge_graph.relations import (
    ALL_RELATIONS,
    PATTERNS,
    RELATIONS,
    Hit,
    PatternExtractor,
    canonical_relation,
    fold_aliases,
    sentence_units,
)
from tasks.mapping.automaton import EntityMatcher, tree_entries

TREE = kg_tree()
NORMS = sorted(n.members[0] for n in TREE.nodes.values() if n.kind == "entity")
INDEX = {n: i for i, n in enumerate(NORMS)}
MATCHER = EntityMatcher(tree_entries(TREE))


def hits_of(text: str) -> list[Hit]:
    return [Hit(INDEX[p[0]], s, e) for s, e, p in MATCHER.scan(text)]


def relations(text: str) -> set[tuple[str, str, str, str]]:
    sentences, _ = sentence_units("d", text, hits_of(text), 600)
    ex = PatternExtractor()
    return {(NORMS[r.head], r.relation, NORMS[r.tail], r.method) for s in sentences for r in ex.extract(s)}


def test_vocabulary_and_aliases():
    assert set(RELATIONS) < set(ALL_RELATIONS) and "co_occurs_with" not in RELATIONS
    assert canonical_relation("treated_by") == ("treated_by", False)
    assert canonical_relation(" Treats ") == ("treated_by", True)
    assert canonical_relation("symptom of") == ("has_symptom", True)
    assert canonical_relation("has-symptom") == ("has_symptom", False)
    assert canonical_relation("cures") is None and canonical_relation(3) is None
    assert {p.relation for p in PATTERNS} <= set(RELATIONS)
    assert len({p.name for p in PATTERNS}) == len(PATTERNS)
    assert canonical_relation("affects") == ("located_in", False) and canonical_relation("site of") == ("located_in", True)


def test_located_in_reaches_the_llm_prompt_and_schema():
    from tasks.knowledge_graph.llm import LLMRelationParams, batch_messages, response_format
    from tasks.knowledge_graph.relations import RELATION_GLOSS, Sentence
    assert "located_in" in RELATIONS and "located_in" in RELATION_GLOSS
    prompt = batch_messages([Sentence("d", 0, 0, 10, "Asthma of the lung.", [])], [[(0, "asthma")]])[1]["content"]
    assert f"- located_in: {RELATION_GLOSS['located_in']}" in prompt
    schema = response_format(1, LLMRelationParams())["schema"]["properties"]["Sentence0"]["anyOf"][1]
    assert "located_in" in schema["items"]["prefixItems"][1]["enum"]


@pytest.mark.parametrize("text, expected", [
    ("Cocaine-induced hypertension was seen.", ("hypertension", "caused_by", "cocaine", "x_induced_y")),
    ("Hypertension caused by cocaine is common.", ("hypertension", "caused_by", "cocaine", "y_caused_by_x")),
    ("Hypertension (HTN) was probably induced by cocaine.", ("hypertension", "caused_by", "cocaine", "y_caused_by_x")),
    ("Seizures due to cocaine.", ("seizures", "caused_by", "cocaine", "y_due_to_x")),
    ("Cocaine can cause seizures.", ("seizures", "caused_by", "cocaine", "x_causes_y")),
    ("Seizures in patients treated with cocaine.", ("seizures", "caused_by", "cocaine", "y_in_patients_treated_with_x")),
    ("Albuterol for the treatment of asthma.", ("asthma", "treated_by", "albuterol", "x_for_treatment_of_y")),
    ("Albuterol is used to treat asthma.", ("asthma", "treated_by", "albuterol", "x_to_treat_y")),
    ("Asthma was successfully treated with albuterol.", ("asthma", "treated_by", "albuterol", "y_treated_with_x")),
    ("The symptoms of asthma include wheezing.", ("asthma", "has_symptom", "wheezing", "symptoms_of_y_include_x")),
    ("Cough is a common symptom of asthma.", ("asthma", "has_symptom", "cough", "x_symptom_of_y")),
    ("Asthma is characterized by wheezing.", ("asthma", "has_symptom", "wheezing", "y_characterized_by_x")),
    ("Spirometry is used for the diagnosis of asthma.", ("asthma", "diagnosed_by", "spirometry", "x_for_diagnosis_of_y")),
    ("Asthma is diagnosed by spirometry.", ("asthma", "diagnosed_by", "spirometry", "y_diagnosed_by_x")),
    ("Aspirin prevents hypertension.", ("hypertension", "prevented_by", "aspirin", "x_prevents_y")),
    ("Cocaine is a major risk factor for hypertension.", ("hypertension", "has_risk_factor", "cocaine", "x_risk_factor_for_y")),
    ("Cocaine increases the risk of seizures.", ("seizures", "has_risk_factor", "cocaine", "x_increases_risk_of_y")),
    ("Asthma complicated by fever.", ("asthma", "has_complication", "fever", "y_complicated_by_x")),
    ("Hypertension is associated with headache.", ("headache", "associated_with", "hypertension", "x_associated_with_y")),
    ("Cough in the chest was common.", ("cough", "located_in", "chest", "y_in_x")),
    ("Cough in the upper chest.", ("cough", "located_in", "chest", "y_in_x")),
    ("Asthma of the lung.", ("asthma", "located_in", "lung", "y_of_x")),
    ("Asthma affecting the left lung.", ("asthma", "located_in", "lung", "y_affecting_x")),
    ("Wheezing is usually located in the chest.", ("wheezing", "located_in", "chest", "y_located_in_x")),
    # the syntax alone: a non-anatomy tail is the signature check's to reject (test_kg_signatures.py)
    ("Hypertension in asthma is rare.", ("hypertension", "located_in", "asthma", "y_in_x")),
])
def test_each_pattern_types_the_pair(text, expected):
    assert relations(text) == {expected}


def test_lists_extend_the_right_hand_entity():
    got = relations("Symptoms of asthma include wheezing, cough and shortness of breath.")
    assert {(h, r, t) for h, r, t, _ in got} == {("asthma", "has_symptom", x)
                                                 for x in ("wheezing", "cough", "shortness of breath")}
    got = relations("Albuterol for the treatment of asthma and hypertension.")
    assert {(h, t) for h, _, t, _ in got} == {("asthma", "albuterol"), ("hypertension", "albuterol")}


@pytest.mark.parametrize("text, expected", [
    ("Asthma and albuterol were both mentioned.", set()),                   # no relation words
    ("Albuterol, cocaine for the treatment of asthma.",                     # only the adjacent entity
     {("asthma", "treated_by", "cocaine")}),
    ("Hypertension was seen in a large cohort that was later found to have been caused by cocaine.", set()),
    ("Wheezing include asthma.", set()),                  # "include" needs "symptoms of" before its head
    ("Cough in most of the chest.", set()),               # "in" / "of" must be the whole gap
])
def test_no_edge_without_an_exact_adjacent_pattern(text, expected):
    assert {(h, r, t) for h, r, t, _ in relations(text)} == expected


def test_an_abbreviation_in_parentheses_is_the_same_entity():
    assert {(h, r, t) for h, r, t, _ in relations("Hypertension (HTN) caused by cocaine.")} == {
        ("hypertension", "caused_by", "cocaine")}
    text = "Hypertension (HTN) and headache."
    (s,), _ = sentence_units("d", text, hits_of(text), 600)
    hits, pairs = fold_aliases(s)
    assert [(NORMS[h.node], text[h.start:h.end]) for h in hits] == [("hypertension", "Hypertension (HTN)"),
                                                                  ("headache", "headache")]
    assert [(NORMS[a], NORMS[b]) for a, b in pairs] == [("hypertension", "htn")]


def test_medquad_links_skip_the_focus_abbreviation():
    from collections import Counter

    from tasks.knowledge_graph.sources import TreeLookup, medquad_links
    q = "What are the symptoms of Hypertension ?"
    text = q + "\n\nHypertension (HTN) often has no symptoms. Headache may occur; HTN is silent."
    sentences, _ = sentence_units("d", text, hits_of(text), 600)
    tally = Counter()
    links = medquad_links(text, {"focus": "Hypertension", "qtype": "symptoms", "question": q}, sentences,
                          TreeLookup(NORMS, MATCHER), {"symptoms": "has_symptom"}, 10, 0.5, tally)
    assert [(NORMS[h], r, NORMS[t]) for h, r, t, *_ in links] == [("hypertension", "has_symptom", "headache")]
    assert tally["focus_aliases"] == 1 and tally["links"] == 1


def test_sentence_units_assign_hits_and_count_straddlers():
    text = "Asthma is common. Cough and fever."
    hits = hits_of(text) + [Hit(0, 14, 20)]                       # spans the sentence boundary
    sentences, straddling = sentence_units("d", text, hits, 600)
    assert [s.text for s in sentences] == ["Asthma is common.", "Cough and fever."]
    assert [[NORMS[n] for n in s.nodes] for s in sentences] == [["asthma"], ["cough", "fever"]]
    assert straddling == 1
    assert sentences[1].provenance() == {"doc_id": "d", "sentence": 1, "start": 18, "end": 34,
                                         "text": "Cough and fever."}
