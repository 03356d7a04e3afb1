"""The progression over checkpoints with intervals: each score's interval, the interval of each change
(Newcombe for accuracies, the normal approximation otherwise), significance marks; and the
`eval_progression` stage's imports, which its DVC deps list."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval.intervals import diff_normal, newcombe, stratified_bootstrap, wilson
from eval.progression import write_progression
from eval.scoring import aggregate

ROOT = Path(__file__).resolve().parents[2]


def _closed(k: int, n: int) -> dict:
    """A generate-mode aggregate of n multiple-choice items, k of them correct (as report.py writes it)."""
    return aggregate([{"score": float(i < k), "chance": 0.25, "failure": None, "metrics": {"accuracy": float(i < k)},
                       "kind": "choice"} for i in range(n)])


def _graded(values: list[float]) -> dict:
    """A generate-mode aggregate of long-form items scored in [0, 1] (a bootstrap interval)."""
    return aggregate([{"score": v, "chance": 0.0, "failure": None, "metrics": {}, "kind": "ocr"} for v in values])


def _metrics(big: tuple[int, int], small: tuple[int, int], graded: list[float]) -> dict:
    b = {"big": {"generate": _closed(*big)}, "small": {"generate": _closed(*small)},
         "reports": {"generate": _graded(graded)}}
    items = [[float(i < big[0]) for i in range(big[1])], [float(i < small[0]) for i in range(small[1])]]
    lo, hi = stratified_bootstrap(items)
    cat = {"benchmarks": 2, "generate": (b["big"]["generate"]["score"] + b["small"]["generate"]["score"]) / 2,
           "generate_ci_low": lo, "generate_ci_high": hi, "generate_chance": 0.25}
    return {"benchmarks": b, "categories": {"medical_text": cat}}


@pytest.fixture
def progression(tmp_path):
    """base -> sft: `big` moves 40 points at n=200 (60 -> 140 correct), `small` 5 points at n=20
    (10 -> 11), `reports` (graded) falls from ~0.8 to ~0.3 at n=40."""
    for ckpt, big, small, graded in (("base", (60, 200), (10, 20), [0.7, 0.9] * 20),
                                     ("sft", (140, 200), (11, 20), [0.2, 0.4] * 20)):
        path = tmp_path / "eval" / ckpt / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_metrics(big, small, graded)))
    res = write_progression(tmp_path / "eval", tmp_path / "prog")
    return res["metrics"], tmp_path / "prog"


def test_changes_are_called_significant_only_when_their_interval_excludes_zero(progression):
    m, _ = progression
    big, small, reports = (m["sft"][b]["generate"] for b in ("big", "small", "reports"))
    d, lo, hi = newcombe(140, 200, 60, 200)
    # (computed from the stored, 6-decimal Wilson limits: equal to 1e-6)
    assert big["delta"] == pytest.approx(0.4) and (big["delta_ci_low"], big["delta_ci_high"]) == pytest.approx((lo, hi), abs=2e-6)
    assert big["delta_significant"] == 1
    d, lo, hi = newcombe(11, 20, 10, 20)
    assert small["delta"] == pytest.approx(0.05) and small["delta_significant"] == 0
    assert (small["delta_ci_low"], small["delta_ci_high"]) == pytest.approx((lo, hi), abs=2e-6)
    assert (small["score_ci_low"], small["score_ci_high"]) == tuple(round(x, 6) for x in wilson(11, 20))
    # a graded score: the normal approximation from the two bootstrap intervals
    base = m["base"]["reports"]["generate"]
    lo, hi = diff_normal(reports["score"], reports["score_ci_low"], reports["score_ci_high"],
                         base["score"], base["score_ci_low"], base["score_ci_high"])
    assert (reports["delta_ci_low"], reports["delta_ci_high"]) == pytest.approx((lo, hi), abs=2e-6)
    assert reports["delta"] == pytest.approx(-0.5) and reports["delta_significant"] == 1
    # the first checkpoint has a score and its interval, no change
    assert set(m["base"]["big"]["generate"]) == {"score", "score_ci_low", "score_ci_high"}
    cat = m["sft"]["category:medical_text"]["generate"]
    assert {"delta", "delta_ci_low", "delta_ci_high", "delta_significant"} <= set(cat)


def test_markdown_csv_and_json_show_intervals_and_marks(progression):
    _, out = progression
    md = (out / "progression.md").read_text()
    assert "▲ significant rise, ▼ significant fall, ~ not significant (the change's interval contains 0)." in md
    assert "| big | 25.0 | 30.0 [24.1, 36.7] | 70.0 [63.3, 75.9] (+40.0 [30.6, 48.4] ▲) |" in md
    assert "| small | 25.0 | 50.0 [29.9, 70.1] | 55.0 [34.2, 74.2] (+5.0 [-23.9, 32.8] ~) |" in md
    assert "| reports | 0.0 | 80.0 [77.0, 83.0] | 30.0 [27.0, 33.0] (-50.0 [-54.2, -45.8] ▼) |" in md
    rows = list(csv.DictReader((out / "progression.csv").open()))
    sft_big = next(r for r in rows if r["checkpoint"] == "sft" and r["benchmark"] == "big")
    assert sft_big["delta_significant"] == "1" and sft_big["interval"] == "wilson"
    base_big = next(r for r in rows if r["checkpoint"] == "base" and r["benchmark"] == "big")
    assert base_big["delta"] == "" and base_big["score_ci_low"] != ""
    long = json.loads((out / "progression.json").read_text())
    assert {r["interval"] for r in long if r["benchmark"] == "reports" and r["mode"] == "generate"} == {"bootstrap"}
    assert (out / "progression.png").stat().st_size > 0


def test_the_progression_stage_imports_only_what_its_deps_list():
    """dvc.yaml's eval_progression deps list eval/__init__.py, eval/progression.py, eval/intervals.py and
    tasks/common: importing the stage must load no other module of the harness."""
    code = ("import json, sys, tasks.eval_progression; "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'eval' or m.startswith('eval.'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=120)
    assert json.loads(proc.stdout) == ["eval", "eval.intervals", "eval.progression"]


def _ppl(ppl: float, lo: float, hi: float, n: int = 20) -> dict:
    return {"ppl": ppl, "ppl_ci_low": lo, "ppl_ci_high": hi, "samples": n, "tokens": 40 * n, "nll": 0.0}


def test_heldout_perplexity_rows_are_tested_on_the_log_scale(tmp_path):
    """cpt lowers corpus-text perplexity clearly (40 -> 20, tight intervals) and OCR within noise."""
    held = {"base": {"overall": _ppl(40.0, 36.0, 44.0), "ocr": _ppl(9.0, 6.0, 13.0)},
            "cpt": {"overall": _ppl(20.0, 18.5, 21.6), "ocr": _ppl(8.0, 5.5, 11.5)}}
    for ckpt in ("base", "cpt"):
        path = tmp_path / "eval" / ckpt / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({**_metrics((60, 200), (10, 20), [0.5] * 10), "heldout_perplexity": held[ckpt]}))
    res = write_progression(tmp_path / "eval", tmp_path / "prog")
    overall = res["metrics"]["cpt"]["heldout:overall"]["perplexity"]
    ocr = res["metrics"]["cpt"]["heldout:ocr"]["perplexity"]
    assert overall["delta"] == -20.0 and overall["delta_significant"] == 1
    assert overall["delta_ci_low"] < -20.0 < overall["delta_ci_high"] < 0      # the ratio's interval, in ppl
    assert ocr["delta_significant"] == 0 and ocr["delta_ci_low"] < 0 < ocr["delta_ci_high"]
    md = (tmp_path / "prog" / "progression.md").read_text()
    assert "held-out medical perplexity (lower is better)" in md
    assert "| overall | 40.00 [36.00, 44.00] | 20.00 [18.50, 21.60] (-20.00 [" in md and "▼)" in md
    plot = json.loads((tmp_path / "prog" / "progression_plot.json").read_text())
    assert plot[1]["ppl_overall"] == 20.0 and plot[0]["ppl_ocr"] == 9.0
