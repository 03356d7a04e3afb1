"""The CPT sample contract: what make_sample builds passes the validator; each broken field names its reason."""

from __future__ import annotations

import copy

import pytest

from tasks.cpt_synthesis.samples import (
    Outcome,
    SampleError,
    check_text,
    image_part,
    make_sample,
    text_part,
    validate_sample,
)

SHA = "a" * 64


def qa_sample(**kw):
    return make_sample("text", "atomic_qa", ["kg-edge:1"],
                       messages=[{"role": "user", "content": "What causes asthma?"},
                                 {"role": "assistant", "content": "Asthma can be caused by allergens."}], **kw)


def test_ids_are_content_derived_and_stable():
    a, b = qa_sample(), qa_sample()
    assert a == b and a["id"].startswith("cpt-atomic_qa-") and a["meta"] == {"generator": "local"}
    c = make_sample("text", "passage", ["kg-edge:1"], text="Asthma can be caused by allergens.", generator="llm")
    assert c["id"] != a["id"] and c["messages"] == [] and c["meta"]["generator"] == "llm"


def test_image_sample_needs_matching_image_parts():
    s = make_sample("image_text", "caption", ["vqa_rad-1"], images=[{"path": "x.png", "sha256": SHA}],
                    messages=[{"role": "user", "content": [image_part(), text_part("Describe the image.")]},
                              {"role": "assistant", "content": "An axial CT of the abdomen."}])
    assert s["images"] == [{"path": "x.png", "sha256": SHA}]
    with pytest.raises(SampleError) as e:
        make_sample("image_text", "caption", ["vqa_rad-1"], images=[{"path": "x.png", "sha256": SHA}],
                    messages=[{"role": "user", "content": "Describe."}, {"role": "assistant", "content": "CT."}])
    assert e.value.reason == "image_mismatch"


@pytest.mark.parametrize("mutate,reason", [
    (lambda s: s.update(kind="audio"), "bad_kind"),
    (lambda s: s.update(source_ids=[]), "no_lineage"),
    (lambda s: s["meta"].update(generator="gpt"), "bad_generator"),
    (lambda s: s.update(text="also text"), "bad_content"),
    (lambda s: s.update(messages=[]), "bad_content"),
    (lambda s: s["messages"][1].update(content="  "), "empty_message"),
    (lambda s: s["messages"][1].update(role="bot"), "bad_message"),
    (lambda s: s["messages"].reverse(), "bad_message"),
    (lambda s: s.update(images=[{"path": "x", "sha256": "nothex"}]), "bad_image_ref"),
    (lambda s: s.update(images=[{"path": "x", "sha256": SHA}]), "bad_kind"),
    (lambda s: s.update(id=5), "bad_field"),
])
def test_validator_reasons(mutate, reason):
    s = copy.deepcopy(qa_sample())
    mutate(s)
    with pytest.raises(SampleError) as e:
        validate_sample(s)
    assert e.value.reason == reason


def test_image_kinds_require_an_image_and_text_checks():
    with pytest.raises(SampleError) as e:
        make_sample("ocr", "ocr_transcription", ["r"], text="WBC 5.0")
    assert e.value.reason == "missing_image"
    assert check_text("") == "empty_text" and check_text("   \n") == "empty_text"
    assert check_text("x" * 11, max_chars=10) == "text_too_long" and check_text(None) == "not_text"
    assert check_text("fine") is None


def test_outcome_accounting():
    o = Outcome()
    o.kept.append(1)
    o.reject("empty_text", "blank", {"id": "a"})
    o.extend(Outcome([2], [{"reason": "empty_text", "detail": "", "item": None}]))
    assert o.kept == [1, 2] and o.reasons() == {"empty_text": 2}
