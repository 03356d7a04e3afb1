"""Stage 1 of "label -> caption -> instruction" (paper §3.3.2): structured attributes per image, and the
image checks every image-text sample passes first.

    from tasks.cpt_synthesis.image_attributes import ImageLimits, image_units, check_unit_image
    units = image_units(records)               # Outcome: kept ImageUnits, rejected records with a reason
    unit, reason = check_unit_image(unit, root, ImageLimits(), put_image=store.put_bytes)

Attributes ("a structured JSON object ... anatomical location, finding type, severity, laterality, and
technical quality"), by source:
    vqa_rad         organ (ABD/CHEST/HEAD -> abdomen/chest/head), and every question/answer pair asked
                    about the image with its question type (VQA-RAD questions share images: all pairs
                    of one image are merged into one unit); modality and plane when a MODALITY/PLANE
                    question answers them
    pneumoniamnist  modality chest X-ray, finding pneumonia | normal, image size
    dicom           header fields: Modality, BodyPartExamined, Series/StudyDescription, SliceThickness,
                    PixelSpacing, KVP, Manufacturer, matrix, photometric interpretation, bit depth
A record without an image (`missing_image`), without the fields its source needs
(`missing_attributes`, the missing keys named) or from a source without image labels
(`unsupported_source`) is rejected; nothing is guessed.

Image checks (tasks.common.images, the project's one checker, with `ImageLimits`): a missing file ->
missing_image; more than `max_pixels` -> too_many_pixels (refused from the header, before decoding); a
side below `min_side` (1x1) -> too_small; longer/shorter side above `max_aspect` (20000x20) ->
extreme_aspect_ratio; anything else that stops a full decode -> corrupt_image. Grayscale 8-bit is what radiographs are and is kept as is (the model's
image processor converts to RGB at load time). CMYK, 16-bit (I;16, I) and palette/alpha images are
converted -- 16-bit by a min-max window to 8-bit, since a plain convert() clips them to white -- and
the converted PNG is stored through `put_image`; without a store they are rejected (needs_conversion).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.common.images import ImageError, open_checked
from tasks.cpt_synthesis.samples import Outcome

ORGANS = {"ABD": "abdomen", "CHEST": "chest", "HEAD": "head"}
MODALITY_NAMES = {"CT": "CT image", "MR": "MRI image", "MRI": "MRI image", "CR": "radiograph", "DX": "radiograph", "XR": "radiograph",
                  "US": "ultrasound", "NM": "nuclear medicine image", "PT": "PET image", "MG": "mammogram",
                  "OT": "image", "chest X-ray": "chest radiograph"}
DICOM_FIELDS = ("Modality", "BodyPartExamined", "SeriesDescription", "StudyDescription", "SliceThickness",
                "PixelSpacing", "KVP", "Manufacturer", "Rows", "Columns", "PhotometricInterpretation",
                "BitsAllocated", "ImageType")
SOURCES = ("vqa_rad", "pneumoniamnist", "dicom")


@dataclasses.dataclass
class ImageUnit:
    """One image with everything known about it (possibly from several records)."""
    image: dict                       # {path, sha256} as the records reference it
    source: str
    source_ids: list[str]
    attrs: dict
    notes: list[str] = dataclasses.field(default_factory=list)   # conversions applied to the image


@dataclasses.dataclass
class ImageLimits:
    min_side: int = 16                # 28x28 PneumoniaMNIST passes; 1x1 / 3x3 / 10x10 headers do not
    max_aspect: float = 10.0
    max_pixels: int = 40_000_000


def _clean(v):
    return v.strip() if isinstance(v, str) else v


def vqa_rad_attrs(meta: dict) -> tuple[dict, list[str]]:
    a = meta.get("attributes") or {}
    missing = [k for k, v in (("image_organ", a.get("image_organ")), ("question", meta.get("question")),
                              ("answer", meta.get("answer"))) if not (isinstance(v, str) and v.strip())]
    if missing:
        return {}, missing
    organ = ORGANS.get(a["image_organ"].strip().upper(), a["image_organ"].strip().lower())
    qa = {"question": meta["question"].strip(), "answer": str(meta["answer"]).strip(),
          "question_type": str(a.get("question_type") or "OTHER"), "answer_type": str(a.get("answer_type") or "")}
    return {"anatomy": organ, "qa": [qa]}, []


def pneumoniamnist_attrs(meta: dict) -> tuple[dict, list[str]]:
    a = meta.get("attributes") or {}
    if not (isinstance(a.get("finding"), str) and a["finding"].strip()):
        return {}, ["finding"]
    return {"modality": a.get("modality") or "chest X-ray", "anatomy": "chest", "view": "frontal",
            "finding": a["finding"].strip().lower(),
            "technical": {"width": a.get("width"), "height": a.get("height"), "source_resolution": "low"}}, []


def dicom_attrs(meta: dict) -> tuple[dict, list[str]]:
    a = meta.get("attributes") or {}
    if not (isinstance(a.get("Modality"), str) and a["Modality"].strip()):
        return {}, ["Modality"]
    header = {k: _clean(a[k]) for k in DICOM_FIELDS if a.get(k) not in (None, "", [])}
    out = {"modality": header["Modality"], "technical": header}
    if isinstance(header.get("BodyPartExamined"), str):
        out["anatomy"] = header["BodyPartExamined"].lower()
    return out, []


EXTRACTORS: dict[str, Callable[[dict], tuple[dict, list[str]]]] = {
    "vqa_rad": vqa_rad_attrs, "pneumoniamnist": pneumoniamnist_attrs, "dicom": dicom_attrs}


def _merge_vqa(unit: ImageUnit, attrs: dict) -> None:
    unit.attrs["qa"] = unit.attrs.get("qa", []) + attrs["qa"]
    for qa in attrs["qa"]:          # a MODALITY / PLANE question answers a structured attribute
        qt = qa["question_type"].upper()
        if "MODALITY" in qt and qa["answer_type"].upper() == "OPEN":
            unit.attrs.setdefault("modality", qa["answer"])
        if "PLANE" in qt and qa["answer_type"].upper() == "OPEN":
            unit.attrs.setdefault("view", qa["answer"].lower())


def image_units(records: Iterable[dict]) -> Outcome:
    """ImageUnits from corpus records (grouped by image sha256), rejected records with a reason."""
    out = Outcome()
    units: dict[str, ImageUnit] = {}
    for rec in records:
        loc = {"id": rec.get("id"), "source": rec.get("source")}
        src = rec.get("source")
        if src not in EXTRACTORS:
            out.reject("unsupported_source", f"no image labels for source {src!r}", loc)
            continue
        imgs = rec.get("images") or []
        if not imgs or not isinstance(imgs[0], dict) or not imgs[0].get("sha256"):
            out.reject("missing_image", "record has no stored image", loc)
            continue
        attrs, missing = EXTRACTORS[src](rec.get("meta") or {})
        if missing:
            out.reject("missing_attributes", f"missing {missing}", loc)
            continue
        sha = imgs[0]["sha256"]
        if sha in units:
            units[sha].source_ids.append(rec["id"])
            if src == "vqa_rad":
                _merge_vqa(units[sha], attrs)
            continue
        unit = ImageUnit({"path": imgs[0]["path"], "sha256": sha}, src, [rec["id"]], {"source": src})
        if src == "vqa_rad":
            unit.attrs["anatomy"] = attrs["anatomy"]
            _merge_vqa(unit, attrs)
        else:
            unit.attrs.update(attrs)
        units[sha] = unit
    out.kept.extend(units.values())
    return out


def to_8bit(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """An 8-bit L or RGB image and what was done to get it (empty: nothing)."""
    if img.mode in ("L", "RGB"):
        return img, []
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        scaled = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        return Image.fromarray(np.round(scaled).astype(np.uint8), "L"), [f"{img.mode}->L (min-max window {lo:g}..{hi:g})"]
    if img.mode == "CMYK":
        return img.convert("RGB"), ["CMYK->RGB"]
    if img.mode in ("LA", "La"):
        return img.convert("L"), [f"{img.mode}->L"]
    return img.convert("RGB"), [f"{img.mode}->RGB"]


def load_checked(path: Path, limits: ImageLimits) -> tuple[Image.Image, list[str]]:
    """The image at `path`, checked and in 8-bit L/RGB; ImageError (tasks.common.images) otherwise."""
    img = open_checked(path, max_pixels=limits.max_pixels, min_side=limits.min_side,
                       max_aspect_ratio=limits.max_aspect)
    return to_8bit(img)


def check_unit_image(unit: ImageUnit, root: Path, limits: ImageLimits,
                     put_image: Callable[[bytes], dict] | None = None) -> tuple[ImageUnit | None, str, str]:
    """(unit, "", "") with the image usable as referenced or converted and re-stored, else
    (None, reason, detail)."""
    import io
    try:
        img, notes = load_checked(Path(root) / unit.image["path"], limits)
    except ImageError as e:
        return None, e.reason, e.detail
    if not notes:
        return unit, "", ""
    if put_image is None:
        return None, "needs_conversion", "; ".join(notes) + " (no image store given)"
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    new = put_image(buf.getvalue())
    return dataclasses.replace(unit, image=new, notes=[*unit.notes, *notes,
                                                       f"converted from sha256 {unit.image['sha256']}"]), "", ""
