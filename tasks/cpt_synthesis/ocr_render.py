"""Render lab-report images for OCR training (paper §3.3.4), with every row's box kept.

    from tasks.cpt_synthesis.ocr_render import OCRRenderParams, render_report
    rendered = render_report(report, np.random.default_rng(7), OCRRenderParams())
    rendered.image            # PIL RGB image (photographed-document look)
    rendered.lines            # title / info / header / row / legend / footer lines in reading order,
                              # each with its cells; quads and boxes in output-image pixels

Pipeline: lay the report out as a table on paper (column widths from the measured text) -> one
geometric transform (a perspective warp and, for `rotate_p` = 10% of images as in the paper, a
rotation: small angles or a quarter turn) -> shadow gradient, glare, occlusion, blur. The geometric
steps are composed into one 3x3 homography that is applied to the image once (PIL
Image.transform PERSPECTIVE, one resampling) and to every box corner, so boxes and pixels cannot drift
apart; a box is kept as its 4-corner quad and as the axis-aligned bbox of that quad clipped to the
image (what the mid-training zoom tool crops). The occluder is drawn last in output pixels, and the
share of each cell's bbox it covers is recorded, so targets never ask for text nobody can see.

Fonts: Latin text uses the DejaVu faces bundled with matplotlib (always installed with the project);
Chinese text needs a CJK font: Noto Sans SC / Noto Serif SC from the PyPI package
`pylopdf-fonts-zh-cn` (OFL-1.1), or any file given in `cjk_fonts`. Without one, a Chinese report raises
FontUnavailable (the caller rejects it with reason `no_cjk_font`): there is no silent tofu. Every
string is checked against the chosen font's character map first (`font_missing_glyphs`).

Deterministic: the same report, rng state and params give the same pixels (one Pillow/FreeType build).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tasks.cpt_synthesis.ocr_panels import Report


class RenderError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FontUnavailable(RenderError):
    pass


@dataclasses.dataclass
class OCRRenderParams:
    font_size_min: int = 16
    font_size_max: int = 24
    perspective_p: float = 0.6        # share of images with a perspective warp
    max_warp: float = 0.07            # corner displacement, fraction of width/height
    rotate_p: float = 0.10            # the paper: 10% of images randomly rotated
    right_angle_share: float = 0.3    # of the rotated: a quarter/half turn instead of a small tilt
    max_tilt_deg: float = 15.0
    blur_p: float = 0.5
    blur_max_radius: float = 1.2
    shadow_p: float = 0.5
    shadow_max_strength: float = 0.45
    glare_p: float = 0.3
    glare_max_alpha: float = 0.55
    occlusion_p: float = 0.3
    occlusion_max_frac: float = 0.18  # occluder side, fraction of the image side
    cjk_fonts: list[str] = dataclasses.field(default_factory=list)    # [] = pylopdf-fonts-zh-cn
    latin_fonts: list[str] = dataclasses.field(default_factory=list)  # [] = matplotlib's DejaVu

    def __post_init__(self):
        if not 6 <= self.font_size_min <= self.font_size_max:
            raise ValueError("6 <= font_size_min <= font_size_max is required")
        for name in ("perspective_p", "rotate_p", "right_angle_share", "blur_p", "shadow_p", "glare_p", "occlusion_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")


@dataclasses.dataclass
class Cell:
    col: int
    text: str
    quad: list[list[float]]           # TL, TR, BR, BL corners in output pixels
    bbox: list[float]                 # [x0, y0, x1, y1], clipped to the image
    occluded: float = 0.0             # share of the bbox under the occluder


@dataclasses.dataclass
class Line:
    kind: str                         # title | info | header | row | legend | footer
    cells: list[Cell]
    quad: list[list[float]]
    bbox: list[float]
    row: int | None = None            # index into report.rows for kind == "row"

    @property
    def occluded(self) -> float:
        return max((c.occluded for c in self.cells), default=0.0)


@dataclasses.dataclass
class RenderedReport:
    image: Image.Image
    report: Report
    lines: list[Line]
    augment: dict                     # what was applied (recorded in sample meta)
    font: str


# ----------------------------------------------------------------------------- fonts
def default_latin_fonts() -> list[str]:
    import matplotlib
    d = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    return [str(d / n) for n in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf") if (d / n).exists()]


def default_cjk_fonts() -> list[str]:
    try:
        import pylopdf_fonts_zh_cn as zh
    except ImportError:
        return []
    return [str(p) for p in (zh.sans_path(), zh.serif_path()) if Path(p).exists()]


def fonts_for(lang: str, params: OCRRenderParams) -> list[str]:
    if lang == "zh":
        fonts = [f for f in (params.cjk_fonts or default_cjk_fonts()) if os.path.exists(f)]
        if not fonts:
            raise FontUnavailable("no_cjk_font", "install pylopdf-fonts-zh-cn or set cjk_fonts to a CJK TTF/OTF")
        return fonts
    fonts = [f for f in (params.latin_fonts or default_latin_fonts()) if os.path.exists(f)]
    if not fonts:
        raise FontUnavailable("no_latin_font", "matplotlib's DejaVu fonts not found; set latin_fonts")
    return fonts


@functools.lru_cache(maxsize=16)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont
    with TTFont(path, lazy=True, fontNumber=0) as f:
        return frozenset(f.getBestCmap())


def font_missing_glyphs(path: str, text: str) -> str:
    """The characters of `text` the font has no glyph for (whitespace ignored)."""
    cmap = _cmap(path)
    return "".join(sorted({c for c in text if not c.isspace() and ord(c) not in cmap}))


@functools.lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# ----------------------------------------------------------------------------- geometry
def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 H (H[2,2] = 1) mapping the 4 points `src` onto `dst`."""
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -x * u, -y * u])
        a.append([0, 0, 0, x, y, 1, -x * v, -y * v])
        b += [u, v]
    h = np.linalg.solve(np.asarray(a, float), np.asarray(b, float))
    return np.append(h, 1.0).reshape(3, 3)


def apply_h(h: np.ndarray, pts) -> np.ndarray:
    p = np.asarray(pts, float)
    q = np.c_[p, np.ones(len(p))] @ h.T
    return q[:, :2] / q[:, 2:3]


def _rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)             # positive = counter-clockwise on screen (y axis points down)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


def geometric(size: tuple[int, int], rng: np.random.Generator, p: OCRRenderParams) -> tuple[np.ndarray, tuple[int, int], dict]:
    """(H, output size, record) for the perspective warp and rotation drawn for this image."""
    w, h = size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    hm = np.eye(3)
    rec: dict = {"perspective": False, "rotation_deg": 0.0}
    if rng.random() < p.perspective_p:
        jitter = rng.uniform(0, p.max_warp, size=(4, 2)) * [w, h]
        dst = corners + jitter * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])   # every corner inward
        hm = homography(corners, dst)
        rec["perspective"] = True
    if rng.random() < p.rotate_p:
        if rng.random() < p.right_angle_share:
            deg = float(rng.choice([90.0, 180.0, 270.0]))
        else:
            deg = float(rng.uniform(2.0, p.max_tilt_deg) * rng.choice([-1, 1]))
        hm = _rotation(deg) @ hm
        rec["rotation_deg"] = round(deg, 3)
    out = apply_h(hm, corners)
    lo = np.floor(out.min(axis=0))
    hm = np.array([[1, 0, -lo[0]], [0, 1, -lo[1]], [0, 0, 1]]) @ hm
    out_size = tuple(int(v) for v in np.ceil(apply_h(hm, corners).max(axis=0)))
    return hm, (max(out_size[0], 1), max(out_size[1], 1)), rec


def warp(img: Image.Image, hm: np.ndarray, size: tuple[int, int], fill: tuple[int, int, int]) -> Image.Image:
    inv = np.linalg.inv(hm)
    inv = inv / inv[2, 2]
    return img.transform(size, Image.Transform.PERSPECTIVE, tuple(inv.flatten()[:8]),
                         resample=Image.Resampling.BILINEAR, fillcolor=fill)


def box_of(hm: np.ndarray, rect: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[list, list]:
    x0, y0, x1, y1 = rect
    quad = apply_h(hm, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    w, h = size
    bbox = [float(np.clip(quad[:, 0].min(), 0, w)), float(np.clip(quad[:, 1].min(), 0, h)),
            float(np.clip(quad[:, 0].max(), 0, w)), float(np.clip(quad[:, 1].max(), 0, h))]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in quad], [round(v, 1) for v in bbox]


# ----------------------------------------------------------------------------- layout
def layout(report: Report, font_path: str, size: int) -> tuple[Image.Image, list[tuple[str, int | None, list[tuple[int, str, tuple]]]]]:
    """Draw the report flat on paper; returns the image and, per line, (kind, row, [(col, text, rect)])."""
    f = _font(font_path, size)
    big = _font(font_path, int(size * 1.35))
    pad = max(2, size // 6)
    gap = int(size * 1.6)
    line_h = int(size * 1.7)
    margin = size * 2
    table = [report.columns] + [r.cells() for r in report.rows]
    widths = [max(f.getlength(row[c]) for row in table) for c in range(len(report.columns))]
    xs = [margin]
    for wcol in widths[:-1]:
        xs.append(xs[-1] + int(wcol) + gap)
    info_per_line = 3
    info_lines = [report.info[i:i + info_per_line] for i in range(0, len(report.info), info_per_line)]
    info_w = max(sum(f.getlength(t) for t in chunk) + gap * (len(chunk) - 1) for chunk in info_lines)
    content_w = max(xs[-1] - margin + widths[-1], big.getlength(report.hospital), f.getlength(report.title),
                    info_w, f.getlength(report.legend), f.getlength(report.footer))
    width = int(content_w + 2 * margin)
    n_lines = 2 + len(info_lines) + 1 + len(report.rows) + 2
    height = int(2 * margin + n_lines * line_h + 3 * pad * 4 + line_h)
    img = Image.new("RGB", (width, height), (252, 251, 247))
    d = ImageDraw.Draw(img)
    lines: list = []

    def put(x, y, text, font):
        d.text((x, y), text, font=font, fill=(20, 20, 24))
        x0, y0, x1, y1 = d.textbbox((x, y), text, font=font)
        return (x0 - pad, y0 - pad, x1 + pad, y1 + pad)

    y = margin
    x = (width - big.getlength(report.hospital)) / 2
    lines.append(("title", None, [(0, report.hospital, put(x, y, report.hospital, big))]))
    y += int(line_h * 1.3)
    x = (width - f.getlength(report.title)) / 2
    lines.append(("title", None, [(0, report.title, put(x, y, report.title, f))]))
    y += line_h
    for chunk in info_lines:
        x, cells = margin, []
        for c, t in enumerate(chunk):
            cells.append((c, t, put(x, y, t, f)))
            x += f.getlength(t) + gap
        lines.append(("info", None, cells))
        y += line_h
    y += pad * 2
    d.line([(margin, y), (width - margin, y)], fill=(60, 60, 60), width=max(1, size // 12))
    y += pad * 3
    lines.append(("header", None, [(c, t, put(xs[c], y, t, f)) for c, t in enumerate(report.columns)]))
    y += line_h
    d.line([(margin, y - pad * 2), (width - margin, y - pad * 2)], fill=(120, 120, 120), width=1)
    for i, r in enumerate(report.rows):
        cells = [(c, t, put(xs[c], y, t, f)) for c, t in enumerate(r.cells()) if t]
        lines.append(("row", i, cells))
        y += line_h
    d.line([(margin, y), (width - margin, y)], fill=(60, 60, 60), width=max(1, size // 12))
    y += pad * 3
    lines.append(("legend", None, [(0, report.legend, put(margin, y, report.legend, f))]))
    y += line_h
    lines.append(("footer", None, [(0, report.footer, put(margin, y, report.footer, f))]))
    return img, lines


# ----------------------------------------------------------------------------- photometric
def shadow(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape[:2]
    t = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    proj = (xx * np.cos(t) + yy * np.sin(t)).astype(np.float32)
    proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    gain = 1.0 - strength * proj ** rng.uniform(1.0, 2.5)
    return Image.fromarray(np.clip(a * gain[..., None], 0, 255).astype(np.uint8))


def glare(img: Image.Image, rng: np.random.Generator, max_alpha: float) -> Image.Image:
    w, h = img.size
    mask = Image.new("L", (w, h), 0)
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    rx, ry = rng.uniform(0.08, 0.25) * w, rng.uniform(0.05, 0.18) * h
    ImageDraw.Draw(mask).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(radius=max(rx, ry) / 3))
    m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.25, max_alpha)
    a = np.asarray(img, dtype=np.float32)
    return Image.fromarray(np.clip(a * (1 - m) + 255.0 * m, 0, 255).astype(np.uint8))


def occlude(img: Image.Image, rng: np.random.Generator, max_frac: float) -> tuple[Image.Image, list[float]]:
    w, h = img.size
    ow, oh = rng.uniform(0.06, max_frac) * w, rng.uniform(0.04, max_frac) * h
    x0, y0 = rng.uniform(0, w - ow), rng.uniform(0, h - oh)
    colors = [(233, 196, 160), (250, 236, 120), (70, 70, 80), (200, 210, 225)]   # finger, sticky note, pen, clip
    color = colors[int(rng.integers(len(colors)))]
    out = img.copy()
    ImageDraw.Draw(out).rounded_rectangle([x0, y0, x0 + ow, y0 + oh], radius=min(ow, oh) / 4, fill=color)
    return out, [round(x0, 1), round(y0, 1), round(x0 + ow, 1), round(y0 + oh, 1)]


def covered(bbox: list[float], occ: list[float] | None) -> float:
    if not occ:
        return 0.0
    ix = max(0.0, min(bbox[2], occ[2]) - max(bbox[0], occ[0]))
    iy = max(0.0, min(bbox[3], occ[3]) - max(bbox[1], occ[1]))
    area = max((bbox[2] - bbox[0]) * (bbox[3] - bbox[1]), 1e-6)
    return round(ix * iy / area, 3)


# ----------------------------------------------------------------------------- entry point
def render_report(report: Report, rng: np.random.Generator, params: OCRRenderParams) -> RenderedReport:
    """The report as a photographed-document image with its line and cell geometry (module docstring)."""
    fonts = fonts_for(report.lang, params)
    font = fonts[int(rng.integers(len(fonts)))]
    texts = [report.hospital, report.title, report.legend, report.footer, *report.info, *report.columns,
             *(t for r in report.rows for t in r.cells())]
    missing = font_missing_glyphs(font, "".join(texts))
    if missing:
        raise RenderError("font_missing_glyphs", f"{Path(font).name} lacks {missing!r}")
    size = int(rng.integers(params.font_size_min, params.font_size_max + 1))
    flat, flat_lines = layout(report, font, size)
    hm, out_size, aug = geometric(flat.size, rng, params)
    surface = tuple(int(v) for v in rng.integers(60, 200, size=3))      # table / desk behind the page
    img = warp(flat, hm, out_size, surface) if not np.allclose(hm, np.eye(3)) else flat
    if rng.random() < params.shadow_p:
        strength = float(rng.uniform(0.15, params.shadow_max_strength))
        img = shadow(img, rng, strength)
        aug["shadow"] = round(strength, 3)
    if rng.random() < params.glare_p:
        img = glare(img, rng, params.glare_max_alpha)
        aug["glare"] = True
    occ = None
    if rng.random() < params.occlusion_p:
        img, occ = occlude(img, rng, params.occlusion_max_frac)
        aug["occlusion"] = occ
    if rng.random() < params.blur_p:
        radius = float(rng.uniform(0.3, params.blur_max_radius))
        img = img.filter(ImageFilter.GaussianBlur(radius=radius))
        aug["blur_radius"] = round(radius, 3)
    lines = []
    for kind, row, cells in flat_lines:
        out_cells = []
        for col, text, rect in cells:
            quad, bbox = box_of(hm, rect, out_size)
            out_cells.append(Cell(col, text, quad, bbox, covered(bbox, occ)))
        rect = (min(r[0] for _, _, r in cells), min(r[1] for _, _, r in cells),
                max(r[2] for _, _, r in cells), max(r[3] for _, _, r in cells))
        quad, bbox = box_of(hm, rect, out_size)
        lines.append(Line(kind, out_cells, quad, bbox, row))
    aug["font"], aug["font_size"] = Path(font).name, size
    return RenderedReport(img.convert("RGB"), report, lines, aug, font)
