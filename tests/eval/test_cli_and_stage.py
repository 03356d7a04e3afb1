"""The CLI (`python -m eval`) and the stages `eval` (tasks/eval.py) and `eval_progression`
(tasks/eval_progression.py) on the stage contract: outputs, MLflow run, progression, and the same
checkpoint evaluated in two checkouts at different paths giving identical files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval.cli import config_from_args, run_parser
from eval.cli import main as cli_main
from eval.harness import ByoConfig, EvalConfig, JudgeConfig, uses_llm
from eval.progression import ProgressionConfig
from tasks import eval as eval_stage
from tasks import eval_progression
from tasks.common.config import ConfigError
from tasks.common.stage import main
from tasks.common.tracking import EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = ("items.jsonl", "metrics.json", "summary.json", "report.md", "table.csv", "scores_plot.json",
           "instruct_items.jsonl")


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
    # a predictions file answers single prompts only: every instruction-following item is skipped, with why
    assert "instruct: skipped 52" in out
    skipped = [json.loads(line) for line in (tmp_path / "out" / "instruct_items.jsonl").read_text().splitlines()]
    assert len(skipped) == 52 and {r["skipped"] for r in skipped} == {"adapter_cannot_chat"}


def test_cli_options_reach_the_config():
    a = run_parser().parse_args(["--endpoint", "http://host:8000/v1/", "--endpoint-model", "m", "--endpoint-revision",
                                 "ckpt-7", "--mode-limits", "loglik=200", "--images", "max_pixels=50176,max_side=448",
                                 "--out", "o"])
    cfg = config_from_args(a)
    assert (cfg.endpoint_revision, cfg.mode_limits, cfg.images) == ("ckpt-7", {"loglik": 200},
                                                                    {"max_pixels": 50176, "max_side": 448})
    assert cfg.settings().limit_for("medqa", "loglik") == 200 and cfg.settings().limit_for("medqa", "generate") == 0
    assert cfg.instruct.enabled and (cfg.instruct.single_items, cfg.instruct.multi_turn_items) == (40, 12)
    a = run_parser().parse_args(["--model", "m", "--instruct-items", "6", "--instruct-multi-turn", "2",
                                 "--instruct-max-new-tokens", "24", "--out", "o"])
    ins = config_from_args(a).instruct
    assert (ins.single_items, ins.multi_turn_items, ins.max_new_tokens) == (6, 2, 24)
    assert not config_from_args(run_parser().parse_args(["--model", "m", "--no-instruct", "--out", "o"])).instruct.enabled
    # the instruct block is not part of the benchmark runs' settings: their resume fingerprint is unchanged
    assert config_from_args(a).settings() == EvalConfig(model_path="m").settings()


def test_cli_as_a_module_reports_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "eval", "--benchmarks", "medqa", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "one of the arguments --model --endpoint --predictions is required" in proc.stderr


def checkout(where: Path, model: Path, data_root: Path) -> Path:
    """A minimal project root at `where`: params.yaml (data_root pointed at the real data) and the
    checkpoint at data/model, as a DVC run of eval@<checkpoint> finds it."""
    where.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data_root"] = str(data_root)
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (where / "data").mkdir()
    (where / "data" / "model").symlink_to(model, target_is_directory=True)
    return where


def test_stage_outputs_are_identical_across_checkouts_and_free_of_their_paths(tiny_llama, data_root, tmp_path,
                                                                              monkeypatch):
    import mlflow

    args = ["checkpoint=tiny", "model_path=data/model", "benchmarks=[medqa,pubmedqa]", "limit=3", "mode_limits.loglik=3",
            "max_new_tokens=4", "device=cpu", "instruct.single_items=2", "instruct.multi_turn_items=1",
            "instruct.max_new_tokens=4"]
    outs = {}
    for name in ("a", "bb"):                           # two checkouts, paths of different lengths
        project = checkout(tmp_path / name / "medx", tiny_llama, data_root)
        monkeypatch.setenv("MEDX_PROJECT_ROOT", str(project))
        summary = main(eval_stage.STAGE, args)
        out = project / "data" / "eval" / "tiny"
        outs[name] = {n: (out / n).read_bytes() for n in OUTPUTS}
        for n, blob in outs[name].items():
            assert str(project).encode() not in blob and str(tmp_path).encode() not in blob, n
        assert summary["model"]["path"] == "data/model" and summary["model"]["device"] == "cpu/float32"
        assert summary["decontamination_report"] == "data/clean/decontamination_report.jsonl"
        assert json.loads(outs[name]["summary.json"]) == summary
    assert outs["a"] == outs["bb"]
    assert "Model: `{\"adapter\": \"hf\"" in outs["a"]["report.md"].decode()

    metrics = json.loads(outs["a"]["metrics.json"])
    assert set(metrics["benchmarks"]) == {"medqa", "pubmedqa"}
    assert (metrics["instruct"]["items"], metrics["instruct"]["prompts"], metrics["instruct"]["multi_turn"]["prompts"]) == (3, 2, 1)
    assert "## Instruction following (IFEval-style)" in outs["a"]["report.md"].decode()
    assert json.loads(outs["a"]["summary.json"])["instruct"]["vocabulary"] == "${data_root}/vocab/mesh_2017_tree.txt"
    assert metrics["benchmarks"]["medqa"]["loglik"]["n"] == 3 and metrics["benchmarks"]["medqa"]["generate"]["n"] == 3

    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.stage = 'eval@tiny'",
                              output_format="list")
    assert len(runs) == 2 and runs[0].info.run_name == "eval@tiny" and runs[0].data.tags["checkpoint"] == "tiny"
    m = runs[0].data.metrics
    assert "benchmarks.medqa.generate.score" in m and "categories.medical_text.loglik" in m
    assert m["benchmarks.medqa.generate.n"] == 3 and m["throughput.generate_items_per_s"] > 0
    assert "instruct.prompt_strict" in m and "instruct.multi_turn.persistence_strict_ci_high" in m
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "eval")}
    assert {"eval/report.md", "eval/table.csv", "eval/scores.png", "eval/table.json", "eval/summary.json"} <= arts

    # a second checkpoint, then the progression stage over both (its defaults: data/eval -> data/eval_progression)
    main(eval_stage.STAGE, [*args, "checkpoint=base", "modes=[generate]"])
    res = main(eval_progression.STAGE, [])
    assert res == {"checkpoints": ["base", "tiny"], "rows": res["rows"]} and res["rows"] > 0
    prog = project / "data" / "eval_progression"
    assert sorted(p.name for p in prog.iterdir()) == sorted(
        ["progression.json", "progression_plot.json", "progression_metrics.json", "progression.md",
         "progression.csv", "progression.png"])                  # file names unchanged: no summary.json
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.stage = 'eval_progression'",
                                output_format="list")
    m = run.data.metrics
    assert m["tiny.medqa.generate.delta"] == pytest.approx(m["tiny.medqa.generate.score"] - m["base.medqa.generate.score"])
    assert "tiny.medqa.loglik.score" in m and "tiny.medqa.loglik.delta" not in m          # base has no loglik
    assert "tiny.instruct.prompt_strict.delta" in m and "tiny.medqa.generate_parse_failure_rate.score" in m


def test_stage_configs_reject_unknown_keys_and_devices():
    with pytest.raises(ConfigError, match="device"):
        main(eval_stage.STAGE, ["checkpoint=x", "predictions=p.jsonl", "device=tpu"])
    with pytest.raises(ConfigError, match=r"images: unknown key\(s\) \['max_pixel'\]"):
        main(eval_stage.STAGE, ["checkpoint=x", "predictions=p.jsonl", "images.max_pixel=100"])
    with pytest.raises(ConfigError, match="mode_limits: unknown mode"):
        main(eval_stage.STAGE, ["checkpoint=x", "predictions=p.jsonl", "mode_limits.generation=5"])
    with pytest.raises(ConfigError, match="unknown key"):
        main(eval_progression.STAGE, ["roots=data/eval"])
    assert ProgressionConfig() == ProgressionConfig("data/eval", "data/eval_progression")


def test_the_runner_opens_the_llm_client_only_when_the_run_needs_it():
    assert not uses_llm(EvalConfig(model_path="m"))
    assert not uses_llm(EvalConfig(model_path="m", judge=JudgeConfig(method="llm")))     # no long-form benchmark
    longform = {"reports": ByoConfig("r.jsonl", "longform", "medical_report")}
    assert uses_llm(EvalConfig(model_path="m", byo=longform, judge=JudgeConfig(method="llm")))
    assert not uses_llm(EvalConfig(model_path="m", byo=longform))                         # the local judge
    assert uses_llm(EvalConfig(endpoint="local"))                                         # the pipeline's server
    assert not uses_llm(EvalConfig(endpoint="http://host:8000/v1"))   # the model under test opens its own
