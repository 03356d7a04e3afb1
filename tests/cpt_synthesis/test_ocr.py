"""OCR synthesis: boxes follow the pixels through the warp, 10% rotation, Chinese with the packaged CJK
font (and a clear rejection without one), transcription/QA targets incl. NOT_FOUND and occlusion,
determinism per seed."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tasks.corpus.images import ImageStore
from tasks.cpt_synthesis.ocr_panels import PANELS, draw_value, make_report
from tasks.cpt_synthesis.ocr_render import (
    OCRRenderParams,
    box_of,
    default_cjk_fonts,
    default_latin_fonts,
    font_missing_glyphs,
    geometric,
    render_report,
    warp,
)
from tasks.cpt_synthesis.ocr_targets import (
    NOT_FOUND,
    UNREADABLE,
    OCRParams,
    qa_turns,
    synthesize_ocr,
    transcription,
)
from tasks.cpt_synthesis.samples import validate_sample

FLAT = OCRRenderParams(perspective_p=0, rotate_p=0, blur_p=0, shadow_p=0, glare_p=0, occlusion_p=0)


def test_boxes_follow_pixels_through_perspective_and_rotation():
    params = OCRRenderParams(perspective_p=1.0, rotate_p=1.0, right_angle_share=0.0, max_warp=0.1)
    img = Image.new("RGB", (400, 300), (255, 255, 255))
    rect = (120, 80, 220, 140)
    ImageDraw.Draw(img).rectangle(rect, fill=(0, 0, 0))
    for seed in range(4):
        hm, size, rec = geometric(img.size, np.random.default_rng(seed), params)
        assert rec["perspective"] and rec["rotation_deg"] != 0
        out = np.asarray(warp(img, hm, size, (255, 255, 255)).convert("L"))
        ys, xs = np.nonzero(out < 128)
        _, bbox = box_of(hm, (rect[0], rect[1], rect[2] + 1, rect[3] + 1), size)
        assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], bbox, atol=2.0), (seed, bbox)


def test_quarter_turn_keeps_the_whole_page():
    params = OCRRenderParams(perspective_p=0, rotate_p=1.0, right_angle_share=1.0)
    hm, size, rec = geometric((400, 300), np.random.default_rng(0), params)
    assert rec["rotation_deg"] in (90.0, 180.0, 270.0)
    assert sorted(size) == [300, 400] or size == (400, 300)
    _, bbox = box_of(hm, (0, 0, 400, 300), size)
    assert bbox == [0.0, 0.0, float(size[0]), float(size[1])]


def test_ten_percent_of_images_are_rotated():
    p = OCRRenderParams()
    rotated = [geometric((100, 100), np.random.default_rng([5, i]), p)[2]["rotation_deg"] != 0 for i in range(1000)]
    assert 0.07 < np.mean(rotated) < 0.13


def test_values_and_flags_agree_with_reference_ranges():
    rng = np.random.default_rng(0)
    for _, _, analytes in PANELS.values():
        for a in analytes:
            for _ in range(30):
                x, status = draw_value(a, rng, 0.5)
                assert status == ("high" if x > a.high else "low" if x < a.low else "normal"), (a.code, x)


def test_flat_render_rows_boxes_cover_their_text():
    report = make_report(np.random.default_rng(1), "en")
    r = render_report(report, np.random.default_rng(1), FLAT)
    arr = np.asarray(r.image.convert("L"))
    rows = [ln for ln in r.lines if ln.kind == "row"]
    assert [ln.row for ln in rows] == list(range(len(report.rows)))
    for ln in rows:
        x0, y0, x1, y1 = (int(v) for v in ln.bbox)
        assert 0 <= x0 < x1 <= r.image.width and 0 <= y0 < y1 <= r.image.height
        assert (arr[y0:y1, x0:x1] < 100).sum() > 20          # there is ink inside the row box
    # row boxes do not overlap their neighbours: a zoom on one row shows that row
    for a, b in itertools.pairwise(rows):
        assert a.bbox[3] <= b.bbox[1] + 1


@pytest.mark.skipif(not default_cjk_fonts(), reason="pylopdf-fonts-zh-cn not installed")
def test_chinese_report_renders_with_the_packaged_font():
    report = make_report(np.random.default_rng(2), "zh")
    font = default_cjk_fonts()[0]
    assert font_missing_glyphs(font, "".join(t for row in report.rows for t in row.cells()) + "↑↓µγ") == ""
    r = render_report(report, np.random.default_rng(2), FLAT)
    assert r.font.endswith(".otf") and any("血" in c.text or "钠" in c.text or "胆" in c.text
                                            for ln in r.lines for c in ln.cells)


def test_chinese_without_a_cjk_font_is_rejected_with_a_reason(tmp_path):
    store = ImageStore(tmp_path / "img", "data/cpt_data/images", 10**8)
    no_font = OCRParams(zh_share=1.0, render=OCRRenderParams(cjk_fonts=[str(tmp_path / "missing.otf")]))
    out = synthesize_ocr(2, 0, no_font, store.put_bytes)
    assert out.kept == [] and out.reasons() == {"no_cjk_font": 2}
    latin_as_cjk = OCRParams(zh_share=1.0, render=OCRRenderParams(cjk_fonts=default_latin_fonts()[:1]))
    out = synthesize_ocr(1, 0, latin_as_cjk, store.put_bytes)
    assert out.reasons() == {"font_missing_glyphs": 1} and "lacks" in out.rejected[0]["detail"]


def test_targets_transcription_qa_and_not_found(tmp_path):
    store = ImageStore(tmp_path / "img", "data/cpt_data/images", 10**8)
    out = synthesize_ocr(4, 11, OCRParams(questions=5, not_found_questions=2), store.put_bytes)
    assert len(out.kept) == 8 and out.rejected == []
    for s in out.kept:
        validate_sample(s)
        assert s["kind"] == "ocr" and (tmp_path / "img" / s["images"][0]["path"].split("images/")[1]).exists()
    trans = [s for s in out.kept if s["task"] == "ocr_transcription"]
    qa = [s for s in out.kept if s["task"] == "ocr_qa"]
    for t, q in zip(trans, qa):
        assert t["images"] == q["images"]
        text = t["messages"][1]["content"]
        rows = [ln for ln in t["meta"]["lines"] if ln["kind"] == "row"]
        assert text.count("\n| ") == len(rows) + 1                      # header + one line per row
        kinds = [m["kind"] for m in q["meta"]["qa"]]
        assert kinds.count("not_found") == 2
        answers = [m["content"] for m in q["messages"][1::2]]
        assert answers.count(NOT_FOUND) == 2
        for turn in q["meta"]["qa"]:
            if turn["row"] is not None:
                assert turn["bbox"] == rows[turn["row"]]["bbox"]
                w, h = q["meta"]["width"], q["meta"]["height"]
                assert 0 <= turn["bbox"][0] < turn["bbox"][2] <= w and 0 <= turn["bbox"][1] < turn["bbox"][3] <= h


def test_occluded_cells_are_unreadable_and_never_asked(tmp_path):
    params = OCRParams(questions=40, not_found_questions=1,
                       render=OCRRenderParams(occlusion_p=1.0, occlusion_max_frac=0.35, perspective_p=0, rotate_p=0))
    hidden = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        r = render_report(make_report(rng, "en"), rng, params.render)
        text = transcription(r, params.occluded_threshold)
        for turn in qa_turns(r, rng, params):
            if turn["row"] is not None:
                ln = next(x for x in r.lines if x.row == turn["row"])
                needs = {"value": (0, 1, 3), "reference_range": (0, 3, 4), "flag": (0, 2)}[turn["kind"]]
                assert all(c.occluded < params.occluded_threshold for c in ln.cells if c.col in needs)
        hidden += text.count(UNREADABLE)
        for ln in r.lines:
            for c in ln.cells:
                if c.occluded >= params.occluded_threshold:
                    assert UNREADABLE in text
    assert hidden > 0


def test_same_seed_same_images_and_samples(tmp_path):
    def run(d):
        store = ImageStore(d, "data/cpt_data/images", 10**8)
        return synthesize_ocr(3, 5, OCRParams(), store.put_bytes, start=10)
    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert [s["id"] for s in a.kept] == [s["id"] for s in b.kept]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert files and all(hashlib.sha256((tmp_path / "a" / f).read_bytes()).hexdigest() ==
                         hashlib.sha256((tmp_path / "b" / f).read_bytes()).hexdigest() for f in files)
    assert a.kept[0]["source_ids"] == ["ocr-synth:5:10"]
    assert Path(files[0]).suffix == ".jpg"
