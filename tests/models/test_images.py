"""models.images: every PIL mode to RGB, aspect-preserving sizing within the pixel budget, and
degenerate inputs refused with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.config import ImageBudget
from models.images import ImageError, fit_size, load_image, visual_tokens

BUDGET = ImageBudget(min_pixels=56 * 56, max_pixels=224 * 224, max_side=896, min_side=8, max_aspect_ratio=32.0)
F = 28


def saved(img: Image.Image, tmp_path, name: str, fmt: str = "PNG", **kw):
    path = tmp_path / name
    img.save(path, fmt, **kw)
    return path


@pytest.mark.parametrize("size, reason", [((1, 1), "too_small"), ((20000, 20), "extreme_aspect_ratio"),
                                          ((20, 20000), "extreme_aspect_ratio"), ((7, 300), "too_small")])
def test_degenerate_sizes_are_refused_with_a_reason(tmp_path, size, reason):
    path = saved(Image.new("L", size, 128), tmp_path, "x.png")
    with pytest.raises(ImageError) as e:
        load_image(path, BUDGET, F)
    assert e.value.reason == reason
    assert f"{size[0]}x{size[1]}" in e.value.detail


def test_corrupt_and_missing_and_truncated_files(tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
    for path, reason in ((tmp_path / "garbage.png", "corrupt_image"), (tmp_path / "missing.png", "missing_image"),
                         (tmp_path, "corrupt_image")):
        with pytest.raises(ImageError) as e:
            load_image(path, BUDGET, F)
        assert e.value.reason == reason
    rng = np.random.default_rng(0)
    good = saved(Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)), tmp_path, "t.png")
    data = good.read_bytes()
    with pytest.raises(ImageError) as e:
        load_image(data[: len(data) // 2], BUDGET, F)
    assert e.value.reason == "corrupt_image"


def test_decompression_bomb_is_too_many_pixels(tmp_path):
    path = saved(Image.new("L", (3000, 3000)), tmp_path, "big.png")
    with pytest.raises(ImageError) as e:
        load_image(path, ImageBudget(max_source_pixels=1_000_000), F)
    assert e.value.reason == "too_many_pixels" and "3000x3000" in e.value.detail


def test_grayscale_and_bilevel_become_rgb(tmp_path):
    img = load_image(saved(Image.new("L", (100, 80), 77), tmp_path, "l.png"), BUDGET, F)
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (77, 77, 77)
    img = load_image(saved(Image.new("1", (100, 80), 1), tmp_path, "b.png"), BUDGET, F)
    assert img.mode == "RGB" and img.getpixel((5, 5)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = saved(Image.new("CMYK", (120, 90), (255, 0, 0, 0)), tmp_path, "c.jpg", "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    r, g, b = load_image(path, BUDGET, F).getpixel((10, 10))
    assert r < 40 and g > 215 and b > 215                                  # cyan


def test_16bit_grayscale_is_windowed_not_clipped(tmp_path):
    # a 12-bit CT-like slice in a 16-bit container: convert("L") would clip it to white
    arr = np.tile(np.linspace(1000, 4000, 128).astype(np.uint16), (64, 1))
    path = saved(Image.fromarray(arr), tmp_path, "ct.png")
    assert Image.open(path).mode in ("I;16", "I")
    img = load_image(path, BUDGET, F)
    px = np.asarray(img)
    assert img.mode == "RGB" and px.min() <= 5 and px.max() >= 250        # full range used
    assert np.all(np.diff(px[0, :, 0].astype(int)) >= -2)                 # still a left-to-right ramp


def test_float_and_constant_high_bit_images(tmp_path):
    img = load_image(Image.fromarray(np.full((64, 64), 3.5, dtype=np.float32)), BUDGET, F)
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (0, 0, 0)        # constant: no division by 0


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (100, 100), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 50, 100))
    img = load_image(saved(rgba, tmp_path, "a.png"), BUDGET, F)
    w = img.width
    assert img.getpixel((w - 5, 5)) == (255, 255, 255)                   # transparent red -> white
    assert img.getpixel((5, 5)) == (0, 0, 255)
    la = Image.new("LA", (100, 100), (0, 0))
    assert load_image(saved(la, tmp_path, "la.png"), BUDGET, F).getpixel((5, 5)) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (90, 90), 1)
    p.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    assert load_image(saved(p, tmp_path, "p.png"), BUDGET, F).getpixel((5, 5)) == (200, 30, 30)
    p.info["transparency"] = 1
    path = saved(p, tmp_path, "pt.png", transparency=1)
    assert load_image(path, BUDGET, F).getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (120, 60), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6                                                      # rotate 90 degrees on display
    path = tmp_path / "o.jpg"
    img.save(path, "JPEG", exif=exif.tobytes())
    out = load_image(path, BUDGET, F)
    assert out.height > out.width


@pytest.mark.parametrize("w, h", [(100, 100), (4000, 3000), (640, 480), (30, 40), (1000, 40), (50, 1500),
                                  (224, 224), (300, 100), (9, 9)])
def test_fit_size_keeps_aspect_within_budget(w, h):
    fw, fh = fit_size(w, h, BUDGET, F)
    assert fw % F == 0 and fh % F == 0 and fw >= F and fh >= F
    assert fw * fh <= BUDGET.max_pixels and max(fw, fh) <= BUDGET.max_side
    # the aspect ratio moves by at most one visual token per side
    assert abs(fw / fh - w / h) <= (w / h) * (F / min(fw, fh)) + 1e-9
    if BUDGET.min_pixels <= w * h <= BUDGET.max_pixels and max(w, h) <= BUDGET.max_side:
        assert abs(fw - w) <= F and abs(fh - h) <= F                       # in budget: only snapped
    if w * h < BUDGET.min_pixels:                                         # upscaled to the floor
        assert fw * fh >= BUDGET.min_pixels


def test_small_images_are_upscaled_large_ones_downscaled():
    assert fit_size(30, 30, BUDGET, F) == (56, 56)
    fw, fh = fit_size(4000, 3000, BUDGET, F)
    assert (fw, fh) == (252, 168) and fw * fh <= BUDGET.max_pixels


def test_loaded_size_passes_the_processor_unchanged(micro_build):
    from models.checkpoint import load_vlm

    vlm = load_vlm(micro_build[0] / "model")
    imgs = [vlm.image(Image.new("RGB", (640, 200), (9, 9, 9))), vlm.image(Image.new("L", (90, 300)))]
    batch = vlm.processor(text=[f"{vlm.tokens.image} a", f"b {vlm.tokens.image}"], images=imgs, return_tensors="pt",
                          padding=True)
    assert [tuple(s) for s in batch["image_sizes"].tolist()] == [(i.height, i.width) for i in imgs]
    n_image = int((batch["input_ids"] == vlm.tokenizer.image_token_id).sum())
    assert n_image == sum(visual_tokens(i, vlm.factor) for i in imgs)


def test_bytes_input(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "PNG")
    assert load_image(buf.getvalue(), BUDGET, F).size == (56, 56)
