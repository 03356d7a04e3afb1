"""Load any image the corpus holds as an 8-bit RGB picture sized for the vision tower.

    from models.images import load_image, ImageError
    try:
        img = load_image("data/collect/images/ab/ab12.png", budget, factor=28)
    except ImageError as e:
        reject(reason=e.reason, detail=e.detail)     # e.g. "extreme_aspect_ratio", "1000.0 > 32"

What and why:
- Every PIL mode becomes RGB. 16-bit and float grayscale (I;16, I, F: DICOM-derived slices) are
  min-max windowed to 8 bits, because a plain `convert("L")` clips at 255 and turns a 12-bit CT
  slice white. Transparent images (RGBA, LA, P with transparency) are composited on white, what
  a viewer shows; the RGB under a fully transparent pixel is arbitrary. CMYK/YCbCr/LAB go through
  PIL's conversion. EXIF orientation is applied (phone photos of films and monitors).
- The aspect ratio is kept and the pixel count is brought within [min_pixels, max_pixels], each
  side a multiple of `factor` (pixels per visual token: patch size x spatial merge), the long
  side at most max_side: the paper's native-resolution encoder sees the image's own shape, and
  the budget bounds visual tokens, i.e. CPU time, per image.
- Degenerate inputs raise ImageError (tasks.common.images, the project's one image checker) with a
  machine-readable reason instead of producing a meaningless tensor: missing_image, corrupt_image,
  too_many_pixels (decompression bomb), too_small (1x1 has nothing to read), extreme_aspect_ratio
  (20000x20 would be a 1-token-high strip); and unsupported_mode from the RGB conversion.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageOps

from models.config import ImageBudget
from tasks.common.images import ImageError, check_size, open_checked

__all__ = ["ImageError", "open_image", "check_shape", "to_rgb", "window_to_uint8", "fit_size",
           "resize_to_budget", "load_image", "visual_tokens"]

HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def open_image(source: str | os.PathLike | bytes | Image.Image, budget: ImageBudget) -> Image.Image:
    """Open and fully decode `source` (path, bytes or PIL image); size checks before decoding
    (tasks.common.images, with the budget's limits)."""
    return open_checked(source, max_pixels=budget.max_source_pixels, min_side=budget.min_side,
                        max_aspect_ratio=budget.max_aspect_ratio)


def check_shape(width: int, height: int, budget: ImageBudget) -> None:
    """ImageError(too_small | extreme_aspect_ratio) for a shape the budget cannot size."""
    check_size(width, height, min_side=budget.min_side, max_aspect_ratio=budget.max_aspect_ratio)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode (see the module docstring for the choices)."""
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        pass  # a broken EXIF block must not lose an otherwise good image
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in HIGH_BIT_MODES:
        return Image.fromarray(window_to_uint8(np.asarray(img))).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError("unsupported_mode", f"mode {mode}: {e}") from None


def window_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Min-max window of a high-bit-depth grayscale array to 0..255 (a constant image -> 0)."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def fit_size(width: int, height: int, budget: ImageBudget, factor: int) -> tuple[int, int]:
    """(width, height) keeping the aspect ratio, sides multiples of `factor`, pixels in budget.

    Like Qwen2-VL's smart_resize: scale to the budget first (down with floor, up with ceil so
    the bound holds), then snap each side to the factor grid; the snap moves a side by less
    than `factor`, so the aspect ratio changes by at most one visual token per side.
    """
    check_shape(width, height, budget)
    max_side = max(factor, budget.max_side // factor * factor)
    pixels = width * height
    snap = round
    scale = 1.0
    if pixels > budget.max_pixels:
        scale, snap = math.sqrt(budget.max_pixels / pixels), math.floor
    elif pixels < budget.min_pixels:
        scale, snap = math.sqrt(budget.min_pixels / pixels), math.ceil
    if max(width, height) * scale > max_side:
        scale, snap = max_side / max(width, height), math.floor
    w = max(factor, snap(width * scale / factor) * factor)
    h = max(factor, snap(height * scale / factor) * factor)
    w, h = min(w, max_side), min(h, max_side)
    # Rounding (or a short side raised to one token) can overshoot max_pixels: trim the long side.
    while w * h > budget.max_pixels and max(w, h) > factor:
        if w >= h:
            w -= factor
        else:
            h -= factor
    return w, h


def resize_to_budget(img: Image.Image, budget: ImageBudget, factor: int) -> Image.Image:
    size = fit_size(img.width, img.height, budget, factor)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def load_image(source: str | os.PathLike | bytes | Image.Image, budget: ImageBudget,
               factor: int) -> Image.Image:
    """An RGB image ready for the processor (its own resize is then the identity)."""
    return resize_to_budget(to_rgb(open_image(source, budget)), budget, factor)


def visual_tokens(img: Image.Image, factor: int) -> int:
    """Visual tokens the model spends on an image already sized by `load_image`."""
    return (img.width // factor) * (img.height // factor)
