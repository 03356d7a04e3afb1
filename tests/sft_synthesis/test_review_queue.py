"""The Label Studio round trip: the exported tasks and labeling config, then an export written the way Label
Studio writes it (accepted, corrected, chosen expert answer, rejected, unlabeled, cancelled, unknown id)
imported back into exact samples and rejections."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tasks.sft_synthesis.consensus import ConsensusParams, split_by_consensus
from tasks.sft_synthesis.review_queue import export_queue, import_labels
from tasks.sft_synthesis.samples import sft_sample, validate_sft_sample

SHA = "b" * 64


def _rec(sample, votes, agree, total, pass_rate=None):
    return {"id": sample["id"], "kind": sample["meta"]["answer_kind"], "score": agree / total if total else 0.0,
            "votes": votes, "agree": agree, "total": total, "pass_rate": pass_rate, "abstained": {}}


def _queue():
    choice = sft_sample("kg_qa", ["cpt-1"], [{"role": "user", "content": "What treats fever?\nA. Gout\nB. Fever\nC. Asthma"},
                                             {"role": "assistant", "content": "B. Fever"}],
                        answer="Fever", answer_kind="choice", accuracy="consensus", question="What treats fever?",
                        options=["Gout", "Fever", "Asthma"], gold_index=1)
    judge = sft_sample("vqa_rad", ["vqa_rad-train-1"],
                       [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it broken?"}]},
                        {"role": "assistant", "content": "yes"}],
                       answer="yes", answer_kind="judgement", accuracy="consensus", options=["yes", "no"],
                       gold_index=0, images=[{"path": "data/collect/images/bb/x.jpg", "sha256": SHA}])
    fill = sft_sample("vqa_rad", ["vqa_rad-train-2"], [{"role": "user", "content": "Where is the mass?"},
                                                       {"role": "assistant", "content": "left lung"}],
                      answer="left lung", answer_kind="fill", accuracy="consensus")
    open_ = sft_sample("medquad", ["medquad-1"], [{"role": "user", "content": "How is gout treated?"},
                                                  {"role": "assistant", "reasoning_content": "Think.",
                                                   "content": "Rest."}],
                       answer="Rest.", answer_kind="open", accuracy="consensus")
    idle = sft_sample("medquad", ["medquad-2"], [{"role": "user", "content": "What is gout?"},
                                                 {"role": "assistant", "content": "A kind of arthritis."}],
                      answer="A kind of arthritis.", answer_kind="open", accuracy="consensus")
    records = [_rec(choice, {"e1": "C", "e2": "B", "checkpoint": "C"}, 1, 3, 0.3),
               _rec(judge, {"e1": "no", "e2": "yes", "checkpoint": "no"}, 1, 3, 0.2),
               _rec(fill, {"e1": "right lung", "e2": None}, 0, 1),
               _rec(open_, {"e1": "Colchicine", "e2": "colchicine."}, 0, 2),
               _rec(idle, {"e1": "A joint disease"}, 0, 1)]
    samples = [choice, judge, fill, open_, idle]
    kept, escalated = split_by_consensus(samples, records, ConsensusParams())
    assert kept == [] and len(escalated) == 5
    return {s["family"] + ":" + s["source_ids"][0]: s for s in escalated}, records


def _ls_task(task, annotations):
    """One task of a Label Studio JSON export (the fields Label Studio writes)."""
    return {"id": task["id"], "annotations": annotations, "file_upload": "tasks.json", "drafts": [], "predictions": [],
            "data": task["data"], "meta": {}, "created_at": "2025-03-01T09:00:00.000000Z",
            "updated_at": "2025-03-01T10:00:00.000000Z", "inner_id": task["id"], "total_annotations": len(annotations),
            "cancelled_annotations": sum(a["was_cancelled"] for a in annotations), "total_predictions": 0,
            "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 3,
            "updated_by": 1, "comment_authors": []}


def _ann(ann_id, task_id, *, verdict=None, answer=None, corrected=None, cancelled=False, at="2025-03-01T10:00:00Z"):
    result = []
    if answer is not None:
        result.append({"value": {"choices": [answer]}, "id": f"a{ann_id}", "from_name": "answer", "to_name": "question",
                       "type": "choices", "origin": "manual"})
    if corrected is not None:
        result.append({"value": {"text": [corrected]}, "id": f"t{ann_id}", "from_name": "corrected",
                       "to_name": "question", "type": "textarea", "origin": "manual"})
    if verdict is not None:
        result.append({"value": {"choices": [verdict]}, "id": f"v{ann_id}", "from_name": "verdict",
                       "to_name": "question", "type": "choices", "origin": "manual"})
    return {"id": ann_id, "completed_by": 7, "result": result, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": at, "updated_at": at, "draft_created_at": None, "lead_time": 21.4, "prediction": {},
            "result_count": 0, "unique_id": f"u-{ann_id}", "import_id": None, "last_action": None, "task": task_id,
            "project": 3, "updated_by": 7, "parent_prediction": None, "parent_annotation": None, "last_created_by": None}


def test_export_writes_sorted_tasks_and_a_valid_config(tmp_path):
    q, records = _queue()
    summary = export_queue(list(q.values()), records, tmp_path)
    tasks = json.loads((tmp_path / "review_queue/tasks.json").read_text())
    assert [t["id"] for t in tasks] == [1, 2, 3, 4, 5]
    assert [t["data"]["sample_id"] for t in tasks] == sorted(s["id"] for s in q.values())
    # totals 3, 3, 1, 2, 1 against min_votes 2
    assert summary["tasks"] == 5 and summary["with_images"] == 1 and summary["by_reason"] == {"low_consensus": 3,
                                                                                              "too_few_votes": 2}
    by_sid = {t["data"]["sample_id"]: t["data"] for t in tasks}
    c = by_sid[q["kg_qa:cpt-1"]["id"]]
    assert c["candidates"] == [{"value": "B. Fever", "hint": "candidate answer; given by e2"},
                               {"value": "C. Asthma", "hint": "expert answer; given by e1, checkpoint"}]
    assert c["question"] == "What treats fever?\nA. Gout\nB. Fever\nC. Asthma" and c["image_html"] == ""
    assert c["disagreement"] == ("low_consensus: 1 of 3 readable votes agree with the candidate (score 0.33); "
                                 "checkpoint pass rate 0.30. Votes: e1: C, e2: B, checkpoint: C")
    j = by_sid[q["vqa_rad:vqa_rad-train-1"]["id"]]
    assert j["images"] == ["data/collect/images/bb/x.jpg"]
    assert j["image_html"] == '<img src="/data/local-files/?d=data/collect/images/bb/x.jpg" style="max-width:100%"/>'
    o = by_sid[q["medquad:medquad-1"]["id"]]
    # "Colchicine" and "colchicine." are one answer after normalisation
    assert o["candidates"] == [{"value": "Rest.", "hint": "candidate answer; no expert gave it"},
                               {"value": "Colchicine", "hint": "expert answer; given by e1, e2"}]
    root = ET.fromstring((tmp_path / "review_queue/label_config.xml").read_text())
    controls = {(el.tag, el.get("name")): el for el in root.iter() if el.get("name")}
    assert controls[("Choices", "answer")].get("value") == "$candidates"
    assert controls[("TextArea", "corrected")].get("toName") == "question"
    assert [ch.get("value") for ch in controls[("Choices", "verdict")]] == ["accept", "reject"]
    assert controls[("Text", "question")].get("value") == "$question"
    before = (tmp_path / "review_queue/tasks.json").read_bytes()
    export_queue(list(reversed(list(q.values()))), records, tmp_path)
    assert (tmp_path / "review_queue/tasks.json").read_bytes() == before


def test_label_studio_export_round_trip(tmp_path):
    q, records = _queue()
    escalated = list(q.values())
    export_queue(escalated, records, tmp_path)
    tasks = {t["data"]["sample_id"]: t for t in json.loads((tmp_path / "review_queue/tasks.json").read_text())}
    choice, judge, fill, open_, idle = (q[k] for k in ("kg_qa:cpt-1", "vqa_rad:vqa_rad-train-1",
                                                       "vqa_rad:vqa_rad-train-2", "medquad:medquad-1",
                                                       "medquad:medquad-2"))
    tj, tc, tf, to, ti = (tasks[s["id"]] for s in (judge, choice, fill, open_, idle))
    export = [
        _ls_task(tj, [_ann(101, tj["id"], verdict="accept", answer="yes")]),                 # the candidate
        _ls_task(tc, [_ann(102, tc["id"], verdict="accept", answer="C. Asthma", corrected="Gout")]),   # textarea wins
        _ls_task(tf, [_ann(103, tf["id"], verdict="reject")]),
        # an older reject, then the accept that decides; a later cancelled one does not count
        _ls_task(to, [_ann(104, to["id"], verdict="reject", at="2025-03-01T08:00:00Z"),
                      _ann(105, to["id"], verdict="accept", answer="Colchicine", at="2025-03-01T09:00:00Z"),
                      _ann(106, to["id"], verdict="reject", cancelled=True, at="2025-03-01T11:00:00Z")]),
        _ls_task(ti, []),                                                                      # not labeled yet
        _ls_task({"id": 99, "data": {**tj["data"], "sample_id": "sft-kg_qa-unknown"}},
                 [_ann(107, 99, verdict="accept")]),
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export, indent=2))
    out = import_labels(path, escalated)
    assert (out.read, len(out.kept), len(out.rejected)) == (5, 3, 2)
    assert out.by_gate() == {"human": {"awaiting_review": 1, "rejected_by_reviewer": 1}}
    assert out.label_errors == [{"task": 99, "sample_id": "sft-kg_qa-unknown", "reason": "unknown_sample_id",
                                 "detail": "not among the escalated samples"}]
    rej = {r["reason"]: r["item"] for r in out.rejected}
    assert rej["rejected_by_reviewer"] == {"id": fill["id"], "source": "vqa_rad", "task_id": tf["id"],
                                           "annotation_id": 103, "annotator": 7}
    assert rej["awaiting_review"] == {"id": idle["id"], "source": "medquad"}
    kept = {s["source_ids"][0]: validate_sft_sample(s) for s in out.kept}

    j = kept["vqa_rad-train-1"]                          # confirmed: same content, same id
    assert j["id"] == judge["id"] and j["messages"] == judge["messages"]
    assert j["meta"]["accuracy"] == "human" and "escalation" not in j["meta"]
    assert j["meta"]["review"] == {"task_id": tj["id"], "annotation_id": 101, "annotator": 7, "answer_source": "choice",
                                   "changed": False}
    assert j["meta"]["consensus"] == judge["meta"]["consensus"]

    c = kept["cpt-1"]                                    # corrected to option A by its text
    assert c["messages"] == [choice["messages"][0], {"role": "assistant", "content": "A. Gout"}]
    assert (c["meta"]["answer"], c["meta"]["gold_index"], c["meta"]["accuracy"]) == ("Gout", 0, "human")
    assert c["meta"]["review"]["answer_source"] == "corrected" and c["meta"]["review"]["changed"] is True
    assert c["id"] != choice["id"] and c["id"].startswith("sft-kg_qa-")

    o = kept["medquad-1"]                                # an expert's answer; the old reasoning goes
    assert o["messages"][-1] == {"role": "assistant", "content": "Colchicine"}
    assert (o["meta"]["answer"], o["meta"]["review"]["annotation_id"]) == ("Colchicine", 105)


def test_missing_or_bad_labels_leave_samples_awaiting_review(tmp_path):
    q, records = _queue()
    escalated = list(q.values())
    out = import_labels(tmp_path / "no_such_export.json", escalated)
    assert (out.read, out.kept, out.by_gate()) == (5, [], {"human": {"awaiting_review": 5}})
    export_queue(escalated, records, tmp_path)
    tasks = {t["data"]["sample_id"]: t for t in json.loads((tmp_path / "review_queue/tasks.json").read_text())}
    choice, judge = q["kg_qa:cpt-1"], q["vqa_rad:vqa_rad-train-1"]
    tc, tj = tasks[choice["id"]], tasks[judge["id"]]
    bad = [_ls_task(tc, [_ann(1, tc["id"], answer="C. Asthma")]),                       # no verdict
           _ls_task(tj, [_ann(2, tj["id"], verdict="accept", corrected="It is fractured")]),   # no yes/no label
           _ls_task(tc, [_ann(3, tc["id"], verdict="reject")]),                         # second task, same sample
           {"id": 50, "annotations": []}]                                               # no data at all
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = import_labels(tmp_path / "bad.json", escalated)
    assert out.by_gate() == {"human": {"awaiting_review": 5}}
    assert [(e["task"], e["reason"]) for e in out.label_errors] == [
        (tc["id"], "duplicate_task"), (50, "no_sample_id"), (tc["id"], "no_verdict"), (tj["id"], "answer_not_a_label")]
