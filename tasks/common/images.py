"""One image checker and one reason vocabulary for every place that accepts an image.

    from tasks.common.images import ImageError, open_checked
    try:
        img = open_checked(path_or_bytes, max_pixels=40_000_000, min_side=16, max_aspect_ratio=10)
    except ImageError as e:
        sink.reject(rejection(e.reason, e.detail, locator=...))

Reasons (`REASONS`, checked in this order):

    missing_image         the file does not exist
    too_many_pixels       width x height above `max_pixels` (from the header, before any pixel is decoded,
                          so a decompression bomb is refused without allocating it; Pillow's own bomb guard
                          reads the same)
    too_small             the short side below `min_side` (1x1 has nothing to read)
    extreme_aspect_ratio  long side / short side above `max_aspect_ratio` (20000x20 is a strip)
    corrupt_image         anything else that stops a full decode: not an image, a bad header, truncated
                          or corrupt pixel data, an unreadable file (Pillow raises many exception types)

Each caller keeps its own limits (collect: a pixel budget only; cpt_data: 16 px, 10:1; the model's
image budget: 8 px, 32:1) and may raise `ImageError` with reasons of its own for what it does after
the check (e.g. models.images `unsupported_mode`, tasks.corpus.images `bad_array`).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image

REASONS = ("missing_image", "too_many_pixels", "too_small", "extreme_aspect_ratio", "corrupt_image")


class ImageError(ValueError):
    """An image that cannot be used; `reason` is a stable key for rejection counts, `detail` says why."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_size(width: int, height: int, *, max_pixels: int | None = None, min_side: int = 1,
               max_aspect_ratio: float | None = None) -> None:
    """ImageError(too_many_pixels | too_small | extreme_aspect_ratio) if the geometry is unusable."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError("too_many_pixels", f"{width}x{height} = {width * height} pixels > {max_pixels}")
    short, long = min(width, height), max(width, height)
    if short < max(min_side, 1):
        raise ImageError("too_small", f"{width}x{height}: short side {short} < {max(min_side, 1)} px")
    if max_aspect_ratio is not None and long / short > max_aspect_ratio:
        raise ImageError("extreme_aspect_ratio",
                         f"{width}x{height}: aspect ratio {long / short:.1f} > {max_aspect_ratio:g}")


def _failure(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"


def open_checked(source: str | os.PathLike | bytes | Image.Image, *, max_pixels: int | None = None,
                 min_side: int = 1, max_aspect_ratio: float | None = None) -> Image.Image:
    """`source` (a path, encoded bytes or a PIL image) fully decoded (the first frame of a multi-frame
    file), its size checked from the header before decoding; ImageError otherwise (module docstring).

    A path is read into memory first, so no file handle outlives the call.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        if not isinstance(source, bytes):
            try:
                source = Path(source).read_bytes()
            except (FileNotFoundError, NotADirectoryError) as e:
                raise ImageError("missing_image", _failure(e)) from None
            except OSError as e:  # a directory, no permission, an I/O error: the bytes are not there
                raise ImageError("corrupt_image", _failure(e)) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(source))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError("too_many_pixels", str(e)[:200]) from None
        except Exception as e:  # noqa: BLE001 - not an image, bad header: Pillow raises many types
            raise ImageError("corrupt_image", _failure(e)) from None
    check_size(img.width, img.height, max_pixels=max_pixels, min_side=min_side,
               max_aspect_ratio=max_aspect_ratio)
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data
        raise ImageError("corrupt_image", _failure(e)) from None
    return img


__all__ = ["REASONS", "ImageError", "check_size", "open_checked"]
