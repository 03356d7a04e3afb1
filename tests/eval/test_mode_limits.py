"""Items per (benchmark, mode): `limits[benchmark]`, else `mode_limits[mode]`, else `limit`. Every slice
is a prefix of one seeded draw order, so the generated items are log-likelihood items too, a limit
that grows keeps what was answered, and the report's accounting (selected = scored + skipped) holds
per mode."""

from __future__ import annotations

import json

import pytest

from eval.benchmarks import REGISTRY, load, select
from eval.cli import main as cli_main
from eval.harness import EvalConfig
from eval.models import PredictionsModel
from eval.report import write_report
from eval.runner import RunSettings, evaluate, run_fingerprint, select_prefix


def predictions(path, data_root, names):
    """Every item answered 'A' with option log-probabilities: a model that supports both modes."""
    with open(path, "w") as f:
        for name in names:
            for it in load(REGISTRY[name], data_root).items:
                n = len(it.options) or len(it.choices) or 1
                f.write(json.dumps({"benchmark": name, "id": it.id, "output": "Answer: A",
                                    "option_logprobs": [-1.0 - i for i in range(n)]}) + "\n")
    return path


def ids(rows, name, mode):
    return [r["id"] for r in rows if r["benchmark"] == name and r["mode"] == mode]


def test_mode_limits_select_nested_slices_and_keep_the_accounting(data_root, tmp_path):
    specs = [REGISTRY["medqa"], REGISTRY["pubmedqa"], REGISTRY["vqa_rad"]]
    preds = PredictionsModel(predictions(tmp_path / "p.jsonl", data_root, ["medqa", "pubmedqa", "vqa_rad"]))
    preds.vision = False          # a text-only model: vqa_rad's items are skipped, per mode
    settings = RunSettings(limit=4, mode_limits={"loglik": 9}, limits={"pubmedqa": 5})
    res = evaluate(preds, specs, data_root, tmp_path / "w", settings)
    gen, ll = ids(res.rows, "medqa", "generate"), ids(res.rows, "medqa", "loglik")
    assert len(gen) == 4 and len(ll) == 9 and set(gen) < set(ll)
    assert len(ids(res.rows, "pubmedqa", "generate")) == len(ids(res.rows, "pubmedqa", "loglik")) == 5
    assert [it.id for it in res.selected["medqa"]] == ll           # the largest slice, file order
    assert res.accounting["medqa"] == {"generate": {"selected": 4, "skipped": 0},
                                       "loglik": {"selected": 9, "skipped": 0}}
    acc = res.accounting["vqa_rad"]
    assert acc["generate"] == {"selected": 4, "skipped": 4} and acc["loglik"]["selected"] == acc["loglik"]["skipped"]
    assert len(res.skipped) == 9 and not ids(res.rows, "vqa_rad", "generate")      # each item skipped once
    metrics, _ = write_report(res, tmp_path / "report")
    assert metrics["benchmarks"]["medqa"]["generate"]["n"] == 4 and metrics["benchmarks"]["medqa"]["loglik"]["n"] == 9
    # without mode limits, the same seeded slice as before (random.sample's draws for this size)
    items = load(REGISTRY["medqa"], data_root).items
    assert [it.id for it in select(items, 4, 1234)] == gen


def test_the_accounting_check_catches_a_missing_row(data_root, tmp_path):
    preds = PredictionsModel(predictions(tmp_path / "p.jsonl", data_root, ["medqa"]))
    res = evaluate(preds, [REGISTRY["medqa"]], data_root, tmp_path / "w",
                   RunSettings(limit=3, mode_limits={"loglik": 6}))
    res.rows = [r for r in res.rows if not (r["mode"] == "loglik" and r["id"] == res.rows[-1]["id"])]
    with pytest.raises(RuntimeError, match="medqa loglik: selected 6 != scored 5"):
        write_report(res, tmp_path / "report")


def test_a_growing_limit_reuses_answered_items(data_root, tmp_path):
    preds = PredictionsModel(predictions(tmp_path / "p.jsonl", data_root, ["medqa"]))
    small = RunSettings(limit=3, mode_limits={"loglik": 5})
    large = RunSettings(limit=6, mode_limits={"loglik": 12})
    assert run_fingerprint(preds, small, None) == run_fingerprint(preds, large, None)
    first = evaluate(preds, [REGISTRY["medqa"]], data_root, tmp_path / "w", small)
    grown = evaluate(preds, [REGISTRY["medqa"]], data_root, tmp_path / "w", large)
    assert grown.timings["generate_items"] == 3 and grown.timings["loglik_items"] == 7      # only the new ones
    assert set(ids(first.rows, "medqa", "generate")) < set(ids(grown.rows, "medqa", "generate"))
    assert set(ids(first.rows, "medqa", "loglik")) < set(ids(grown.rows, "medqa", "loglik"))
    # back to the small limits: the rows of the items no longer selected are not reported
    again = evaluate(preds, [REGISTRY["medqa"]], data_root, tmp_path / "w", small)
    assert again.rows == first.rows and not again.timings


def test_prefix_selection_and_validation(data_root):
    items = load(REGISTRY["mmlu_medical"], data_root).items
    slices = select_prefix(items, {"a": 5, "b": 50, "c": 0, "d": 10**6}, 7)
    assert len(slices["a"]) == 5 and set(it.id for it in slices["a"]) < set(it.id for it in slices["b"])
    assert slices["c"] == slices["d"] == items
    assert select_prefix(items, {"a": 5}, 7) == {"a": slices["a"]}        # a slice does not depend on the others
    with pytest.raises(ValueError, match="unknown mode"):
        RunSettings(mode_limits={"logprob": 5})
    with pytest.raises(ValueError, match=">= 0"):
        EvalConfig(predictions="p.jsonl", mode_limits={"loglik": -1})


def test_cli_mode_limits(data_root, tmp_path, capsys):
    preds = predictions(tmp_path / "p.jsonl", data_root, ["medqa"])
    rc = cli_main(["--predictions", str(preds), "--benchmarks", "medqa", "--limit", "2", "--mode-limits",
                   "loglik=5", "--data-root", str(data_root), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert sum(r["mode"] == "generate" for r in rows) == 2 and sum(r["mode"] == "loglik" for r in rows) == 5
    with pytest.raises(SystemExit):
        cli_main(["--predictions", str(preds), "--mode-limits", "loglik", "--out", str(tmp_path / "o2")])
    assert "expected key=number" in capsys.readouterr().err
