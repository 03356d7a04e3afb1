"""Image connectors: VQA-RAD train split, PneumoniaMNIST, DICOM files.

Image records carry their structured attributes in `meta.attributes`; the "label -> caption
-> instruction" synthesis of the CPT data stage starts from them.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from typing import Iterator

import numpy as np

from tasks.common.io import PathEscapeError, safe_join
from tasks.common.records import make_record, rejection
from tasks.corpus.connectors.base import Item, SourceContext, files_under, read_bytes
from tasks.corpus.images import ImageError

VQA_FIELDS = ("qid", "image_name", "question", "answer")


# --------------------------------------------------------------------------- VQA-RAD
def read_vqa_rad(ctx: SourceContext) -> Iterator[Item]:
    """The **train** split only (trainset.json); images resolved inside the images/ folder."""
    manifest = ctx.path / "trainset.json" if ctx.path.is_dir() else ctx.path
    image_root = manifest.parent / "images"
    try:
        items = json.loads(manifest.read_bytes())
        if not isinstance(items, list):
            raise ValueError("top level is not a list")
    except (ValueError, OSError) as e:
        yield None, rejection("bad_json", f"{type(e).__name__}: {e}", locator=str(manifest)), 0
        return
    for i, item in enumerate(items):
        loc = f"{manifest}#[{i}]"
        if not isinstance(item, dict) or any(k not in item for k in VQA_FIELDS):
            yield None, rejection("missing_field", f"item needs {list(VQA_FIELDS)}", locator=loc), 0
            continue
        try:
            image_path = safe_join(image_root, str(item["image_name"]))
            ref = ctx.images.put_bytes(read_bytes(image_path))
        except PathEscapeError as e:
            yield None, rejection("path_escapes_root", str(e), locator=loc), 0
            continue
        except ImageError as e:
            yield None, rejection(e.reason, e.detail, locator=loc), 0
            continue
        except OSError as e:
            yield None, rejection("missing_image", f"{type(e).__name__}: {e}", locator=loc), 0
            continue
        question, answer = str(item["question"]).strip(), str(item["answer"]).strip()
        text = f"Question: {question}\nAnswer: {answer}"
        attributes = {k: item.get(k, "") for k in ("image_organ", "question_type", "answer_type",
                                                     "phrase_type")}
        meta = ctx.record_meta(qid=item["qid"], split="train", image_name=item["image_name"],
                               question=question, answer=answer, attributes=attributes)
        yield make_record(ctx.name, item["qid"], text, images=[ref], meta=meta), None, len(text)


# --------------------------------------------------------------------------- PneumoniaMNIST
PNEUMONIA_LABELS = {0: "normal", 1: "pneumonia"}


def read_pneumoniamnist(ctx: SourceContext) -> Iterator[Item]:
    """The train split's 28x28 chest X-rays, the label as a structured attribute."""
    try:
        with np.load(ctx.path, allow_pickle=False) as data:
            images, labels = data["train_images"], data["train_labels"].reshape(-1)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        yield None, rejection("corrupt_file", f"{type(e).__name__}: {e}", locator=str(ctx.path)), 0
        return
    if len(images) != len(labels):
        yield None, rejection("corrupt_file", f"{len(images)} images vs {len(labels)} labels",
                              locator=str(ctx.path)), 0
        return
    for i, (arr, label) in enumerate(zip(images, labels)):
        loc = f"{ctx.path}#train[{i}]"
        label = int(label)
        if label not in PNEUMONIA_LABELS:
            yield None, rejection("bad_label", f"label {label} not in {PNEUMONIA_LABELS}", locator=loc), 0
            continue
        try:
            ref = ctx.images.put_array(np.asarray(arr, dtype=np.uint8))
        except ImageError as e:
            yield None, rejection(e.reason, e.detail, locator=loc), 0
            continue
        attributes = {"modality": "chest X-ray", "finding": PNEUMONIA_LABELS[label], "label_id": label,
                      "width": int(arr.shape[1]), "height": int(arr.shape[0])}
        meta = ctx.record_meta(index=i, split="train", attributes=attributes)
        yield make_record(ctx.name, i, "", images=[ref], meta=meta), None, int(arr.nbytes)


# --------------------------------------------------------------------------- DICOM
# Technical header fields only: patient-identifying fields (name, id, birth date, ...) are
# never copied, which is the PHI policy for DICOM.
DICOM_FIELDS = ("Modality", "BodyPartExamined", "StudyDescription", "SeriesDescription",
                "Manufacturer", "Rows", "Columns", "BitsAllocated", "PhotometricInterpretation",
                "PixelSpacing", "SliceThickness", "KVP", "MagneticFieldStrength", "ImageType",
                "SOPClassUID")


def _jsonable(value):
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


def _dicom_pixels(ds) -> tuple[np.ndarray | None, str]:
    """An 8-bit display image from the first frame, or None and why not."""
    if "PixelData" not in ds:
        return None, "no pixel data"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as e:  # compressed syntaxes need optional decoders
        return None, f"pixel data not decodable here: {type(e).__name__}"
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        arr = arr[0]  # first frame of a multi-frame image
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return scaled.astype(np.uint8), ""


def read_dicom(ctx: SourceContext) -> Iterator[Item]:
    """Header fields as structured attributes; the first frame as PNG when decodable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for path in files_under(ctx.path, ("*.dcm",)):
        loc = str(path)
        size = path.stat().st_size
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")  # kept in meta rather than spamming the log
                ds = pydicom.dcmread(path)
            attributes = {k: _jsonable(ds.get(k)) for k in DICOM_FIELDS if ds.get(k) not in (None, "")}
        except (InvalidDicomError, Exception) as e:  # pydicom raises many types on broken files
            yield None, rejection("corrupt_dicom", f"{type(e).__name__}: {e}"[:300], locator=loc), size
            continue
        if not attributes:
            yield None, rejection("no_attributes", "no technical header fields", locator=loc), size
            continue
        arr, why = _dicom_pixels(ds)
        images = []
        if arr is not None:
            try:
                images.append(ctx.images.put_array(arr))
            except ImageError as e:
                why = f"{e.reason}: {e.detail}"
        meta = ctx.record_meta(file=path.name, attributes=attributes,
                               pixel_data="stored" if images else why,
                               reader_warnings=sorted({str(w.message)[:200] for w in caught}))
        yield make_record(ctx.name, path.name, "", images=images, meta=meta), None, size
