"""Think-with-image trajectories (paper §4.1.2): read a lab-report value by really rotating and zooming.

    from tasks.mid_synthesis.agentic_image import AgenticImageParams, agentic_image, load_ocr_samples
    ocr_samples = load_ocr_samples("data/cpt_data/samples", limit=40)
    tools = ImageTools(".", store_root=tmp / "images", params=ImageToolParams(image_dir="data/mid_data/images"))
    out = agentic_image(ocr_samples, tools, AgenticImageParams(), probe=probe, expert=None)
    out.kept        # family agentic_image, phase 3, tools=[ZOOM_SCHEMA, ROTATE_SCHEMA], images=[report, (upright,) crop]
    out.by_gate()   # {"input": ..., "perception": ..., "tool_effectiveness": ...}

Input: the rendered lab-report samples of the CPT data (task `ocr_transcription`: one image; meta.lines with
each line's quad and axis-aligned bbox in output-image pixels, i.e. after the renderer's perspective warp and
rotation; meta.augment.rotation_deg; the assistant turn's pipe table gives each row's cells). Per image,
`rows_per_image` fully visible rows with a unique test name are drawn (seeded by the sample id), each one
question "What is the result of <test>?" (the CPT OCR prompts, same language as the report).

Trajectory (Analyze -> Reason -> tool -> Conclude):
  user [report image, question]
  -> (rotated report) assistant: Analyze, ROTATE(imgidx 0, angle = -rotation_deg) -> tool [upright image]
  -> assistant: (Analyze,) Reason: the row's box <bbox>x0 y0 x1 y1</bbox> in the current image, ZOOM(that
     box padded, scale) -> tool [the enlarged crop]
  -> assistant: Conclude with the value read from the row -> content "<value> <unit>".
The row's box in the upright image comes from carrying its quad through ROTATE's own matrix
(image_tools.rotate_points), never estimated. A perspective-warped row stays slanted after that: when its
axis-aligned box is more than `max_skew` times the row's own height, no axis-aligned ZOOM can isolate it, and
the candidate is rejected (input / row_box_skewed). The Analyze/Reason/Conclude sentences are templates
filled with the annotation (title, row index, box, cell values); the tool calls and their outputs are real.

Two-stage filter (paper: fine-grained perception filtering, then tool-effectiveness filtering), counted:
- perception: local experts must agree that the crop shows the asked row and only it: geometric (the row's
  quad lies inside the crop; no other line has more than `neighbor_max` of its area inside), pixel (the ink
  projection profile of the crop has exactly one text-line band, covering at least `min_line_cover` of the
  row's height, and no ink band cut by the crop's top or bottom edge: a sliver of a neighbouring line), and, when an `Expert` (experts.py) is given, its transcription of the crop shares at least
  `expert_min_overlap` of the row's tokens.
- tool_effectiveness: with a `probe` (`correct(list[ChoiceQuestion]) -> list[bool]`, e.g. experts.ChoiceProbe
  on the current checkpoint), the same multiple-choice question (the true value + other rows' values, seeded)
  is asked with the full report and with the zoomed crop; only "wrong with the full image, right with the crop"
  is kept. Without a probe the gate is not run and meta.tool_effectiveness says "unchecked".
Tool outputs are written when the tool runs, so rejected candidates' crops stay in the store; each rejection
item lists them. The expert and the probe get the images' current files (ImageTools.local_path), since the
store root may be a temporary directory until the stage renames it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from tasks.mid_synthesis.experts import ChoiceQuestion, Expert, Query, stable_seed
from tasks.mid_synthesis.image_tools import ROTATE_SCHEMA, ZOOM_SCHEMA, ImageTools, ToolError, rotate_points
from tasks.mid_synthesis.samples import GateOutcome, SampleError, image_part, mid_sample, text_part, tool_call

FAMILY = "agentic_image"
PHASE = 3                              # perceptual-logic alignment
UNREADABLE = "[?]"                     # the CPT transcription's mark for an occluded cell
VALUE_PROMPT = {"en": "What is the result of {name}?", "zh": "{name}的结果是多少？"}   # = CPT ocr_qa's
TRANSCRIBE = Query(system="You transcribe text from images exactly.", user="Transcribe the text in this image.")
TEXT = {
    "en": {
        "analyze": "This is a photographed lab report ({title}); its results table lists {n} tests with result, "
                   "flag, unit and reference range.",
        "rotate": " The text runs about {deg:.0f} degrees off horizontal, so the report is rotated; I will rotate "
                  "image 0 by {angle:g} degrees (counter-clockwise positive) to read it upright.",
        "reason": "The question asks for the result of {name}. It is row {k} of {n} in the results table; in image "
                  "{idx} that row lies in <bbox>{x0} {y0} {x1} {y1}</bbox>. The characters are small at this "
                  "resolution, so I will zoom into that region, slightly enlarged, at scale {scale:g}.",
        "conclude": "The zoomed row reads: \"{row}\". The result column shows {value}{unit}{flag}. So the result of "
                    "{name} is {answer}.",
        "flag": ", flagged {flag} (reference range {ref})",
    },
    "zh": {
        "analyze": "这是一张拍摄的检验报告单（{title}），结果表列出{n}个项目，包括结果、标记、单位和参考范围。",
        "rotate": "报告单上的文字偏离水平约{deg:.0f}度，图像是旋转的；我先把图像0旋转{angle:g}度（逆时针为正）使其摆正。",
        "reason": "问题问的是{name}的结果。它是结果表中的第{k}行（共{n}行），在图像{idx}中位于<bbox>{x0} {y0} {x1} {y1}</bbox>。"
                  "这个分辨率下字符较小，我将把该区域稍作扩大后按{scale:g}倍放大查看。",
        "conclude": "放大后的这一行是：“{row}”。结果一栏为{value}{unit}{flag}。所以{name}的结果是{answer}。",
        "flag": "，标记为{flag}（参考范围{ref}）",
    },
}


@dataclasses.dataclass
class AgenticImageParams:
    rows_per_image: int = 2           # questions drawn per report
    seed: int = 1234
    scale: float = 2.0                # ZOOM factor (the paper's example uses 2)
    pad_frac: float = 0.05            # crop margin above/below the row, share of the row height (the row box
                                      # already has the renderer's glyph padding; more pulls neighbours in)
    pad_px: int = 3                   # and a fixed margin on every side
    rotate_min_deg: float = 1.0       # smaller tilts are read as they are
    max_skew: float = 1.5             # row bbox height / row height above this: ZOOM cannot isolate the row
    occluded_max: float = 0.0         # rows with more of their box under the occluder are not asked
    neighbor_max: float = 0.15        # geometric expert: share of another line allowed inside the crop
    min_line_cover: float = 0.4       # pixel expert: the text band covers this share of the row height
    min_band_frac: float = 0.3        # pixel expert: bands shorter than this share of the row height are rules/specks
    ink_ratio: float = 0.7            # pixel expert: ink is darker than this share of its column's paper level
    expert_min_overlap: float = 0.6   # token recall of the row text in the expert's transcription
    n_options: int = 4                # choice options for the probe (true value + other rows' values)
    expert_max_tokens: int = 128

    def __post_init__(self):
        if self.rows_per_image < 1 or not 1.0 <= self.scale <= 4.0 or self.n_options < 2:
            raise ValueError("rows_per_image >= 1, 1 <= scale <= 4 and n_options >= 2 are required")


class Probe(Protocol):
    def correct(self, questions: list[ChoiceQuestion]) -> list[bool]: ...


# ----------------------------------------------------------------------------- the report
def load_ocr_samples(samples_dir: str | Path, limit: int = 0) -> list[dict]:
    """The `ocr_transcription` samples of the CPT data (part-*.jsonl in name order, lines in order), the first
    `limit` (0 = all). Lines are screened by substring before parsing: the OCR samples are ~1% of the file."""
    out: list[dict] = []
    for path in sorted(Path(samples_dir).glob("part-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if "ocr_transcription" not in line:
                    continue
                rec = json.loads(line)
                if rec.get("task") == "ocr_transcription":
                    out.append(rec)
                    if limit and len(out) >= limit:
                        return out
    return out


def table_rows(sample: dict) -> list[list[str]]:
    """The results table of a transcription sample: one list of cells per row, header and rule excluded."""
    text = sample["messages"][-1]["content"]
    rows = [ln.strip() for ln in str(text).splitlines() if ln.strip().startswith("|") and ln.strip().endswith("|")]
    cells = [[c.strip() for c in r[1:-1].split("|")] for r in rows]
    return [c for c in cells[1:] if not all(set(x) <= set("-") for x in c)]


def quad_height(q: np.ndarray) -> float:
    """The row's own height: the mean length of the quad's left and right sides."""
    return float((np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2)


def inside_share(quad: np.ndarray, box: Sequence[float], n: int = 9) -> float:
    """Share of the quad's area inside an axis-aligned box (bilinear grid of n x n points)."""
    u = (np.arange(n) + 0.5) / n
    uu, vv = np.meshgrid(u, u)
    top = quad[0] + (quad[1] - quad[0]) * uu[..., None]
    bottom = quad[3] + (quad[2] - quad[3]) * uu[..., None]
    pts = top + (bottom - top) * vv[..., None]
    x, y = pts[..., 0], pts[..., 1]
    return float(np.mean((x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])))


def ink_bands(img: Image.Image, ink_ratio: float) -> tuple[list[tuple[int, int]], int]:
    """((y0, y1) runs of scanlines holding text ink, top to bottom; image height).

    A pixel is ink when it is darker than `ink_ratio` x its column's paper level (the column's 90th-percentile
    gray: text covers far less than a tenth of a column). WHY per column: the renderer's shadows and glare
    are smooth gradients across the page, so one global threshold splits the paper itself into two classes.
    A scanline holds text ink when its ink share reaches 20% of the 90th-percentile scanline's (a
    percentile, not the maximum: a table rule is a scanline of solid ink) and is not itself a rule (>= 60%
    ink: text never fills a scanline); gaps of 3 px or less are closed."""
    g = np.asarray(img.convert("L"), dtype=np.float64)
    paper = np.maximum(np.percentile(g, 90, axis=0), 1.0)
    ink = g < ink_ratio * paper[None, :]
    frac = ink.mean(axis=1)
    if not frac.any():
        return [], g.shape[0]
    on = (frac >= max(0.2 * float(np.percentile(frac, 90)), 0.002)) & (frac < 0.6)
    bands: list[list[int]] = []
    for y in np.flatnonzero(on):
        if bands and y - bands[-1][1] <= 3:
            bands[-1][1] = int(y) + 1
        else:
            bands.append([int(y), int(y) + 1])
    return [(a, b) for a, b in bands], g.shape[0]


def pixel_vote(img: Image.Image, row_height_px: float, params: AgenticImageParams) -> dict:
    """The pixel expert: the crop shows exactly one text line, and no other line cut by its top or bottom edge
    (the crop is padded beyond the row's box, so the row's own ink never reaches an edge)."""
    bands, height = ink_bands(img, params.ink_ratio)
    cut = [b for b in bands if b[0] == 0 or b[1] >= height]
    lines = [b for b in bands if b not in cut and b[1] - b[0] >= params.min_band_frac * row_height_px]
    ok = not cut and len(lines) == 1 and lines[0][1] - lines[0][0] >= params.min_line_cover * row_height_px
    reason = None if ok else "line_cut_at_edge" if cut else "no_text_line" if not lines else \
        "not_one_text_line" if len(lines) > 1 else "text_line_too_thin"
    return {"bands": [list(b) for b in bands], "row_height_px": round(row_height_px, 1), "ok": ok, "reason": reason}


def _tokens(text: str) -> list[str]:
    text = text.split("</think>")[-1]
    return re.findall(r"[^\s|:;,]+", text.casefold())


def token_recall(reference: str, reply: str) -> float:
    ref, got = _tokens(reference), set(_tokens(reply))
    return sum(t in got for t in ref) / max(len(ref), 1)


# ----------------------------------------------------------------------------- candidates
@dataclasses.dataclass
class Candidate:
    sample: dict
    row: int
    cells: list[str]
    line: dict
    lang: str
    angle: float = 0.0                 # ROTATE's angle (0 = no rotation)
    images: list[dict] = dataclasses.field(default_factory=list)   # [original, (upright,) crop]
    row_box: list[float] | None = None  # in the image ZOOM runs on
    crop_box: list[int] | None = None
    votes: dict = dataclasses.field(default_factory=dict)
    question: str = ""

    @property
    def item(self) -> dict:
        return {"id": self.sample.get("id"), "row": self.row, "question": self.question,
                "images": [i["path"] for i in self.images[1:]]}


def _candidates(sample: dict, params: AgenticImageParams) -> list[Candidate]:
    """The questions of one report; ValueError(reason: detail) when it has none."""
    if sample.get("task") != "ocr_transcription" or len(sample.get("images") or []) != 1:
        raise ValueError("not_ocr_transcription: needs task ocr_transcription and one image")
    meta = sample.get("meta") or {}
    lines = {ln["row"]: ln for ln in meta.get("lines", []) if ln.get("kind") == "row"}
    rows = table_rows(sample)
    if not rows or len(rows) != len(lines):
        raise ValueError(f"no_table: {len(rows)} table rows for {len(lines)} row lines")
    names = [r[0] for r in rows]
    eligible = []
    for i, cells in enumerate(rows):
        ln = lines.get(i)
        if ln is None or len(cells) < 5 or UNREADABLE in cells or not cells[1]:
            continue
        if " ".join(c for c in cells if c) != ln["text"]:
            raise ValueError(f"row_text_mismatch: row {i}: {cells} vs {ln['text']!r}")
        if ln.get("occluded", 0.0) <= params.occluded_max and names.count(cells[0]) == 1:
            eligible.append(i)
    if not eligible:
        raise ValueError("no_eligible_row: every row is occluded or ambiguous")
    rng = np.random.default_rng(stable_seed(params.seed, sample["id"]))
    picked = sorted(int(i) for i in rng.choice(eligible, size=min(params.rows_per_image, len(eligible)),
                                               replace=False))
    lang = meta.get("lang", "en") if meta.get("lang") in TEXT else "en"
    return [Candidate(sample, i, rows[i], lines[i], lang,
                      question=VALUE_PROMPT[lang].format(name=rows[i][0])) for i in picked]


def _run_tools(c: Candidate, tools: ImageTools, params: AgenticImageParams) -> None:
    """ROTATE (if tilted) and ZOOM for real; the geometric and pixel votes. Raises ValueError(reason: ...)."""
    meta = c.sample["meta"]
    original = c.sample["images"][0]
    c.images = [{"path": original["path"], "sha256": original["sha256"]}]
    img = tools.open(original["path"])
    deg = float((meta.get("augment") or {}).get("rotation_deg") or 0.0)
    quads = {id(ln): np.asarray(ln["quad"], float) for ln in meta["lines"]}
    if abs(deg) >= params.rotate_min_deg:
        c.angle = round((-deg + 180.0) % 360.0 - 180.0, 3)
        up = tools.rotate(img, c.angle)
        quads = {k: rotate_points(q, c.angle, img.size) for k, q in quads.items()}
        img = up.image
        c.images.append(up.ref)
    q = quads[id(c.line)]
    h = quad_height(q)
    box = [float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max())]
    c.row_box = [round(v, 1) for v in box]
    skew = (box[3] - box[1]) / max(h, 1e-6)
    c.votes["skew"] = round(skew, 3)
    if skew > params.max_skew:
        raise ValueError(f"row_box_skewed: row box {skew:.2f}x the row height (perspective), ZOOM cannot isolate it")
    pad_y, pad_x = params.pad_frac * h + params.pad_px, params.pad_px
    try:
        crop = tools.zoom(img, [box[0] - pad_x, box[1] - pad_y, box[2] + pad_x, box[3] + pad_y], params.scale)
    except ToolError as e:
        raise ValueError(f"tool_{e.reason}: {e.detail}") from None
    c.crop_box = crop.box
    c.images.append(crop.ref)
    own = inside_share(q, c.crop_box)
    others = max((inside_share(v, c.crop_box) for k, v in quads.items() if k != id(c.line)), default=0.0)
    c.votes["geometric"] = {"row_inside": round(own, 3), "max_other_inside": round(others, 3),
                            "ok": own >= 0.99 and others <= params.neighbor_max}
    c.votes["pixel"] = pixel_vote(crop.image, h * params.scale, params)


def _choice(c: Candidate, rows: list[list[str]], n_options: int, seed: int) -> tuple[tuple[str, ...], int]:
    value = c.cells[1]
    others = sorted({r[1] for r in rows if r[1] and r[1] != value and r[1] != UNREADABLE})
    if len(others) < n_options - 1:
        raise ValueError(f"too_few_options: {len(others)} other values for {n_options} options")
    rng = np.random.default_rng(stable_seed(seed, c.sample["id"], c.row, "options"))
    opts = [value] + [others[int(i)] for i in rng.choice(len(others), size=n_options - 1, replace=False)]
    order = [int(i) for i in rng.permutation(n_options)]
    return tuple(opts[i] for i in order), order.index(0)


def _messages(c: Candidate, params: AgenticImageParams) -> tuple[list[dict], str]:
    t = TEXT[c.lang]
    lines = c.sample["meta"]["lines"]
    title = "; ".join(ln["text"] for ln in lines if ln.get("kind") == "title")
    n = sum(ln.get("kind") == "row" for ln in lines)
    name, value, flag, unit, ref = (c.cells + [""] * 5)[:5]
    answer = f"{value} {unit}".strip()
    msgs: list[dict] = [{"role": "user", "content": [image_part(), text_part(c.question)]}]
    analyze = t["analyze"].format(title=title, n=n)
    if c.angle:
        msgs.append({"role": "assistant", "content": "", "reasoning_content": analyze + t["rotate"].format(
            deg=abs(c.angle), angle=c.angle), "tool_calls": [tool_call("ROTATE", {"imgidx": 0, "angle": c.angle})]})
        msgs.append({"role": "tool", "name": "ROTATE", "content": [image_part(), text_part(
            f"Image 1: image 0 rotated by {c.angle:g} degrees.")]})
        analyze = ""
    idx = len(c.images) - 2
    x0, y0, x1, y1 = (round(v) for v in c.row_box)
    reason = t["reason"].format(name=name, k=c.row + 1, n=n, idx=idx, x0=x0, y0=y0, x1=x1, y1=y1, scale=params.scale)
    msgs.append({"role": "assistant", "content": "", "reasoning_content": (analyze + " " + reason).strip(),
                 "tool_calls": [tool_call("ZOOM", {"imgidx": idx, "bbox": c.crop_box, "scale": params.scale,
                                                   "label": name})]})
    msgs.append({"role": "tool", "name": "ZOOM", "content": [image_part(), text_part(
        f"Image {idx + 1}: region {c.crop_box} of image {idx} enlarged {params.scale:g}x.")]})
    conclude = t["conclude"].format(row=c.line["text"], value=value, unit=f" {unit}" if unit else "",
                                    flag=t["flag"].format(flag=flag, ref=ref) if flag else "", name=name,
                                    answer=answer)
    msgs.append({"role": "assistant", "reasoning_content": conclude, "content": answer})
    return msgs, answer


# ----------------------------------------------------------------------------- the engine
def agentic_image(samples: Sequence[dict], tools: ImageTools, params: AgenticImageParams | None = None, *,
                  probe: Probe | None = None, expert: Expert | None = None) -> GateOutcome:
    """Think-with-image samples from OCR report samples (module docstring). `read` counts questions, plus one
    per report that yields none (its rejection says why); read == kept + rejected."""
    params = params or AgenticImageParams()
    out = GateOutcome()
    live: list[Candidate] = []
    for s in samples:
        try:
            cands = _candidates(s, params)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            out.read += 1
            reason = str(e).split(":")[0] if isinstance(e, ValueError) else "bad_sample"
            out.reject("input", reason, str(e), {"id": s.get("id") if isinstance(s, dict) else None})
            continue
        out.read += len(cands)
        for c in cands:
            try:
                _run_tools(c, tools, params)
            except ValueError as e:
                out.reject("input", str(e).split(":")[0], str(e), c.item)
                continue
            if not c.votes["geometric"]["ok"]:
                out.reject("perception", "geometric_disagrees", str(c.votes["geometric"]), c.item)
            elif not c.votes["pixel"]["ok"]:
                out.reject("perception", c.votes["pixel"]["reason"], str(c.votes["pixel"]), c.item)
            else:
                live.append(c)
    if expert is not None and live:
        queries = [dataclasses.replace(TRANSCRIBE, images=(str(tools.local_path(c.images[-1]["path"])),))
                   for c in live]
        replies = expert.answer(queries)
        kept = []
        for c, r in zip(live, replies):
            if r.text is None:
                out.reject("perception", "expert_failed", str(r.failure), c.item)
                continue
            overlap = token_recall(c.line["text"], r.text)
            c.votes["expert"] = {"name": getattr(expert, "name", "expert"), "overlap": round(overlap, 3)}
            if overlap < params.expert_min_overlap:
                out.reject("perception", "expert_disagrees", f"token recall {overlap:.2f}: {r.text[:200]!r}", c.item)
            else:
                kept.append(c)
        live = kept
    choices: dict[int, tuple[tuple[str, ...], int]] = {}
    if probe is not None:
        kept = []
        for c in live:
            try:
                choices[id(c)] = _choice(c, table_rows(c.sample), params.n_options, params.seed)
                kept.append(c)
            except ValueError as e:
                out.reject("tool_effectiveness", str(e).split(":")[0], str(e), c.item)
        live = kept
        # the images as files now (tool outputs may still sit in a temporary store root)
        full = [ChoiceQuestion(c.question, *choices[id(c)], images=(str(tools.local_path(c.images[0]["path"])),),
                               id=f"{c.sample['id']}:{c.row}:full") for c in live]
        zoomed = [dataclasses.replace(q, images=(str(tools.local_path(c.images[-1]["path"])),),
                                      id=f"{c.sample['id']}:{c.row}:zoom") for q, c in zip(full, live)]
        ok_full, ok_zoom = (probe.correct(full), probe.correct(zoomed)) if live else ([], [])
        kept = []
        for c, f, z in zip(live, ok_full, ok_zoom):
            c.votes["probe"] = {"full_image": bool(f), "zoomed": bool(z)}
            if f:
                out.reject("tool_effectiveness", "solved_without_tool", "right with the full image", c.item)
            elif not z:
                out.reject("tool_effectiveness", "tool_did_not_help", "wrong with the zoomed crop too", c.item)
            else:
                kept.append(c)
        live = kept
    for c in live:
        msgs, answer = _messages(c, params)
        opts = choices.get(id(c))
        try:
            out.kept.append(mid_sample(
                FAMILY, PHASE, [c.sample["id"], *c.sample.get("source_ids", [])], msgs, answer=answer,
                answer_kind="fill", images=c.images, tools=[ZOOM_SCHEMA, ROTATE_SCHEMA], generator="local",
                question=c.question, row=c.row, lang=c.lang, rotate_angle=c.angle, row_box=c.row_box,
                crop_box=c.crop_box, experts=c.votes, options=list(opts[0]) if opts else None,
                gold_option=opts[1] if opts else None,
                tool_effectiveness="checked" if probe is not None else "unchecked"))
        except SampleError as e:
            out.reject("quality", f"contract_{e.reason}", e.detail, c.item)
    return out
