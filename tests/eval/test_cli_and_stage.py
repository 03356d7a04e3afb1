"""The CLI (`python -m eval`) and the `eval` stage shell (tasks/eval.py): outputs, MLflow run,
progression, and the same checkpoint evaluated twice giving identical files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from eval.cli import main as cli_main
from tasks.common.tracking import EXPERIMENT
from tasks.eval import main as stage_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_predictions_and_list(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"benchmark": "pubmedqa", "id": "12377809", "output": "Yes."}) + "\n")
    assert cli_main(["list"]) == 0
    assert "pubmedqa" in capsys.readouterr().out
    rc = cli_main(["--predictions", str(preds), "--benchmarks", "pubmedqa", "--limit", "5", "--out",
                   str(tmp_path / "out"), "--no-progress", "--modes", "generate"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "pubmedqa: pass@1" in out and "report:" in out
    rows = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and sum(r["failure"] == "missing_prediction" for r in rows) >= 4


def test_cli_as_a_module_reports_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "eval", "--benchmarks", "medqa", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "one of the arguments --model --endpoint --predictions is required" in proc.stderr


def test_stage_evaluates_one_checkpoint_twice_identically_and_logs_mlflow(tiny_llama, tmp_path):
    import mlflow

    args = ["checkpoint=tiny", f"model_path={tiny_llama}", "benchmarks=[medqa,pubmedqa]", "limit=3",
            "max_new_tokens=4", f"out_root={tmp_path / 'eval'}", f"work_root={tmp_path / 'work'}"]
    metrics = stage_main(args)
    out = tmp_path / "eval" / "tiny"
    assert set(metrics["benchmarks"]) == {"medqa", "pubmedqa"}
    assert metrics["benchmarks"]["medqa"]["loglik"]["n"] == 3 and metrics["benchmarks"]["medqa"]["generate"]["n"] == 3
    first = {n: (out / n).read_bytes() for n in ("metrics.json", "items.jsonl", "report.md", "scores_plot.json")}
    stage_main([*args, f"work_root={tmp_path / 'work2'}"])                 # from scratch, not resumed
    assert {n: (out / n).read_bytes() for n in first} == first

    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.stage = 'eval@tiny'",
                              output_format="list")
    assert len(runs) == 2 and runs[0].data.tags["checkpoint"] == "tiny"
    m = runs[0].data.metrics
    assert "benchmarks.medqa.generate.score" in m and "categories.medical_text.loglik" in m
    assert m["throughput.generate_items_per_s"] > 0
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "eval")}
    assert {"eval/report.md", "eval/table.csv", "eval/scores.png", "eval/table.json"} <= arts

    # a second checkpoint, then the progression stage over both
    stage_main([*args, "checkpoint=base", "modes=[generate]"])
    res = stage_main(["progression", f"root={tmp_path / 'eval'}", f"out={tmp_path / 'prog'}"])
    assert res["checkpoints"] == ["base", "tiny"]
    assert (tmp_path / "prog" / "progression.png").exists()
