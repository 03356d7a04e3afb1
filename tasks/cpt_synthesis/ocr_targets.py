"""OCR training targets for rendered lab reports (paper §3.3.4): transcription and QA over the table.

    from tasks.cpt_synthesis.ocr_targets import OCRParams, synthesize_ocr
    out = synthesize_ocr(100, seed=1234, params=OCRParams(), put_image=store.put_bytes)

Per image, two samples (kind `ocr`) share the image:
- `ocr_transcription`: every line in reading order (title, patient lines, the table as a pipe table with
  its header, legend, footer); a cell the occluder covers (>= `occluded_threshold` of its box) is
  written `[?]`, never the hidden text;
- `ocr_qa`: a multi-turn conversation over the table -- the result, unit and reference range of an
  analyte, whether it is flagged, which results are abnormal -- plus questions about analytes that are
  NOT on the report, answered with the literal `NOT_FOUND` (so the model learns to say so instead of
  inventing a value). Only visible cells are asked about.

`meta.lines` keeps every line's box and quad (output-image pixels) with its text and row index, and each
QA turn names the row it is grounded on and that row's bbox: the zoom tool of mid-training crops these.
Images are JPEG-encoded (quality drawn per image, part of the augmentation) and handed to `put_image`
(bytes -> {path, sha256}, e.g. tasks.corpus.images.ImageStore.put_bytes).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

import numpy as np

from tasks.cpt_synthesis.ocr_panels import ALL_ANALYTES, make_report
from tasks.cpt_synthesis.ocr_render import (
    OCRRenderParams,
    RenderedReport,
    RenderError,
    render_report,
)
from tasks.cpt_synthesis.samples import Outcome, image_part, make_sample, text_part

NOT_FOUND = "NOT_FOUND"
UNREADABLE = "[?]"

PROMPTS = {
    "en": {"transcribe": "Transcribe all text in this lab report image, line by line; write the results table "
                         "as a table.",
           "value": "What is the result of {name}?", "ref": "What is the reference range for {name}?",
           "flag": "Is the {name} result flagged as abnormal?",
           "flag_yes": "Yes, {name} is flagged {flag} ({side} the reference range).",
           "flag_no": "No, {name} is not flagged; it is within the reference range.",
           "above": "above", "below": "below",
           "abnormal": "Which results on this report are flagged as abnormal?",
           "none_abnormal": "None of the results are flagged as abnormal.",
           "qa_intro": "Answer questions about this lab report. If the report does not contain the answer, "
                       f"reply {NOT_FOUND}."},
    "zh": {"transcribe": "请逐行转录这张检验报告单图片中的全部文字，检验结果部分请写成表格。",
           "value": "{name}的结果是多少？", "ref": "{name}的参考范围是多少？", "flag": "{name}的结果是否异常？",
           "flag_yes": "是，{name}标记为{flag}（{side}参考范围）。", "flag_no": "否，{name}没有异常标记，在参考范围内。",
           "above": "高于", "below": "低于",
           "abnormal": "这张报告单上哪些项目结果异常？", "none_abnormal": "没有标记异常的项目。",
           "qa_intro": f"请回答关于这张检验报告单的问题。如果报告单中没有答案，请回答{NOT_FOUND}。"},
}


@dataclasses.dataclass
class OCRParams:
    images: int = 200                 # rendered reports per stage run
    zh_share: float = 0.5             # share of Chinese reports
    abnormal_rate: float = 0.25       # share of results outside the reference range
    max_panels: int = 2
    questions: int = 6                # QA turns per image (row questions + NOT_FOUND questions)
    not_found_questions: int = 1
    occluded_threshold: float = 0.3   # a cell this much under the occluder is unreadable
    jpeg_quality_min: int = 75
    jpeg_quality_max: int = 95
    render: OCRRenderParams = dataclasses.field(default_factory=OCRRenderParams)

    def __post_init__(self):
        if not 0 <= self.zh_share <= 1 or not 0 <= self.abnormal_rate <= 1:
            raise ValueError("zh_share and abnormal_rate must be in [0, 1]")
        if self.not_found_questions > self.questions or self.questions < 1:
            raise ValueError("1 <= questions and not_found_questions <= questions are required")
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ValueError("1 <= jpeg_quality_min <= jpeg_quality_max <= 100 is required")


def _cells_by_col(line, threshold: float) -> dict[int, str]:
    return {c.col: (UNREADABLE if c.occluded >= threshold else c.text) for c in line.cells}


def transcription(r: RenderedReport, threshold: float) -> str:
    """The visible text in reading order; the table as a pipe table (module docstring)."""
    out: list[str] = []
    ncol = len(r.report.columns)
    for line in r.lines:
        cells = _cells_by_col(line, threshold)
        if line.kind in ("header", "row"):
            out.append("| " + " | ".join(cells.get(c, "") for c in range(ncol)) + " |")
            if line.kind == "header":
                out.append("|" + "---|" * ncol)
        else:
            out.append("   ".join(cells[c] for c in sorted(cells)))
    return "\n".join(out)


def _visible(line, cols: tuple[int, ...], threshold: float) -> bool:
    occ = {c.col: c.occluded for c in line.cells}
    return all(occ.get(c, 0.0) < threshold for c in cols)


def _with_unit(value: str, unit: str) -> str:
    return f"{value} {unit}".strip()


def _round_robin(cands: list[tuple], n: int, rng: np.random.Generator) -> list[tuple]:
    """n candidates taking the question kinds in turn (each kind shuffled), so no kind crowds out
    the others whatever the row count."""
    by_kind: dict[str, list[tuple]] = {}
    for c in cands:
        by_kind.setdefault(c[3], []).append(c)
    queues = [[v[int(j)] for j in rng.permutation(len(v))] for _, v in sorted(by_kind.items())]
    out: list[tuple] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def qa_turns(r: RenderedReport, rng: np.random.Generator, params: OCRParams) -> list[dict]:
    """[{question, answer, row, bbox, kind}] for one rendered report (NOT_FOUND turns have row None)."""
    lang = r.report.lang
    t = PROMPTS[lang]
    rows = {ln.row: ln for ln in r.lines if ln.kind == "row"}
    th = params.occluded_threshold
    cands = []
    for i, row in enumerate(r.report.rows):
        ln = rows[i]
        if _visible(ln, (0, 1, 3), th):
            cands.append((t["value"].format(name=row.name), _with_unit(row.value, row.unit), i, "value"))
        if _visible(ln, (0, 3, 4), th):
            cands.append((t["ref"].format(name=row.name), _with_unit(row.ref, row.unit), i, "reference_range"))
        if _visible(ln, (0, 2), th):
            if row.flag:
                side = t["above"] if row.status == "high" else t["below"]
                ans = t["flag_yes"].format(name=row.name, flag=row.flag, side=side)
            else:
                ans = t["flag_no"].format(name=row.name)
            cands.append((t["flag"].format(name=row.name), ans, i, "flag"))
    picked = _round_robin(cands, params.questions - params.not_found_questions, rng)
    turns = [{"question": q, "answer": a, "row": i, "bbox": rows[i].bbox, "kind": k} for q, a, i, k in picked]
    if all(_visible(rows[i], (0, 2), th) for i in rows) and rng.random() < 0.5:
        flagged = [row for row in r.report.rows if row.flag]
        sep = "; " if lang == "en" else "；"
        ans = sep.join(f"{row.name} {_with_unit(row.value, row.unit)} ({row.flag})" for row in flagged) \
            or t["none_abnormal"]
        turns.append({"question": t["abnormal"], "answer": ans, "row": None,
                      "bbox": None, "kind": "abnormal_list"})
    on_report = {row.analyte.code for row in r.report.rows}
    absent = [a for a in ALL_ANALYTES if a.code not in on_report]
    for j in rng.choice(len(absent), size=min(params.not_found_questions, len(absent)), replace=False):
        a = absent[int(j)]
        turns.append({"question": t["value"].format(name=a.en if lang == "en" else a.zh), "answer": NOT_FOUND,
                      "row": None, "bbox": None, "kind": "not_found"})
    order = rng.permutation(len(turns))
    return [turns[int(k)] for k in order]


def line_meta(r: RenderedReport) -> list[dict]:
    return [{"kind": ln.kind, "row": ln.row, "text": " ".join(c.text for c in ln.cells), "bbox": ln.bbox,
             "quad": ln.quad, "occluded": ln.occluded} for ln in r.lines]


def encode_jpeg(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling=0)
    return buf.getvalue()


def ocr_samples(r: RenderedReport, image: dict, source_id: str, rng: np.random.Generator,
                params: OCRParams) -> list[dict]:
    """The transcription sample and the QA sample for one rendered, stored report."""
    t = PROMPTS[r.report.lang]
    common = {"lang": r.report.lang, "panels": r.report.panels, "augment": r.augment,
              "width": r.image.width, "height": r.image.height}
    lines = line_meta(r)
    text = transcription(r, params.occluded_threshold)
    out = [make_sample("ocr", "ocr_transcription", [source_id], images=[image],
                       messages=[{"role": "user", "content": [image_part(), text_part(t["transcribe"])]},
                                 {"role": "assistant", "content": text}], lines=lines, **common)]
    turns = qa_turns(r, rng, params)
    messages: list[dict] = []
    for k, turn in enumerate(turns):
        q = f"{t['qa_intro']}\n{turn['question']}" if k == 0 else turn["question"]
        content = [image_part(), text_part(q)] if k == 0 else q
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": turn["answer"]}]
    qa_meta = [{"turn": k, "kind": tr["kind"], "row": tr["row"], "bbox": tr["bbox"]} for k, tr in enumerate(turns)]
    out.append(make_sample("ocr", "ocr_qa", [source_id], images=[image], messages=messages, qa=qa_meta,
                           lines=lines, **common))
    return out


def synthesize_ocr(n: int, seed: int, params: OCRParams, put_image: Callable[[bytes], dict],
                   start: int = 0) -> Outcome:
    """Render reports start..start+n-1 (each seeded by (seed, index), so any slice is reproducible on
    its own) and build their samples; a report that cannot be rendered is rejected with the reason."""
    out = Outcome()
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        lang = "zh" if rng.random() < params.zh_share else "en"
        report = make_report(rng, lang, abnormal_rate=params.abnormal_rate, max_panels=params.max_panels)
        source_id = f"ocr-synth:{seed}:{i}"
        try:
            r = render_report(report, rng, params.render)
        except RenderError as e:
            out.reject(e.reason, e.detail, {"source_id": source_id, "lang": lang})
            continue
        quality = int(rng.integers(params.jpeg_quality_min, params.jpeg_quality_max + 1))
        r.augment["jpeg_quality"] = quality
        image = put_image(encode_jpeg(r.image, quality))
        out.kept.extend(ocr_samples(r, image, source_id, rng, params))
    return out
