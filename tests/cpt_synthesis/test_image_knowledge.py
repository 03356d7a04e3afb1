"""Label -> caption -> instruction: attributes per source, bad records and bad images with reasons,
the local radiologist templates, and the LLM path against a scripted endpoint."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image
from scripted_endpoint import scripted

from tasks.corpus.images import ImageStore
from tasks.cpt_synthesis.image_attributes import ImageLimits, check_unit_image, image_units
from tasks.cpt_synthesis.image_knowledge import (
    KINDS,
    LLMCaptioner,
    LLMInstructionWriter,
    LocalCaptioner,
    LocalInstructionWriter,
    image_knowledge,
    qa_statement,
)
from tasks.cpt_synthesis.samples import validate_sample
from tasks.cpt_synthesis.self_contained import filter_self_contained


def save(tmp_path, name, img, fmt="PNG"):
    path = tmp_path / name
    img.save(path, format=fmt)
    return {"path": name, "sha256": name.ljust(64, "0")[:64].encode().hex()[:64]}


def vqa(i, q, a, qtype="PRES", atype="CLOSED", image=None, organ="ABD"):
    return {"id": f"vqa_rad-{i}", "source": "vqa_rad", "text": "", "images": [image] if image else [],
            "meta": {"question": q, "answer": a, "attributes": {"image_organ": organ, "question_type": qtype,
                                                                 "answer_type": atype}}}


def pmnist(i, finding, image):
    return {"id": f"pneumoniamnist-{i}", "source": "pneumoniamnist", "text": "", "images": [image],
            "meta": {"attributes": {"finding": finding, "modality": "chest X-ray", "width": 28, "height": 28}}}


def test_units_merge_questions_per_image_and_reject_bad_records(tmp_path):
    img = save(tmp_path, "a.png", Image.new("L", (64, 64), 90))
    records = [vqa(1, "Is the bowel obstructed?", "yes", image=img),
               vqa(2, "What imaging modality is seen here?", "CT", "MODALITY", "OPEN", image=img),
               vqa(3, "Where is the mass?", "Cecum", "POS", "OPEN", image=img),
               vqa(4, "Is there free air?", "no"),                                      # no image
               {**vqa(5, "", "yes", image=img)},                                       # no question
               {"id": "dicom-1", "source": "dicom", "text": "", "images": [img], "meta": {"attributes": {"Rows": 5}}},
               {"id": "medquad-1", "source": "medquad", "text": "x", "images": [], "meta": {}}]
    out = image_units(records)
    assert out.reasons() == {"missing_attributes": 2, "missing_image": 1, "unsupported_source": 1}
    (unit,) = out.kept
    assert unit.source_ids == ["vqa_rad-1", "vqa_rad-2", "vqa_rad-3"] and len(unit.attrs["qa"]) == 3
    assert unit.attrs["anatomy"] == "abdomen" and unit.attrs["modality"] == "CT"


def test_bad_images_have_reasons_and_odd_modes_are_converted(tmp_path):
    store = ImageStore(tmp_path / "store", "data/cpt_data/images", 10**8)
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 10 + 1000).astype(np.uint16))
    cases = {"tiny.png": Image.new("RGB", (1, 1)), "strip.png": Image.new("L", (20000, 20)),
             "gray.png": Image.new("L", (64, 64), 128), "cmyk.jpg": Image.new("CMYK", (64, 64), (0, 50, 50, 0)),
             "deep.png": sixteen, "rgba.png": Image.new("RGBA", (32, 32), (1, 2, 3, 4))}
    results = {}
    for name, img in cases.items():
        ref = save(tmp_path, name, img, "JPEG" if name.endswith(".jpg") else "PNG")
        unit = image_units([pmnist(name, "pneumonia", ref)]).kept[0]
        results[name] = check_unit_image(unit, tmp_path, ImageLimits(), store.put_bytes)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    unit = image_units([pmnist("bad", "normal", {"path": "bad.png", "sha256": "f" * 64})]).kept[0]
    results["bad.png"] = check_unit_image(unit, tmp_path, ImageLimits(), store.put_bytes)
    assert results["tiny.png"][1] == "too_small" and results["strip.png"][1] == "extreme_aspect_ratio"
    assert results["bad.png"][1] == "corrupt_image"
    gray = results["gray.png"][0]
    assert gray.image["path"] == "gray.png" and gray.notes == []                  # grayscale kept as is
    for name, note in (("cmyk.jpg", "CMYK->RGB"), ("deep.png", "I;16->L"), ("rgba.png", "RGBA->RGB")):
        u = results[name][0]
        assert u.image["path"].startswith("data/cpt_data/images/") and any(note in n for n in u.notes)
    stored = Image.open(tmp_path / "store" / results["deep.png"][0].image["path"].split("images/")[1])
    arr = np.asarray(stored)
    assert stored.mode == "L" and arr.min() == 0 and arr.max() == 255           # windowed, not clipped white
    assert check_unit_image(image_units([pmnist("c", "normal", save(tmp_path, "c.jpg", cases["cmyk.jpg"], "JPEG"))]
                                        ).kept[0], tmp_path, ImageLimits(), None)[1] == "needs_conversion"
    big = image_units([pmnist("g", "normal", {"path": "gray.png", "sha256": "e" * 64})]).kept[0]
    assert check_unit_image(big, tmp_path, ImageLimits(max_pixels=100), None)[1] == "too_many_pixels"


def test_qa_statements():
    assert qa_statement("Is the bowel obstructed?", "yes") == "The bowel is obstructed."
    assert qa_statement("Is the liver parenchyma normal?", "No") == "The liver parenchyma is not normal."
    assert qa_statement("Are there rib fractures present?", "No") == "There are no rib fractures present."
    assert qa_statement("Does this image show a normal gallbladder?", "No") == "The image does not show a normal gallbladder."
    assert qa_statement("What organ system is shown in the above image?", "Brain") == \
        "What organ system is shown in the image: Brain."


def test_local_captions_and_four_instruction_kinds(tmp_path):
    img = {"path": "x.png", "sha256": "a" * 64}
    img2 = {"path": "y.png", "sha256": "b" * 64}
    units = image_units([pmnist(1, "pneumonia", img), vqa(2, "Is the bowel obstructed?", "yes", image=img2),
                         vqa(3, "Where is the mass?", "Cecum", "POS", "OPEN", image=img2),
                         vqa(4, "This image is suspicious of what cancerous pathology?", "hepatocellular carcinoma",
                             "OTHER", "OPEN", image=img2)]).kept
    out, kinds = image_knowledge(units, LocalCaptioner(), LocalInstructionWriter())
    assert out.rejected == [] and kinds == {**{k: 2 for k in KINDS}, "localization": 1, "localization_unsupported": 1}
    by_task = {}
    for s in out.kept:
        validate_sample(s)
        by_task.setdefault(s["task"], []).append(s)
    cap = by_task["caption"][0]["messages"][1]["content"]
    assert cap.startswith("Frontal chest radiograph.") and "typically appears" in cap and "Impression" in cap
    assert by_task["instruction_localization"][0]["messages"][1]["content"] == "Cecum."
    assert "hepatocellular carcinoma" in by_task["instruction_reasoning"][1]["messages"][1]["content"]
    assert all(s["meta"]["attrs"] and s["images"] for s in out.kept)
    assert filter_self_contained(out.kept).rejected == []


def test_llm_captioner_and_writer_through_the_endpoint(tmp_path):
    units = image_units([pmnist(1, "pneumonia", {"path": "x.png", "sha256": "a" * 64}),
                         pmnist(2, "normal", {"path": "y.png", "sha256": "b" * 64})]).kept

    def reply(messages):
        user = messages[-1]["content"] if len(messages) == 2 else messages[1]["content"]
        if "Act as a senior radiologist" in messages[0]["content"]:
            if '"normal"' in user:
                return 200, "The lungs look fine."                                   # never JSON
            return 200, json.dumps({"caption": "Frontal chest radiograph with patchy airspace opacity."})
        return 200, json.dumps({"descriptive": {"question": "Describe the findings.", "answer": "Patchy opacity."},
                                "diagnostic": {"question": "Is there pneumonia?", "answer": "Yes."},
                                "localization": None, "reasoning": None})
    with scripted(reply, tmp_path) as (client, requests):
        out, kinds = image_knowledge(units, LLMCaptioner(client), LLMInstructionWriter(client))
    assert [s["task"] for s in out.kept] == ["caption", "instruction_descriptive", "instruction_diagnostic"]
    assert kinds["localization_unsupported"] == 1 and all(s["meta"]["generator"] == "llm" for s in out.kept)
    (rej,) = out.rejected
    assert rej["reason"] == "llm_failed" and rej["item"]["failure"]["raw"] == "The lungs look fine."
    assert "senior radiologist" in requests[0]["messages"][0]["content"]
    assert sum(len(r["messages"]) == 4 for r in requests) == 1                        # one repair turn


def test_converted_image_bytes_are_deterministic(tmp_path):
    img = Image.new("CMYK", (40, 40), (10, 20, 30, 40))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    (tmp_path / "c.jpg").write_bytes(buf.getvalue())
    unit = image_units([pmnist(1, "normal", {"path": "c.jpg", "sha256": "c" * 64})]).kept[0]
    a = check_unit_image(unit, tmp_path, ImageLimits(), ImageStore(tmp_path / "a", "p", 10**8).put_bytes)[0]
    b = check_unit_image(unit, tmp_path, ImageLimits(), ImageStore(tmp_path / "b", "p", 10**8).put_bytes)[0]
    assert a.image == b.image
