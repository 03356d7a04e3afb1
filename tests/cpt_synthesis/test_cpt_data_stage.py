"""`python -m tasks.cpt_data` end to end on tiny fixtures (a tree, a KG written by the kg stage's writer,
corpus records with images, a manifest), MLflow in a temp store: accounting, every part's output in the
sample contract, rejections with reasons, byte-identical re-run."""

from __future__ import annotations

import json

import pytest
from mapping.test_map_fixtures import write_tree
from PIL import Image

from tasks import cpt_data
from tasks.common.stage import main
from tasks.cpt_synthesis.run import item_rejection
from tasks.cpt_synthesis.samples import validate_sample

kg_graph = pytest.importorskip("tasks.knowledge_graph.graph")

NODES = [{"norm": n, "name": n, "type": t, "degree": 1} for n, t in
         [("asthma", "Disease"), ("wheezing", "Symptom"), ("salbutamol", "Drug"), ("copd", "Disease"),
          ("pneumonia", "Disease"), ("cough", "Symptom")]]
EDGES = [{"id": i, "head_idx": h, "tail_idx": t, "relation": r, "weight": 1.0, "support": 2,
          "provenance": {"doc_ids": [f"doc-{i}"]}}
         for i, (h, r, t) in enumerate([(0, "has_symptom", 1), (0, "treated_by", 2), (3, "has_symptom", 1),
                                        (3, "treated_by", 2), (4, "has_symptom", 5), (0, "co_occurs_with", 4)])]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def fixtures(tmp_path):
    img = tmp_path / "gray.png"
    Image.new("L", (64, 64), 100).save(img)
    tiny = tmp_path / "tiny.png"
    Image.new("L", (1, 1)).save(tiny)
    ref = {"path": str(img), "sha256": "a" * 64}
    recs = [{"id": "vqa_rad-1", "source": "vqa_rad", "text": "", "images": [ref],
             "meta": {"question": "Is there a mass in the liver?", "answer": "yes",
                      "attributes": {"image_organ": "ABD", "question_type": "PRES", "answer_type": "CLOSED"}}},
            {"id": "pneumoniamnist-1", "source": "pneumoniamnist", "text": "",
             "images": [{"path": str(tiny), "sha256": "b" * 64}],
             "meta": {"attributes": {"finding": "pneumonia", "width": 1, "height": 1}}},
            {"id": "medquad-1", "source": "medquad", "text": "Asthma causes wheezing.", "images": [], "meta": {}}]
    kept = tmp_path / "kept"
    kept.mkdir()
    with open(kept / "part-00000.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
        f.write("{broken\n")
    kg = tmp_path / "kg"
    kg.mkdir()
    kg_graph.write_graph(kg, NODES, EDGES)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"doc_id": r["id"], "weight": w, "n_entities": 1}) + "\n"
                                for r, w in zip(recs, (0.5, 1.0, 1.5))))
    return [f"in_dir={kept}", f"kg_dir={kg}", f"tree={write_tree(tmp_path / 'tree.json')}", f"manifest={manifest}",
            "base_model=", "stop_keys=[]", "ocr.images=2", "kg_qa.walks=6", "mixing_budget=6"]


def test_stage_end_to_end_and_deterministic(tmp_path):
    args = fixtures(tmp_path)
    summary = main(cpt_data.STAGE, [*args, f"out_dir={tmp_path / 'out'}"])
    assert summary["read"] == 4 == summary["kept"] + summary["rejected"] and summary["rejected_by_reason"] == {"bad_json": 1}
    tasks = summary["samples_by_task"]
    assert {"atomic_qa", "aggregated_qa", "passage", "caption", "caption_refined", "instruction_descriptive",
            "ocr_transcription", "ocr_qa"} <= set(tasks)
    assert summary["parts"]["image_check"]["rejected_by_reason"] == {"too_small": 1}
    assert summary["parts"]["atomic_qa"]["rejected_by_reason"] == {}          # co_occurs edge not in the input
    assert summary["perplexity"] == {"enabled": False, "skipped": "base_model is not set"}
    # the mixture (expected 1, 2, 3 views) reaches the samples: the text document 3 times, image documents
    # left to the image parts
    assert tasks["document"] == 3 and summary["documents"]["views"] == 6
    docs = summary["parts"]["documents"]
    assert (docs["inputs"], docs["kept"], docs["rejected_by_reason"]) == (6, 3, {"image_document": 3})
    assert summary["parts"]["contract"]["rejected"] == 0
    out = tmp_path / "out"
    samples = [r for p in sorted((out / "samples").glob("part-*.jsonl")) for r in read_jsonl(p)]
    assert len(samples) == summary["samples"]
    for s in samples:
        validate_sample(s)
    ocr_images = [s["images"][0]["path"] for s in samples if s["kind"] == "ocr"]
    assert all((out / "images" / p.split("/images/")[1]).exists() for p in ocr_images)
    items = [r for p in (out / "rejected_items").glob("part-*.jsonl") for r in read_jsonl(p)]
    assert {(r["part"], r["reason"]) for r in items} >= {("image_check", "too_small")}
    rejected = read_jsonl(out / "rejected" / "part-00000.jsonl")
    assert [r["reason"] for r in rejected] == ["bad_json"] and set(rejected[0]) == {"reason", "detail", "locator"}
    # both rejection files hold records.rejection entries (rejected_items/ adds the part)
    assert all({"reason", "detail", "part"} <= set(r) and ("record" in r or "locator" in r) for r in items)
    mixture = read_jsonl(out / "mixture.jsonl")
    assert sum(r["repeats"] for r in mixture) == 6 and mixture[0]["doc_id"] == "vqa_rad-1"
    documents = [s for s in samples if s["task"] == "document"]
    assert {s["source_ids"][0] for s in documents} == {"medquad-1"} and len({s["id"] for s in documents}) == 3
    assert all(s["text"] == "Asthma causes wheezing." for s in documents)
    assert not (out / "kept").exists()

    import mlflow

    from tasks.common.tracking import EXPERIMENT, tracking_uri
    mlflow.set_tracking_uri(tracking_uri())
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    m = run.data.metrics
    # the names MLflow has always had: accounting, samples per task, per-part counts, timings
    assert (m["read"], m["kept"], m["rejected"], m["rejected.bad_json"]) == (4, 4 - 1, 1, 1)
    assert m["samples.document"] == 3 and m["parts.image_check.rejected"] == 1 and m["samples"] == summary["samples"]
    assert m["ocr_images_per_s"] > 0 and "total_s" in m and "kg_text_s" in m

    first = {name: (out / name).read_bytes() for name in ("samples/part-00000.jsonl", "mixture.jsonl")}
    main(cpt_data.STAGE, [*args, f"out_dir={out}"])             # image paths name out_dir: same dir, same bytes
    assert all((out / name).read_bytes() == data for name, data in first.items())


def test_rejected_item_entries_have_the_rejection_shape():
    entry = item_rejection("image_check", {"reason": "too_small", "detail": "1x1", "item": {"id": "x", "source_ids": ["a"]}})
    assert entry == {"part": "image_check", "reason": "too_small", "detail": "1x1", "id": "x", "source": None,
                     "record": {"id": "x", "source_ids": ["a"]}}
    assert item_rejection("ocr", {"reason": "r", "detail": "", "item": 3}) == {
        "part": "ocr", "reason": "r", "detail": "", "locator": "3"}
