"""Benchmark loaders on the real files, the bring-your-own JSONL format per family, and bad benchmark
files: every line is an item or a quarantine row with its reason (read = items + quarantined)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from eval.benchmarks import (
    BUNDLED,
    REGISTRY,
    BenchmarkError,
    byo_spec,
    load,
    parse_byo_arg,
    select,
    split_answer_choices,
)


@pytest.fixture(scope="module")
def loaded(data_root):
    return {name: load(REGISTRY[name], data_root) for name in BUNDLED}


def test_bundled_benchmarks_load_with_full_accounting(loaded):
    sizes = {n: (r.read, len(r.items)) for n, r in loaded.items()}
    assert sizes["medqa"] == (1273, 1273)
    assert sizes["mmlu_medical"] == (1089, 1089)
    assert sizes["pubmedqa"] == (500, 500)
    assert sizes["vqa_rad"] == (450, 450)
    med = loaded["medmcqa"]
    assert med.read == 4183 and len(med.items) + len(med.quarantined) == 4183
    # MedMCQA ships a few items whose gold option text is repeated verbatim by another option
    assert {q["reason"] for q in med.quarantined} == {"ambiguous_gold_option"}
    for res in loaded.values():
        res.check()
        assert len({i.id for i in res.items}) == len(res.items)


def test_item_shapes_and_ids_match_the_decontamination_index(loaded):
    medqa = loaded["medqa"].items[0]
    assert medqa.id == "test-00000" and medqa.kind == "choice" and len(medqa.options) == 4
    assert medqa.answer == "B" and "Answer Choices" not in medqa.question
    mmlu = loaded["mmlu_medical"].items[0]
    assert mmlu.id == "anatomy:1" and mmlu.subset == "anatomy"
    assert {i.subset for i in loaded["mmlu_medical"].items} == {
        "anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
        "professional_medicine"}
    pub = loaded["pubmedqa"].items
    assert Counter(i.answer for i in pub) and {i.answer for i in pub} == {"yes", "no", "maybe"}
    assert all(i.choices == ("yes", "no", "maybe") and i.context for i in pub)
    vqa = loaded["vqa_rad"].items
    assert Counter(i.subset for i in vqa) == {"closed": 265, "open": 185}
    assert Counter(i.kind for i in vqa) == {"yesno": 243, "open": 207}
    assert all(i.id.startswith("qid:") and len(i.images) == 1 for i in vqa)
    assert "synpic40596.jpg" in vqa[0].decontam_keys


def test_chance_baselines(loaded):
    assert loaded["medqa"].items[0].chance == 0.25
    assert loaded["pubmedqa"].items[0].chance == pytest.approx(1 / 3)
    vqa = loaded["vqa_rad"].items
    assert {i.chance for i in vqa if i.kind == "yesno"} == {0.5}
    assert {i.chance for i in vqa if i.kind == "open"} == {0.0}


def test_seeded_selection_is_stable_and_spread(loaded):
    items = loaded["mmlu_medical"].items
    a, b = select(items, 30, 1234), select(items, 30, 1234)
    assert [i.id for i in a] == [i.id for i in b]
    assert len({i.subset for i in a}) >= 4                     # not a head slice of one subject
    assert [i.id for i in a] == [i.id for i in items if i in set(a)]   # file order kept
    assert select(items, 0, 1) == items


def test_split_answer_choices_keeps_letter_order():
    stem, opts = split_answer_choices("Q?\nAnswer Choices: (A) see (B) below (B) x (C) y")
    assert stem == "Q?" and opts == {"A": "see", "B": "below (B) x", "C": "y"}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_byo_families(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    cases = {
        "mcq": {"id": 1, "question": "Q?", "options": ["Kidney", "Liver"], "answer": "Liver"},
        "yesno": {"id": "y", "question": "Q?", "answer": "Maybe", "context": "abstract"},
        "short": {"id": "s", "question": "Q?", "answer": ["2 cm", "20 mm"]},
        "vqa": {"id": "v", "question": "Is it a CT?", "images": ["x.png"], "answer": "yes",
                "answer_type": "closed"},
        "longform": {"id": "l", "question": "Write the findings.", "images": ["x.png"],
                     "reference": "No acute disease.", "key_points": ["no acute disease"]},
        "ocr": {"id": "o", "question": "Read the label.", "images": ["x.png"], "answer": "Hb 13.5 g/dL"},
    }
    kinds = {}
    for family, row in cases.items():
        res = load(byo_spec(f"my_{family}", str(write_jsonl(tmp_path / f"{family}.jsonl", [row])), family),
                   tmp_path)
        assert res.quarantined == [] and len(res.items) == 1, (family, res.quarantined)
        kinds[family] = res.items[0].kind
    assert kinds == {"mcq": "choice", "yesno": "yesno", "short": "open", "vqa": "yesno", "longform": "longform",
                     "ocr": "ocr"}
    mcq = load(byo_spec("m", str(tmp_path / "mcq.jsonl"), "mcq"), tmp_path).items[0]
    assert mcq.answer == "B" and mcq.option_map == {"A": "Kidney", "B": "Liver"}


def test_bad_benchmark_files_are_quarantined_with_reasons(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = {"id": "g1", "question": "Q?", "options": {"A": "x", "B": "y"}, "answer": "A"}
    rows = [
        good,
        {**good},                                                       # duplicate id
        {**good, "id": "g2", "answer": "C"},                            # answer not among the options
        {**good, "id": "g3", "answer": "z"},                            # ... nor the text of one
        {**good, "id": "g4", "options": []},                            # empty option list
        {**good, "id": "g5", "options": {"A": "x", "B": "  "}},         # an empty option
        {**good, "id": "g6", "answer": ["A", "B"]},                     # two gold answers
        {**good, "id": "g7", "images": ["missing.png"]},                # missing image
        {**good, "id": "g8", "images": ["broken.png"]},                 # unreadable image
        {**good, "id": "g9", "images": ["../../etc/passwd"]},           # escapes the benchmark dir
        {**good, "id": "g10", "question": ""},                          # no question
        {"question": "no id", "options": ["a", "b"], "answer": "A"},    # no id
        "{not json",
        {**good, "id": "g11", "images": ["ok.png"]},                    # fine, with an image
    ]
    res = load(byo_spec("bad", str(write_jsonl(tmp_path / "bad.jsonl", rows)), "mcq"), tmp_path)
    reasons = [q["reason"] for q in res.quarantined]
    assert reasons == ["duplicate_id", "answer_not_in_options", "answer_not_in_options", "empty_options",
                       "empty_options", "multiple_gold_answers", "missing_image", "unreadable_image", "path_escape",
                       "missing_field", "missing_field", "bad_json"]
    assert [i.id for i in res.items] == ["g1", "g11"]
    assert res.read == len(rows) == len(res.items) + len(res.quarantined)
    assert all(q["locator"].startswith("bad.jsonl:") and q["benchmark"] == "bad" for q in res.quarantined)


def test_yesno_and_vqa_validation(tmp_path):
    rows = [{"id": 1, "question": "Q?", "answer": "perhaps"},
            {"id": 2, "question": "Q?", "answer": "no", "choices": ["yes", "no"]}]
    res = load(byo_spec("yn", str(write_jsonl(tmp_path / "yn.jsonl", rows)), "yesno"), tmp_path)
    assert [q["reason"] for q in res.quarantined] == ["bad_label"] and res.items[0].choices == ("yes", "no")
    res = load(byo_spec("v", str(write_jsonl(tmp_path / "v.jsonl", [{"id": 1, "question": "Q?", "answer": "x"}])),
                        "vqa"), tmp_path)
    assert res.quarantined[0]["reason"] == "missing_image"


def test_registry_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="unknown family"):
        byo_spec("x", "x.jsonl", "essay")
    with pytest.raises(BenchmarkError, match="missing"):
        load(byo_spec("x", str(tmp_path / "absent.jsonl"), "mcq"), tmp_path)
    spec = parse_byo_arg("my_bench=short:/data/my bench.jsonl:diagnosis")
    assert (spec.name, spec.family, spec.path, spec.category) == ("my_bench", "short", "/data/my bench.jsonl",
                                                                 "diagnosis")
    assert parse_byo_arg("r=longform:r.jsonl").category == "medical_report"
    with pytest.raises(BenchmarkError):
        parse_byo_arg("nofamily.jsonl")
