"""Caption refinement: entities from the project's matcher, KG facts, local suggestions and rewrite,
the rubric (anatomy, morphology, evidence) as a filter with reasons, and the LLM path end to end."""

from __future__ import annotations

import json

from scripted_endpoint import scripted

from tasks.cpt_synthesis.caption_refine import (
    FactIndex,
    LLMReviser,
    LLMRubric,
    LocalReviser,
    LocalRubric,
    RefineParams,
    matcher_extractor,
    refine_captions,
    unsupported_claims,
    weighted,
)
from tasks.cpt_synthesis.samples import image_part, make_sample, text_part
from tasks.mapping.automaton import EntityMatcher

NODES = [{"norm": "pneumonia", "name": "Pneumonia"}, {"norm": "streptococcus pneumoniae", "name": "Streptococcus pneumoniae"},
         {"norm": "cough", "name": "cough"}, {"norm": "mm", "name": "MM"}, {"norm": "asthma", "name": "asthma"}]
EDGES = [{"head_idx": 0, "tail_idx": 1, "relation": "caused_by", "support": 5},
         {"head_idx": 0, "tail_idx": 2, "relation": "has_symptom", "support": 9},
         {"head_idx": 4, "tail_idx": 2, "relation": "has_symptom", "support": 3},
         {"head_idx": 0, "tail_idx": 4, "relation": "co_occurs_with", "support": 50}]
MATCHER = EntityMatcher([(n["norm"], (n["norm"], f"e:{n['norm']}")) for n in NODES])


def caption_sample(text, attrs, i=0):
    return make_sample("image_text", "caption", [f"pneumoniamnist-{i}"], images=[{"path": "x.png", "sha256": f"{i:064x}"}],
                       messages=[{"role": "user", "content": [image_part(), text_part("Describe this image.")]},
                                 {"role": "assistant", "content": text}], attrs=attrs)


PNEU = {"source": "pneumoniamnist", "finding": "pneumonia", "anatomy": "chest", "modality": "chest X-ray"}


def test_extraction_and_retrieval():
    extract = matcher_extractor(MATCHER)
    assert extract("Slice 5 mm; pneumonia with cough.") == ["pneumonia", "cough"]       # "mm" is too short
    facts = FactIndex(NODES, EDGES)
    assert facts("pneumonia") == ["Cough is a symptom of Pneumonia.", "Pneumonia can be caused by Streptococcus pneumoniae."]
    assert facts("cough") == [] and facts("asthma") == ["Cough is a symptom of asthma."]


def test_local_refinement_and_rubric_filter():
    samples = [caption_sample("Patchy airspace opacity, definitely pneumonia.", PNEU, 1),        # no region, overclaim
               caption_sample("Frontal chest radiograph with a pulmonary embolism.", PNEU, 2),   # unsupported claim
               caption_sample("Frontal chest radiograph. No pneumothorax. Patchy opacity consistent with pneumonia.",
                              PNEU, 3),
               caption_sample("Image.", PNEU, 4)]
    out = refine_captions(samples, matcher_extractor(MATCHER), FactIndex(NODES, EDGES), LocalReviser(max_facts=1),
                          LocalRubric(), RefineParams())
    assert out.reasons() == {"rubric_below_threshold": 1, "unsupported_claims": 1}
    kept = {s["source_ids"][0]: s for s in out.kept}
    first = kept["pneumoniamnist-1"]["messages"][1]["content"]
    assert first.startswith("Region: chest") and "likely pneumonia" in first and "definitely" not in first
    assert first.endswith("Background: Cough is a symptom of Pneumonia.")
    meta = kept["pneumoniamnist-1"]["meta"]
    assert meta["draft"].startswith("Patchy") and meta["rubric"]["total"] >= 0.7 and meta["entities"] == ["pneumonia"]
    assert kept["pneumoniamnist-3"]["meta"]["rubric"]["issues"] == []                   # negated pneumothorax is fine
    bad = {r["reason"]: r for r in out.rejected}
    assert "pulmonary embolism" not in bad["unsupported_claims"]["detail"] and "embolism" in bad["unsupported_claims"]["detail"]
    assert "no morphological description" in bad["rubric_below_threshold"]["detail"]


def test_rubric_parts():
    assert unsupported_claims("No effusion. A mass in the liver.", '{"finding": "normal"}') == ["mass"]
    assert weighted({"anatomical_localization": 1.0, "morphology": None, "evidence": 0.5},
                    {"anatomical_localization": 0.35, "morphology": 0.3, "evidence": 0.35}) == 0.75
    scores = LocalRubric().score(["CT image of the head."], [{"source": "dicom", "technical": {}}], [[]])[0]
    assert scores["morphology"] is None and scores["evidence"] == 1.0                    # nothing to describe


def test_llm_reviser_and_rubric(tmp_path):
    def reply(messages):
        user = messages[1]["content"]
        if "List specific revision suggestions" in user:
            return 200, json.dumps({"suggestions": ["Name the region.", "Describe the opacity."]})
        if "Rewrite the caption" in user:
            return 200, json.dumps({"caption": "Frontal chest radiograph: patchy right lower lobe opacity, "
                                               "consistent with pneumonia."})
        if "Score this medical image caption" in user:
            if len(messages) > 2:
                return 200, "still not a score"
            return 200, json.dumps({"anatomical_localization": 1.5, "morphology": 1, "evidence": 1})  # out of range
        raise AssertionError(user)
    samples = [caption_sample("Pneumonia.", PNEU, 1)]
    with scripted(reply, tmp_path) as (client, requests):
        out = refine_captions(samples, matcher_extractor(MATCHER), FactIndex(NODES, EDGES), LLMReviser(client),
                              LLMRubric(client), RefineParams())
    (rej,) = out.rejected
    assert rej["reason"] == "llm_failed" and rej["detail"].startswith("rubric:")
    assert rej["item"]["failure"]["raw_repair"] == "still not a score"
    assert "Cough is a symptom of Pneumonia." in requests[0]["messages"][1]["content"]     # retrieved facts in the prompt

    def good(messages):
        user = messages[1]["content"]
        if "Score this" in user:
            return 200, '{"anatomical_localization": 1, "morphology": 0.8, "evidence": 0.9, "issues": []}'
        return reply(messages)
    with scripted(good, tmp_path / "b") as (client, _):
        out = refine_captions(samples, matcher_extractor(MATCHER), FactIndex(NODES, EDGES), LLMReviser(client),
                              LLMRubric(client), RefineParams())
    (s,) = out.kept
    assert s["task"] == "caption_refined" and s["meta"]["generator"] == "llm" and s["meta"]["rubric"]["total"] == 0.895
    assert s["meta"]["suggestions"] == ["Name the region.", "Describe the opacity."]
