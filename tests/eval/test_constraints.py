"""The atomic-constraint library: every checker on hand-written replies (strict and loose), apply -> check on
real-looking medical answers, conflicts, seeded combinations, JSON round trips and thinking removal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.constraints import (
    CATEGORIES,
    REGISTRY,
    SPLITS,
    Constraint,
    apply_all,
    check_all,
    compatible,
    sample_combination,
    strip_thinking,
)

C = Constraint.make

ANSWERS = [
    # MedQuAD-like: a phone number, an e-mail, a percentage, an abbreviation, commas
    "Glaucoma is a group of diseases that can damage the eye's optic nerve and result in vision loss and "
    "blindness. While glaucoma can strike anyone, the risk is much greater for people over 60. Treatment "
    "includes eye drops, laser surgery, and regular MRI follow-up. Call 1-800-222-1222 or email info@nei.nih.gov "
    "for more information. Early detection is very important.",
    # a dose, a list, a guarantee-free caution
    "Metformin is usually the first medicine prescribed for type 2 diabetes.\n"
    "- The usual starting dose is 500 mg twice a day with meals.\n"
    "- Side effects include nausea and diarrhea.\n"
    "- Rarely, it can cause lactic acidosis.\n"
    "Your doctor will check your kidney function before and during treatment.",
    # long single paragraph, no digits
    "Asthma is a chronic disease that inflames and narrows the airways of the lungs. It causes recurring "
    "periods of wheezing, chest tightness, shortness of breath, and coughing. The coughing often occurs at "
    "night or early in the morning. Asthma affects people of all ages, but it most often starts during "
    "childhood. Triggers include allergens, smoke, cold air and exercise. A written asthma action plan helps "
    "patients know what to do when symptoms get worse.",
    # two short sentences (too few for some layouts)
    "Yes. Shingles can recur.",
]
CTX = {"keywords": ["Glaucoma", "optic nerve", "Asthma"], "topic": "Eye health", "source": "National Eye Institute"}

# (constraint, response, strict, loose): hand-decided verdicts
CASES = [
    (C("format.json_object"), '{"answer": "Rest and fluids."}', True, True),
    (C("format.json_object"), '```json\n{"answer": "Rest."}\n```', True, True),
    (C("format.json_object"), 'Here is the JSON:\n{"answer": "Rest."}', False, True),   # preamble line dropped
    (C("format.json_object"), '["Rest."]', False, False),
    (C("format.bullets", n=2), "* Rest.\n* Drink fluids.", True, True),
    (C("format.bullets", n=2), "- Rest.\n- Drink fluids.\n- Sleep.", False, True),       # last line dropped
    (C("format.bullets", n=2), "***\nRest.", False, False),
    (C("format.title", topic="x"), "<<Managing Asthma>>\nUse your inhaler.", True, True),
    (C("format.title"), "<< >>\nUse your inhaler.", False, False),
    (C("format.end_phrase", phrase="Stay well and take care."), "Rest.\nStay well and take care.", True, True),
    (C("format.end_phrase", phrase="Stay well and take care."), "Rest. **Stay well and take care.**", False, True),
    (C("format.end_phrase", phrase="Stay well and take care."), "Stay well and take care.\nBye.", False, True),
    (C("format.lowercase"), "rest and drink fluids.", True, True),
    (C("format.lowercase"), "Note:\nrest and drink fluids.", False, True),
    (C("format.uppercase"), "REST AND DRINK FLUIDS.", True, True),
    (C("format.uppercase"), "REST AND DRINK FLUIDS (see mri).", False, False),
    (C("format.no_commas"), "Rest and drink fluids.", True, True),
    (C("format.no_commas"), "Rest, fluids.", False, False),
    (C("format.wrap_quotes"), '"Rest and drink fluids."', True, True),
    (C("format.wrap_quotes"), '"', False, False),
    (C("format.wrap_quotes"), 'Sure:\n"Rest and drink fluids."', False, True),
    (C("format.numbered_steps", n=3), "1. Wash.\n2. Dry.\n3. Cover.", True, True),
    (C("format.numbered_steps", n=3), "1. Wash.\n3. Dry.\n2. Cover.", False, False),
    (C("format.sections", n=2), "SECTION 1\nCauses.\nSECTION 2\nTreatment.", True, True),
    (C("format.sections", n=2), "SECTION 1\nCauses.\nSECTION 2", False, False),   # an empty section
    (C("format.sections", n=2), "Section 1\nCauses.\nSection 2\nTreatment.", False, False),
    (C("format.no_markdown"), "Rest and drink fluids.", True, True),
    (C("format.no_markdown"), "Rest and **drink** fluids.", False, True),           # loose removes '*'
    (C("format.no_markdown"), "# Advice\nRest.", False, True),                     # loose drops the heading
    (C("format.no_markdown"), "Rest.\n- Fluids.\nSleep.", False, False),
    (C("length.max_words", n=5), "Rest and drink plenty of fluids.", False, False),   # 6 words
    (C("length.max_words", n=6), "Rest and drink plenty of fluids.", True, True),
    (C("length.max_words", n=3), "Advice:\nDrink the fluids.", False, True),          # 4 words; 3 without line 1
    (C("length.min_words", n=6), "Rest and drink plenty of fluids.", True, True),
    (C("length.min_words", n=7), "Rest and drink plenty of fluids.", False, False),
    (C("length.max_sentences", n=2), "Rest. Drink fluids. Sleep.", False, False),
    (C("length.max_sentences", n=2), "Rest. Drink fluids!\nSleep.", False, True),
    (C("length.max_sentences", n=3), "Rest. Drink fluids? Sleep.", True, True),
    (C("length.paragraphs", n=2), "Causes.\n\n***\n\nTreatment.", True, True),
    (C("length.paragraphs", n=2), "Causes.\n***\n***\nTreatment.", False, False),   # an empty paragraph
    (C("length.paragraphs", n=2), "Causes.\n\nTreatment.", False, False),
    (C("language.english"), "Drink plenty of fluids and rest at home for a few days.", True, True),
    (C("language.english"), "多喝水，注意休息。", False, False),
    (C("language.english"), "Bebe muchos líquidos y descansa en casa durante unos días.", False, False),
    (C("language.chinese"), "多喝水，注意休息，服用 ibuprofen。", True, True),
    (C("language.chinese"), "Drink fluids. 多喝水。", False, False),               # 3 characters, 2 words
    (C("language.chinese"), "多喝水，注意休息，服用 ibuprofen 或 acetaminophen。", True, True),   # 10 vs 2
    (C("language.no_caps_abbreviations"), "An MRI shows the lesion.", False, False),
    (C("language.no_caps_abbreviations"), "Magnetic resonance imaging shows it. I agree.", True, True),
    (C("language.no_digits"), "Take it twice a day.", True, True),
    (C("language.no_digits"), "Take it 2 times a day.", False, False),
    (C("content.keywords", keywords=["optic nerve", "Glaucoma"]), "glaucoma harms the optic  nerve.", True, True),
    (C("content.keywords", keywords=["optic nerve"]), "The optical nerves.", False, False),
    (C("content.keywords", keywords=["cure"]), "There is no cure.", True, True),
    (C("content.keywords", keywords=["cure"]), "It is curable.", False, False),
    (C("content.forbidden_words", words=["very"]), "It is every day.", True, True),
    (C("content.forbidden_words", words=["very"]), "It is Very common.", False, False),
    (C("content.placeholders", n=2), "Dear [patient name], see you on [date].", True, True),
    (C("content.placeholders", n=2), "Dear [patient name], see you on [ ].", False, False),
    (C("content.postscript"), "Rest.\n\nP.S. Drink water.", True, True),
    (C("content.postscript"), "Rest. P.S. Drink water.", False, False),               # not at a line start
    (C("content.postscript"), "Rest.\n**P.S.** Drink water.", False, True),
    (C("content.source_line"), "Rest.\nSource: MedlinePlus", True, True),
    (C("content.source_line"), "Rest.\nSource:", False, False),
    (C("safety.disclaimer"), "Please CONSULT a healthcare\nprofessional.", True, True),
    (C("safety.disclaimer"), "Talk to your doctor.", False, False),
    (C("safety.no_dosages"), "Take 500 mg twice daily.", False, False),
    (C("safety.no_dosages"), "Give 10-15 mg/kg.", False, False),
    (C("safety.no_dosages"), "Take 2 tablets; 3 glasses of water.", True, True),
    (C("safety.no_identifiers"), "Call 1-800-222-1222 today.", False, False),
    (C("safety.no_identifiers"), "Write to help@clinic.org.", False, False),
    (C("safety.no_identifiers"), "It began in 1990-2000 in 12 states.", True, True),
    (C("safety.no_guarantees"), "There is no cure, but treatment helps.", True, True),
    (C("safety.no_guarantees"), "This diet is 100% risk-free.", False, False),
]


@pytest.mark.parametrize("c,response,strict,loose", CASES, ids=[f"{c.kind}-{i}" for i, (c, *_) in enumerate(CASES)])
def test_checkers(c, response, strict, loose):
    assert c.check(response) is strict
    assert c.check_loose(response) is loose


def test_every_kind_has_checker_cases():
    assert {c.kind for c, *_ in CASES} == set(REGISTRY)


def test_registry_shape_and_splits():
    assert len(REGISTRY) >= 20
    assert SPLITS["train"] and SPLITS["eval"] and not set(SPLITS["train"]) & set(SPLITS["eval"])
    assert set(SPLITS["train"]) | set(SPLITS["eval"]) == set(REGISTRY)
    for split in SPLITS.values():
        assert {REGISTRY[k].category for k in split} == set(CATEGORIES)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_apply_then_check(kind):
    rng = np.random.default_rng(7)
    made = 0
    for answer in ANSWERS:
        for _ in range(3):
            c = REGISTRY[kind].sample(rng, CTX)
            out = REGISTRY[kind].apply(c, answer)
            if out is not None:
                assert c.check(out), (c, out)
                made += 1
    # only the kinds that would need new content, a translation or a meaning-changing rewrite may give up
    if kind not in {"language.chinese", "length.min_words", "safety.no_guarantees"}:
        assert made >= 6


def test_apply_examples():
    glaucoma = ANSWERS[0]
    assert C("format.bullets", n=2).spec.apply(C("format.bullets", n=2), "A b. C d. E f.") == "* A b. C d.\n* E f."
    assert C("format.bullets", n=3).spec.apply(C("format.bullets", n=3), ANSWERS[3]) is None   # two sentences
    c = C("length.max_words", n=20)
    assert c.spec.apply(c, glaucoma) == ("Glaucoma is a group of diseases that can damage the eye's optic nerve "
                                         "and result in vision loss and blindness.")       # 19 words, whole sentence
    c = C("length.max_words", n=5)
    assert c.spec.apply(c, glaucoma) is None          # the first sentence alone is longer
    c = C("language.no_digits")
    assert c.spec.apply(c, "Over 60, 1,250 cases, 0.5% and 21 days.") == (
        "Over sixty, one thousand two hundred fifty cases, zero point five percent and twenty-one days.")
    c = C("safety.no_dosages")
    assert c.spec.apply(c, ANSWERS[1]).count("the prescribed amount") == 1
    c = C("language.no_caps_abbreviations")
    assert "regular magnetic resonance imaging follow-up" in c.spec.apply(c, glaucoma)
    assert c.spec.apply(c, "An XYZQ scan.") is None   # unknown abbreviation: no expansion to make
    c = C("content.keywords", keywords=["optic nerve", "retina"])
    assert c.spec.apply(c, glaucoma).startswith("Key terms: retina.\n")   # only the missing one is added
    c = C("content.forbidden_words", words=["very"])
    assert c.spec.apply(c, glaucoma).endswith("Early detection is important.")


def test_apply_all_tightens_word_cap_after_insertions():
    cs = [C("length.max_words", n=40), C("safety.disclaimer"), C("content.postscript")]
    out = apply_all(cs, ANSWERS[0])
    assert out is not None and all(check_all(cs, out))
    # the first two sentences (19 + 14 words) plus the 9-word disclaimer and 10/11-word P.S. would exceed 40,
    # so the cap is lowered until only the first sentence is kept
    assert out.startswith("Glaucoma is a group") and "strike anyone" not in out
    assert apply_all([C("format.bullets", n=3)], ANSWERS[3]) is None


def test_compatible():
    assert compatible([C("format.lowercase"), C("length.max_words", n=50)])
    assert not compatible([C("format.lowercase"), C("format.uppercase")])
    assert not compatible([C("format.uppercase"), C("format.lowercase")])          # symmetric
    assert not compatible([C("format.json_object"), C("format.bullets", n=3)])
    assert not compatible([C("length.max_words", n=50), C("length.max_words", n=60)])   # duplicate kind
    assert not compatible([C("length.min_words", n=80), C("length.max_words", n=60)])
    assert compatible([C("length.min_words", n=30), C("length.max_words", n=60)])
    assert not compatible([C("content.keywords", keywords=["Very low blood sugar"]),
                           C("content.forbidden_words", words=["very"])])
    assert not compatible([C("content.keywords", keywords=["HIV"]), C("language.no_caps_abbreviations")])


def test_sample_combination_is_seeded_conflict_free_and_split_bound():
    a = sample_combination(np.random.default_rng(3), 4, "train", CTX)
    b = sample_combination(np.random.default_rng(3), 4, "train", CTX)
    assert a == b and len(a) == 4 and compatible(a)
    for seed in range(30):
        for split in SPLITS:
            cs = sample_combination(np.random.default_rng(seed), 1 + seed % 4, split, CTX)
            assert compatible(cs) and {c.kind for c in cs} <= set(SPLITS[split])
    with pytest.raises(ValueError):
        sample_combination(np.random.default_rng(0), 5, "train", CTX)
    with pytest.raises(ValueError):
        sample_combination(np.random.default_rng(0), 2, "test", CTX)


def test_keyword_sampling_uses_context_entities():
    c = REGISTRY["content.keywords"].sample(np.random.default_rng(0), {"keywords": ["Type 2, adult", "Asthma"]})
    assert c.kwargs["keywords"] == ("Asthma",)      # names with commas are skipped
    c = REGISTRY["content.keywords"].sample(np.random.default_rng(0), {})
    assert set(c.kwargs["keywords"]) <= {"symptoms", "treatment", "diagnosis", "risk factors"}


def test_infer_reverse_construction():
    rng = np.random.default_rng(0)
    c = REGISTRY["length.max_words"].infer(ANSWERS[0], rng)
    assert c.kwargs["n"] in (70, 80, 90) and c.check(ANSWERS[0])      # 60 words -> next ten + 0..2 tens
    assert REGISTRY["format.bullets"].infer(ANSWERS[1], rng) == C("format.bullets", n=3)
    assert REGISTRY["format.end_phrase"].infer(ANSWERS[3], rng) == C("format.end_phrase", phrase="Shingles can recur.")
    assert REGISTRY["safety.no_identifiers"].infer(ANSWERS[0], rng) is None
    assert REGISTRY["safety.no_identifiers"].infer(ANSWERS[2], rng) == C("safety.no_identifiers")
    for kind, spec in REGISTRY.items():
        for answer in ANSWERS:
            c = spec.infer(answer, rng)
            assert c is None or (c.kind == kind and c.check(answer)), (kind, answer)


def test_json_round_trip_and_instruction():
    c = C("content.keywords", keywords=["Glaucoma", "optic nerve"])
    d = c.to_json()
    assert d == {"kind": "content.keywords", "args": {"keywords": ["Glaucoma", "optic nerve"]}}
    assert Constraint.from_json(json.loads(json.dumps(d))) == c
    assert c.instruction == 'Include the keywords "Glaucoma", "optic nerve" in the response.'
    assert c.category == "content"
    with pytest.raises(ValueError):
        Constraint.from_json({"kind": "format.unknown", "args": {}})


def test_strip_thinking_and_check_all():
    assert strip_thinking("<think>plan</think>\n\nRest.") == "Rest."
    assert strip_thinking("  <think>still planning") == ""
    assert strip_thinking("plan...</think>Rest.") == "Rest."
    assert strip_thinking("Rest. <think> is a tag") == "Rest. <think> is a tag"
    cs = [C("format.lowercase"), C("length.max_words", n=2)]
    assert check_all(cs, "<think>Long Plan With Caps</think>rest now.") == [True, True]
    assert check_all(cs, "<think>unfinished") == [False, False]
    assert check_all(cs, "Answer:\nrest now.") == [False, False]
    assert check_all(cs, "Answer:\nrest now.", loose=True) == [True, True]
