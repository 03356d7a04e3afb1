"""The stage `python -m tasks.clean` on a small input: outputs, accounting, MLflow."""

import hashlib
import json

import pytest

from tasks import clean
from tasks.common.io import ShardedJsonlWriter
from tasks.common.records import make_record
from tasks.common.stage import main


def test_stage_main_end_to_end(tmp_path, data_root, medquad_answers, medqa_rows, vqa_test_image,
                               isolated_mlflow):
    in_dir = tmp_path / "collect"
    writer = ShardedJsonlWriter(in_dir / "kept", shard_size=3)
    sha = hashlib.sha256(vqa_test_image.read_bytes()).hexdigest()
    recs = [make_record("medquad", i, t) for i, t in enumerate(medquad_answers[:4])]
    recs.append(make_record("medquad", "leak", "Notes. " + medqa_rows[0]["question"]))
    recs.append(make_record("vqa_rad", "img", "Question: Is this a CT? Answer: yes",
                            images=[{"path": str(vqa_test_image), "sha256": sha}]))
    recs.append(dict(recs[0]))  # exact duplicate
    for r in recs:
        writer.write(r)
    writer.close()
    with open(in_dir / "kept" / "part-00002.jsonl", "a") as f:
        f.write("{not json\n")

    out_dir = tmp_path / "clean"
    summary = main(clean.STAGE, [f"in_dir={in_dir}", f"out_dir={out_dir}", f"data_root={data_root}"])

    assert summary["read"] == len(recs) + 1 == summary["kept"] + summary["rejected"]
    assert summary["rejected_by_reason"] == {"bad_json": 1, "decontaminated": 2, "exact_duplicate": 1}
    for name in ("summary.json", clean.REPORT, clean.REPORT_SUMMARY):
        assert (out_dir / name).is_file()
    rows = [json.loads(line) for line in (out_dir / clean.REPORT).read_text().splitlines()]
    keys = [(r["record_id"], r["benchmark"], r["benchmark_item"], r["kind"]) for r in rows]
    assert keys == sorted(keys) and {r["benchmark"] for r in rows} == {"medqa", "vqa_rad"}
    rsum = json.loads((out_dir / clean.REPORT_SUMMARY).read_text())
    assert rsum["records_by_benchmark"] == {"medqa": 1, "vqa_rad": 1}
    assert rsum["index"]["malformed_total"] == 0
    rejected = [json.loads(line) for line in (out_dir / "rejected" / "part-00000.jsonl").open()]
    bad = next(r for r in rejected if r["reason"] == "bad_json")
    assert bad["locator"].endswith("part-00002.jsonl:2")

    import mlflow

    runs = mlflow.search_runs(experiment_names=["medxiaohe-pipeline"], output_format="list")
    run = next(r for r in runs if r.data.tags.get("stage") == "clean")
    m = run.data.metrics
    assert m["decontam.records.medqa"] == 1 and m["decontam.records.vqa_rad"] == 1
    assert m["read"] == summary["read"] and m["rejected.decontaminated"] == 2


def test_no_input_shards_stops_with_the_path(tmp_path, isolated_mlflow):
    with pytest.raises(SystemExit, match="run collect first"):
        main(clean.STAGE, [f"in_dir={tmp_path / 'nothing'}", f"out_dir={tmp_path / 'clean'}"])
    assert not (tmp_path / "clean").exists()  # nothing half-written for DVC to cache
