"""The two "think with image" tools of paper §4.1.2, ZOOM and ROTATE, run for real on image files.

    from tasks.mid_synthesis.image_tools import ImageTools, ImageToolParams, ZOOM_SCHEMA, ROTATE_SCHEMA
    tools = ImageTools(project_root=".", store_root="data/mid_data/images", params=ImageToolParams())
    up = tools.rotate(tools.open("data/cpt_data/images/af/af...jpg"), angle=-4.9)   # ToolImage
    crop = tools.zoom(up.image, bbox=[50, 210, 770, 240], scale=2)
    crop.ref              # {"path": "data/mid_data/images/3c/3c...png", "sha256": "3c..."}
    rotate_points([[x, y]], -4.9, size)                   # where a point of the input lands in ROTATE's output

ZOOM(bbox, scale) crops the box (pixel coordinates [x0, y0, x1, y1] of the image it is called on, rounded
outward to whole pixels and clipped to the image) and enlarges it by `scale`. ROTATE(angle) turns the image
counter-clockwise by `angle` degrees (negative = clockwise) about its centre and grows the canvas so no
pixel is lost; the uncovered corners are white. Multiples of 90 degrees are exact pixel transposes; other
angles are one affine resampling whose matrix is also what `rotate_points` applies, so boxes annotated on
the input can be carried into the output frame exactly (a caller never guesses where a row went).
WHY one fixed filter (bicubic) and fixed fill: the same call gives the same pixels, so a tool call
replays to the same sha256. Outputs are PNG (lossless; the crop is what the model reads) stored
content-addressed through tasks.corpus.images.ImageStore at `<image_dir>/<sha[:2]>/<sha>.png`, and
returned as {path relative to the project root, sha256}: identical outputs are stored once.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.common.images import open_checked
from tasks.corpus.images import ImageStore

RESAMPLE = Image.Resampling.BICUBIC
FILL = (255, 255, 255)

ZOOM_SCHEMA = {
    "type": "function",
    "function": {
        "name": "ZOOM",
        "description": "Crop a region of an image of the conversation and enlarge it. Returns the enlarged crop "
                       "as a new image.",
        "parameters": {
            "type": "object",
            "properties": {
                "imgidx": {"type": "integer", "description": "Index of the image to zoom into (0 = the first "
                           "image of the conversation, then the tool outputs in order).", "minimum": 0},
                "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                         "description": "Region [x0, y0, x1, y1] in pixels of that image."},
                "scale": {"type": "number", "description": "Enlargement factor.", "minimum": 1, "maximum": 4},
                "label": {"type": "string", "description": "What the region shows."},
            },
            "required": ["imgidx", "bbox", "scale"],
        },
    },
}
ROTATE_SCHEMA = {
    "type": "function",
    "function": {
        "name": "ROTATE",
        "description": "Rotate an image of the conversation counter-clockwise by `angle` degrees (negative = "
                       "clockwise), enlarging the canvas to keep the whole image. Returns the rotated image.",
        "parameters": {
            "type": "object",
            "properties": {
                "imgidx": {"type": "integer", "description": "Index of the image to rotate.", "minimum": 0},
                "angle": {"type": "number", "description": "Degrees, counter-clockwise."},
            },
            "required": ["imgidx", "angle"],
        },
    },
}


@dataclasses.dataclass
class ImageToolParams:
    image_dir: str = "data/mid_data/images"   # where tool outputs are referenced (relative to the project root)
    max_scale: float = 4.0
    max_output_pixels: int = 16_000_000       # a zoom larger than this is refused, not allocated
    max_input_pixels: int = 40_000_000


@dataclasses.dataclass
class ToolImage:
    image: Image.Image
    ref: dict                          # {"path", "sha256"}
    box: list[int] | None = None       # ZOOM: the integer crop box actually used


class ToolError(ValueError):
    """A tool call that cannot run (bad box, scale out of range); `reason` is machine-readable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ----------------------------------------------------------------------------- pure geometry
def crop_box(bbox, size: tuple[int, int]) -> list[int]:
    """`bbox` rounded outward to whole pixels and clipped to an image of `size`; ToolError if empty."""
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        raise ToolError("bad_bbox", f"{bbox!r} is not [x0, y0, x1, y1]")
    w, h = size
    x0, y0 = max(0, math.floor(bbox[0])), max(0, math.floor(bbox[1]))
    x1, y1 = min(w, math.ceil(bbox[2])), min(h, math.ceil(bbox[3]))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ToolError("empty_bbox", f"{bbox!r} has no pixels inside a {w}x{h} image")
    return [x0, y0, x1, y1]


def rotation(angle: float, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(3x3 forward matrix input px -> output px, output size) of ROTATE(angle) on an image of `size`."""
    t = math.radians(angle % 360.0)
    c, s = round(math.cos(t), 12), round(math.sin(t), 12)   # exact 0/1 at quarter turns
    r = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])   # counter-clockwise on screen (y points down)
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], float) @ r.T
    lo = np.floor(np.round(corners[:, :2].min(axis=0), 6))
    hi = np.ceil(np.round(corners[:, :2].max(axis=0), 6))
    m = np.array([[1, 0, -lo[0]], [0, 1, -lo[1]], [0, 0, 1]]) @ r
    return m, (int(hi[0] - lo[0]), int(hi[1] - lo[1]))


def rotate_points(points, angle: float, size: tuple[int, int]) -> np.ndarray:
    """Where points (pixel coordinates of an image of `size`) land in ROTATE(angle)'s output."""
    m, _ = rotation(angle, size)
    p = np.asarray(points, float).reshape(-1, 2)
    return (np.c_[p, np.ones(len(p))] @ m.T)[:, :2]


def rotate_image(img: Image.Image, angle: float) -> Image.Image:
    a = angle % 360.0
    quarter = {90.0: Image.Transpose.ROTATE_90, 180.0: Image.Transpose.ROTATE_180,
               270.0: Image.Transpose.ROTATE_270}
    if a == 0.0:
        return img.copy()
    if a in quarter:
        return img.transpose(quarter[a])
    m, out = rotation(angle, img.size)
    inv = np.linalg.inv(m)
    return img.transform(out, Image.Transform.AFFINE, tuple(inv[:2].flatten()), resample=RESAMPLE, fillcolor=FILL)


def zoom_image(img: Image.Image, bbox, scale: float) -> tuple[Image.Image, list[int]]:
    box = crop_box(bbox, img.size)
    w, h = box[2] - box[0], box[3] - box[1]
    out = img.crop(tuple(box))
    return out.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample=RESAMPLE), box


# ----------------------------------------------------------------------------- the tools
class ImageTools:
    """ZOOM / ROTATE with content-addressed outputs. `project_root` resolves input paths; outputs are written
    under `store_root` (e.g. a stage's temporary output dir) and referenced as `params.image_dir/...`."""

    def __init__(self, project_root: str | Path, store_root: str | Path, params: ImageToolParams | None = None):
        self.params = params or ImageToolParams()
        self.root = Path(project_root)
        self.store = ImageStore(Path(store_root), self.params.image_dir, self.params.max_output_pixels)

    def local_path(self, path: str) -> Path:
        """Where a project-relative image is now: tool outputs under the store root (which may be a stage's
        temporary directory until it is renamed), anything else under the project root."""
        prefix = self.store.ref_prefix + "/"
        return self.store.root / path[len(prefix):] if path.startswith(prefix) else self.root / path

    def open(self, path: str) -> Image.Image:
        """A project-relative image as RGB."""
        return open_checked(self.local_path(path), max_pixels=self.params.max_input_pixels).convert("RGB")

    def _put(self, img: Image.Image) -> dict:
        return self.store.put_array(np.asarray(img.convert("RGB")))

    def zoom(self, img: Image.Image, bbox, scale: float) -> ToolImage:
        if not (isinstance(scale, (int, float)) and 1.0 <= scale <= self.params.max_scale):
            raise ToolError("bad_scale", f"scale {scale!r} not in [1, {self.params.max_scale}]")
        box = crop_box(bbox, img.size)
        pixels = round((box[2] - box[0]) * scale) * round((box[3] - box[1]) * scale)
        if pixels > self.params.max_output_pixels:
            raise ToolError("output_too_large", f"{pixels} pixels > {self.params.max_output_pixels}")
        out, box = zoom_image(img, box, scale)
        return ToolImage(out, self._put(out), box)

    def rotate(self, img: Image.Image, angle: float) -> ToolImage:
        if not (isinstance(angle, (int, float)) and math.isfinite(angle)):
            raise ToolError("bad_angle", f"{angle!r}")
        out = rotate_image(img, angle)
        return ToolImage(out, self._put(out))

    def call(self, name: str, arguments: dict, images: list[dict]) -> ToolImage:
        """Run one tool call whose `imgidx` indexes `images` (the conversation's images so far, in order)."""
        idx = arguments.get("imgidx")
        if not isinstance(idx, int) or not 0 <= idx < len(images):
            raise ToolError("bad_imgidx", f"imgidx {idx!r} with {len(images)} images")
        img = self.open(images[idx]["path"])
        if name == "ZOOM":
            return self.zoom(img, arguments.get("bbox"), arguments.get("scale"))
        if name == "ROTATE":
            return self.rotate(img, arguments.get("angle"))
        raise ToolError("unknown_tool", name)
