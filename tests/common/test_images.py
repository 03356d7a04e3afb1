"""tasks.common.images: one checker, one reason vocabulary, the same reason from every caller."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tasks.common.images import REASONS, ImageError, check_size, open_checked


def png(size, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


LIMITS = dict(max_pixels=1_000_000, min_side=8, max_aspect_ratio=10.0)


@pytest.mark.parametrize("size, reason", [((3000, 3000), "too_many_pixels"), ((1, 1), "too_small"),
                                          ((7, 50), "too_small"), ((200, 10), "extreme_aspect_ratio"),
                                          ((10, 200), "extreme_aspect_ratio")])
def test_geometry_reasons(tmp_path, size, reason):
    path = tmp_path / "x.png"
    path.write_bytes(png(size))
    for source in (path, str(path), path.read_bytes()):
        with pytest.raises(ImageError) as e:
            open_checked(source, **LIMITS)
        assert e.value.reason == reason and f"{size[0]}x{size[1]}" in e.value.detail


def test_missing_corrupt_truncated(tmp_path):
    cases = {tmp_path / "nope.png": "missing_image", tmp_path / "nodir" / "x.png": "missing_image",
             tmp_path: "corrupt_image"}
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
    cases[tmp_path / "garbage.png"] = "corrupt_image"
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "half.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases[tmp_path / "half.png"] = "corrupt_image"
    for path, reason in cases.items():
        with pytest.raises(ImageError) as e:
            open_checked(path, **LIMITS)
        assert e.value.reason == reason, path
        assert e.value.reason in REASONS and e.value.detail


def test_pillow_bomb_guard_reads_too_many_pixels(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # Pillow's own guard fires first
    with pytest.raises(ImageError) as e:
        open_checked(png((100, 100)))
    assert e.value.reason == "too_many_pixels"


def test_good_image_is_fully_decoded_and_limits_are_optional(tmp_path):
    img = open_checked(png((40, 30)), **LIMITS)
    assert img.size == (40, 30) and img.format == "PNG"
    assert open_checked(png((4000, 20))).size == (4000, 20)      # no limits: only a zero side is refused
    assert open_checked(Image.new("RGB", (9, 9)), **LIMITS).size == (9, 9)
    with pytest.raises(ImageError, match="too_small"):
        check_size(0, 10)


def test_every_caller_gives_the_same_reason(tmp_path):
    """collect's ImageStore, cpt_data's image check and the model loader share the vocabulary."""
    from models.config import ImageBudget
    from models.images import ImageError as ModelImageError
    from models.images import load_image
    from tasks.corpus.images import ImageError as CorpusImageError
    from tasks.corpus.images import ImageStore
    from tasks.cpt_synthesis.image_attributes import ImageLimits, load_checked

    assert ModelImageError is CorpusImageError is ImageError
    (tmp_path / "big.png").write_bytes(png((3000, 3000)))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    store = ImageStore(tmp_path / "store", "img", 1_000_000)
    budget = ImageBudget(max_source_pixels=1_000_000)
    for name, reason in (("big.png", "too_many_pixels"), ("bad.png", "corrupt_image"), ("gone.png", "missing_image")):
        path = tmp_path / name
        calls = [lambda: load_image(path, budget, 28), lambda: load_checked(path, ImageLimits(max_pixels=1_000_000))]
        if path.exists():
            calls.append(lambda: store.put_bytes(path.read_bytes()))
        for call in calls:
            with pytest.raises(ImageError) as e:
                call()
            assert e.value.reason == reason, name
    with pytest.raises(ImageError) as e:
        store.put_array(np.zeros((2000, 2000), np.uint8))
    assert e.value.reason == "too_many_pixels"
