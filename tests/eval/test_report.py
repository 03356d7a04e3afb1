"""Reports: per-benchmark scores beside chance with their 95% intervals, subsets, category
macro-averages, accounting, the decontamination section (the clean stage's report and summary
formats; benchmarks it did not check), files written, identical on re-run; and the progression over
checkpoints."""

from __future__ import annotations

import json

import pytest

from eval.benchmarks import REGISTRY, byo_spec
from eval.intervals import stratified_bootstrap, wilson
from eval.models import PredictionsModel
from eval.progression import checkpoint_order, write_progression
from eval.report import load_decontam, write_report
from eval.runner import RunSettings, evaluate, write_items


@pytest.fixture
def run_with_predictions(data_root, tmp_path):
    """medqa, mmlu_medical and pubmedqa slices scored from a predictions file: the first option
    letter / 'yes' for everything (a fixed answer: chance-level by construction)."""
    specs = [REGISTRY["medqa"], REGISTRY["mmlu_medical"], REGISTRY["pubmedqa"]]
    settings = RunSettings(modes=("generate",), limit=12, seed=11)
    probe = evaluate(PredictionsModel(_write(tmp_path / "none.jsonl", [])), specs, data_root, tmp_path / "p", settings)
    rows = [{"benchmark": b, "id": it.id, "output": "Answer: A" if b != "pubmedqa" else "yes"}
            for b, items in probe.selected.items() for it in items]
    preds = _write(tmp_path / "preds.jsonl", rows)

    def run(name):
        return evaluate(PredictionsModel(preds), specs, data_root, tmp_path / name, settings)
    return run


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_metrics_tables_and_macro_averages(run_with_predictions, tmp_path):
    res = run_with_predictions("r1")
    metrics, summary = write_report(res, tmp_path / "out", decontam=None, title="t")
    b = metrics["benchmarks"]
    medqa_score = sum(it.answer == "A" for it in res.selected["medqa"]) / 12
    assert b["medqa"]["generate"]["score"] == pytest.approx(medqa_score)
    assert b["medqa"]["generate"]["chance"] == 0.25 and b["pubmedqa"]["generate"]["chance"] == pytest.approx(1 / 3)
    assert b["medqa"]["read"] == 1273 and b["medqa"]["selected"] == 12 and b["medqa"]["quarantined"] == 0
    assert set(b["mmlu_medical"]["subsets"]) >= {"anatomy", "clinical_knowledge"}
    cat = metrics["categories"]["medical_text"]
    assert cat["benchmarks"] == 3
    assert cat["generate"] == pytest.approx(sum(b[n]["generate"]["score"] for n in b) / 3)   # macro, not pooled
    assert metrics["overall"]["generate"] == cat["generate"]
    assert summary["benchmarks"]["pubmedqa"]["family"] == "yesno"
    # intervals: Wilson for Pass@1 on closed items (k of n kept), a bootstrap stratified by benchmark
    # for the macro-averages
    k = sum(it.answer == "A" for it in res.selected["medqa"])
    g = b["medqa"]["generate"]
    assert g["score_correct"] == k and (g["score_ci_low"], g["score_ci_high"]) == wilson(k, 12)
    sub = b["mmlu_medical"]["subsets"]["anatomy"]["generate"]
    assert (sub["score_ci_low"], sub["score_ci_high"]) == wilson(sub["score_correct"], sub["n"])
    per_item = [[r["score"] for r in res.rows if r["benchmark"] == n] for n in ("medqa", "mmlu_medical", "pubmedqa")]
    assert (cat["generate_ci_low"], cat["generate_ci_high"]) == stratified_bootstrap(per_item)
    assert cat["generate_ci_low"] < cat["generate"] < cat["generate_ci_high"]
    ov = metrics["overall"]
    assert (ov["generate_ci_low"], ov["generate_ci_high"]) == (cat["generate_ci_low"], cat["generate_ci_high"])
    assert summary["intervals"]["bootstrap_resamples"] == 2000
    out = tmp_path / "out"
    for name in ("metrics.json", "summary.json", "scores_plot.json", "table.csv", "report.md", "scores.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    lo, hi = wilson(k, 12)
    assert (f"| medqa | medical_text | 12 | {100 * k / 12:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | 25.0 |" in report
            and "mmlu_medical/anatomy" in report)
    assert "In brackets: 95% interval (Wilson score interval" in report
    assert f"Pass@1 {100 * cat['generate']:.1f} [{100 * cat['generate_ci_low']:.1f}, " in report
    assert "No decontamination report found" in report
    plot = json.loads((out / "scores_plot.json").read_text())
    assert plot[0] == {"benchmark": "medqa", "mode": "generate", "score": round(k / 12, 6), "chance": 0.25,
                       "score_ci_low": round(lo, 6), "score_ci_high": round(hi, 6)}
    header, medqa_row = (out / "table.csv").read_text().splitlines()[:2]
    assert header.startswith("benchmark,mode,n,score,score_ci_low,score_ci_high,chance,")
    assert medqa_row.startswith(f"medqa,generate,12,{k / 12:.4f},{lo:.4f},{hi:.4f},0.2500,")


def test_same_run_twice_gives_identical_files(run_with_predictions, tmp_path):
    outs = []
    for name in ("a", "b"):
        res = run_with_predictions(name)
        write_report(res, tmp_path / f"out_{name}")
        write_items(res.rows, tmp_path / f"out_{name}" / "items.jsonl")
        outs.append(tmp_path / f"out_{name}")
    for name in ("metrics.json", "items.jsonl", "scores_plot.json", "table.csv", "report.md", "scores.png"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_decontamination_section(data_root, tmp_path):
    """Rows in the clean stage's format; one flagged record survived into the kept data."""
    specs = [REGISTRY["vqa_rad"], REGISTRY["medqa"]]
    settings = RunSettings(modes=("generate",), limit=6, seed=2)
    probe = evaluate(PredictionsModel(_write(tmp_path / "none.jsonl", [])), specs, data_root, tmp_path / "w", settings)
    vqa, medqa = probe.selected["vqa_rad"], probe.selected["medqa"]
    image = vqa[0].images[0].rsplit("/", 1)[1]
    rows = [{"benchmark": "vqa_rad", "benchmark_item": image, "evidence": "ab" * 32, "kind": "image_sha256",
             "record_id": "r1", "source": "vqa_rad"},
            {"benchmark": "vqa_rad", "benchmark_item": image, "evidence": "phash_distance=2", "kind": "image_phash",
             "record_id": "r2", "source": "vqa_rad"},
            {"benchmark": "medqa", "benchmark_item": medqa[1].id, "evidence": "thirteen words ...", "kind": "text",
             "record_id": "r3", "source": "medquad"},
            {"benchmark": "medqa", "benchmark_item": "test-99999", "evidence": "x", "kind": "text",
             "record_id": "r4", "source": "medquad"}]
    report = _write(tmp_path / "decontamination_report.jsonl", rows)
    _write_json(tmp_path / "decontamination_summary.json",
                {"benchmarks_checked": {"vqa_rad": {"items": 451, "source": "bundled"},
                                        "medqa": {"items": 1273, "source": "bundled"}}})
    kept = tmp_path / "kept"
    kept.mkdir()
    _write(kept / "part-00000.jsonl", [{"id": "r3", "text": "..."}, {"id": "other", "text": "..."}])
    dec = load_decontam(report, [kept])
    metrics, _ = write_report(probe, tmp_path / "out", decontam=dec)
    d = metrics["decontamination"]
    flagged_vqa = sum(any(image == p.rsplit("/", 1)[1] for p in it.images) for it in vqa)
    assert d["vqa_rad"]["flagged"] == flagged_vqa and d["vqa_rad"]["by_kind"] == {"image_phash": flagged_vqa,
                                                                                 "image_sha256": flagged_vqa}
    assert d["vqa_rad"]["training_records"] == 2 and d["vqa_rad"]["records_in_kept_data"] == 0
    assert d["vqa_rad"]["checked"] == 1
    assert d["medqa"] == {"checked": 1, "evaluated": 6, "flagged": 1, "flagged_rate": pytest.approx(1 / 6),
                          "training_records": 1, "by_kind": {"text": 1}, "records_in_kept_data": 1,
                          "score_flagged": 0.0, "score_flagged_ci_low": 0.0, "score_flagged_ci_high": wilson(0, 1)[1],
                          "score_flagged_correct": 0,
                          "score_clean": 0.0, "score_clean_ci_low": 0.0, "score_clean_ci_high": wilson(0, 5)[1],
                          "score_clean_correct": 0}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "still in kept data" in md and "| medqa | bundled, 1273 items | 6 | 1 | 16.7 |" in md
    assert "not checked |" not in md


@pytest.fixture
def medqa_and_byo(data_root, tmp_path):
    """medqa (bundled) and `my_mcq`, a bring-your-own benchmark, both answered `A`; a decontamination
    report from a clean stage that saw medqa only (one medqa item flagged)."""
    byo = _write(tmp_path / "my_mcq.jsonl", [{"id": i, "question": f"Q{i}?", "options": ["x", "y"], "answer": "A"}
                                             for i in range(3)])
    specs = [REGISTRY["medqa"], byo_spec("my_mcq", str(byo), "mcq")]
    settings = RunSettings(modes=("generate",), limit=4, seed=5)
    probe = evaluate(PredictionsModel(_write(tmp_path / "none.jsonl", [])), specs, data_root, tmp_path / "w", settings)
    preds = _write(tmp_path / "preds.jsonl", [{"benchmark": b, "id": it.id, "output": "Answer: A"}
                                              for b, items in probe.selected.items() for it in items])
    res = evaluate(PredictionsModel(preds), specs, data_root, tmp_path / "r", settings)
    clean = tmp_path / "clean"
    clean.mkdir()
    _write(clean / "decontamination_report.jsonl", [
        {"benchmark": "medqa", "benchmark_item": res.selected["medqa"][0].id, "evidence": "...", "kind": "text",
         "record_id": "r1", "source": "medquad"}])
    return res, clean


def test_a_benchmark_the_clean_stage_did_not_check_is_not_reported_as_clean(medqa_and_byo, tmp_path):
    res, clean = medqa_and_byo
    _write_json(clean / "decontamination_summary.json",
                {"benchmarks_checked": {"medqa": {"items": 1273, "source": "bundled"}}, "hits": {}})
    metrics, summary = write_report(res, tmp_path / "out", decontam=load_decontam(clean / "decontamination_report.jsonl"))
    d = metrics["decontamination"]
    assert d["medqa"]["checked"] == 1 and d["medqa"]["flagged"] == 1
    assert d["my_mcq"] == {"checked": 0, "evaluated": 3}             # no flagged count, no clean/flagged scores
    assert summary["decontamination_checked"] == {"medqa": {"items": 1273, "source": "bundled"}}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| my_mcq | not checked | 3 | | | | | | | |" in md
    assert "Not checked: my_mcq: absent from `benchmarks_checked`" in md
    assert "| medqa | bundled, 1273 items | 4 | 1 |" in md


@pytest.mark.parametrize("summary", [None, {"hits": {"medqa": {"text": 1}}}], ids=["no summary", "no key"])
def test_an_older_clean_output_checks_nothing_it_cannot_vouch_for(medqa_and_byo, tmp_path, summary):
    """Without `benchmarks_checked` (a clean stage from before the key, or no summary at all) no
    benchmark is reported as checked, not even the one the report has a hit for; the report says why."""
    res, clean = medqa_and_byo
    if summary is not None:
        _write_json(clean / "decontamination_summary.json", summary)
    metrics, out = write_report(res, tmp_path / "out", decontam=load_decontam(clean / "decontamination_report.jsonl"))
    assert metrics["decontamination"] == {"medqa": {"checked": 0, "evaluated": 4},
                                          "my_mcq": {"checked": 0, "evaluated": 3}}
    assert out["decontamination_checked"] is None
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| medqa | not checked | 4 |" in md and "| my_mcq | not checked | 3 |" in md
    why = "wrote no decontamination summary" if summary is None else "has no `benchmarks_checked`"
    assert "Not checked: every benchmark, because the clean stage" in md and why in md
    assert "flagged" not in json.dumps(metrics["decontamination"])


def test_real_decontamination_report_is_readable(data_root, tmp_path):
    from tasks.common.config import project_root

    path = project_root() / "data" / "clean" / "decontamination_report.jsonl"
    if not path.exists():
        pytest.skip("the clean stage has not run in this checkout")
    dec = load_decontam(path)
    assert dec["available"] and any(b == "vqa_rad" for b, _ in dec["index"])


def test_byo_benchmark_in_its_category(tmp_path, data_root):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "label.png")
    path = _write(tmp_path / "ocr.jsonl", [
        {"id": 1, "question": "Read the label.", "images": ["label.png"], "answer": "Hb 13.5 g/dL"},
        {"id": 2, "question": "Read the label.", "images": ["../x.png"], "answer": "Hb 13.5"}])  # escapes its dir
    spec = byo_spec("labels", str(path), "ocr")
    preds = _write(tmp_path / "p.jsonl", [{"benchmark": "labels", "id": "1", "output": "Hb 13.5 g/dl"}])
    res = evaluate(PredictionsModel(preds), [spec], data_root, tmp_path / "w", RunSettings())
    metrics, _ = write_report(res, tmp_path / "out")
    entry = metrics["benchmarks"]["labels"]
    assert entry["read"] == 2 and entry["quarantined"] == 1 and entry["generate"]["n"] == 1
    assert entry["generate"]["score"] == pytest.approx(1 - 1 / 12)          # one character differs
    assert metrics["categories"]["ocr"]["generate"] == entry["generate"]["score"]


def test_progression_over_checkpoints(tmp_path):
    def metrics(score):
        return {"benchmarks": {"medqa": {"generate": {"score": score, "chance": 0.25},
                                         "loglik": {"acc_norm": score + 0.1, "chance": 0.25}}},
                "categories": {"medical_text": {"generate": score, "generate_chance": 0.25}}}
    for ckpt, score in (("sft", 0.5), ("base", 0.25), ("cpt", 0.3)):
        _write_json(tmp_path / "eval" / ckpt / "metrics.json", metrics(score))
    assert checkpoint_order(["zeta", "sft", "base", "alpha"]) == ["base", "sft", "alpha", "zeta"]
    res = write_progression(tmp_path / "eval", tmp_path / "prog")
    assert res["checkpoints"] == ["base", "cpt", "sft"]
    m = res["metrics"]
    assert m["cpt"]["medqa"]["generate"] == {"score": 0.3, "delta": pytest.approx(0.05)}
    assert m["sft"]["category:medical_text"]["generate"]["delta"] == pytest.approx(0.2)
    assert "delta" not in m["base"]["medqa"]["generate"]
    md = (tmp_path / "prog" / "progression.md").read_text()
    assert "| medqa | 25.0 | 25.0 | 30.0 (+5.0) | 50.0 (+20.0) |" in md
    assert (tmp_path / "prog" / "progression.png").stat().st_size > 0
    rows = json.loads((tmp_path / "prog" / "progression.json").read_text())
    assert {r["checkpoint"] for r in rows} == {"base", "cpt", "sft"}
    plot = json.loads((tmp_path / "prog" / "progression_plot.json").read_text())
    assert [(r["checkpoint"], r["medqa"], r["loglik_medqa"]) for r in plot] == [
        ("base", 0.25, 0.35), ("cpt", 0.3, 0.4), ("sft", 0.5, 0.6)]
    assert plot[0]["category_medical_text"] == 0.25


def _write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
