"""Validated, content-addressed image storage.

Every image a connector meets is decoded once under a pixel budget (tasks.common.images: the
one checker; too_many_pixels, corrupt_image, ...), then stored under its sha256 so the same
image referenced by many records (VQA-RAD questions share images) exists on disk once.
Encoded files (JPEG/PNG) keep their original bytes; arrays (PneumoniaMNIST, DICOM pixel
data) are encoded as PNG, which Pillow writes deterministically.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.common.images import ImageError, check_size, open_checked

__all__ = ["ImageError", "ImageStore", "decode"]


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Decode and fully load image bytes, or raise ImageError with a reason."""
    return open_checked(data, max_pixels=max_pixels)


class ImageStore:
    """Stores images under `<root>/<sha[:2]>/<sha>.<ext>`; records point at `<ref_prefix>/...`.

    `root` is where bytes are written now (a stage's temporary output directory);
    `ref_prefix` is the path the records carry (the final output path, relative to the
    project root), so references stay valid after the atomic rename.
    """

    def __init__(self, root: Path, ref_prefix: str, max_pixels: int):
        self.root = Path(root)
        self.ref_prefix = ref_prefix.rstrip("/")
        self.max_pixels = max_pixels
        self.stored = 0
        self.reused = 0

    def _put(self, data: bytes, ext: str) -> dict:
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}.{ext}"
        path = self.root / rel
        if path.exists():
            self.reused += 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.stored += 1
        return {"path": f"{self.ref_prefix}/{rel}", "sha256": sha}

    def put_bytes(self, data: bytes) -> dict:
        """Validate encoded image bytes and store them unchanged."""
        img = decode(data, self.max_pixels)
        ext = {"JPEG": "jpg", "PNG": "png"}.get(img.format or "", (img.format or "img").lower())
        return self._put(data, ext)

    def put_array(self, arr: np.ndarray) -> dict:
        """Store a 2-D (grayscale) or HxWx3 uint8 array as PNG."""
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise ImageError("bad_array", f"unsupported image array shape {arr.shape}")
        check_size(arr.shape[1], arr.shape[0], max_pixels=self.max_pixels)
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=False)
        return self._put(buf.getvalue(), "png")
