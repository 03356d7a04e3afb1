"""Image connectors: VQA-RAD train split, PneumoniaMNIST, DICOM files.

Image records carry their structured attributes in `meta.attributes`; the "label -> caption
-> instruction" synthesis of the CPT data stage starts from them.

Memory is capped as in base.py: manifests, image files and DICOM files are refused above
`max_file_bytes` before they are read, and so are .npz arrays whose inflated size (the zip
entry's, and the one the array header declares) is above it.
"""

from __future__ import annotations

import json
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from tasks.common.io import InputTooLarge, PathEscapeError, safe_join
from tasks.common.records import make_record, rejection
from tasks.corpus.connectors.base import Item, SourceContext, files_under, read_bytes, too_large
from tasks.corpus.images import ImageError

VQA_FIELDS = ("qid", "image_name", "question", "answer")


# --------------------------------------------------------------------------- VQA-RAD
def read_vqa_rad(ctx: SourceContext) -> Iterator[Item]:
    """The **train** split only (trainset.json); images resolved inside the images/ folder."""
    manifest = ctx.path / "trainset.json" if ctx.path.is_dir() else ctx.path
    image_root = manifest.parent / "images"
    try:
        items = json.loads(read_bytes(manifest, ctx.max_file_bytes))
        if not isinstance(items, list):
            raise ValueError("top level is not a list")
    except InputTooLarge as e:
        yield None, rejection(e.reason, e.detail, locator=str(manifest)), 0
        return
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
            ref = ctx.images.put_bytes(read_bytes(image_path, ctx.max_file_bytes))
        except PathEscapeError as e:
            yield None, rejection("path_escapes_root", str(e), locator=loc), 0
            continue
        except (ImageError, InputTooLarge) as e:
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


NPZ_ARRAYS = ("train_images", "train_labels")


def _npz_problem(path: Path, max_bytes: int) -> tuple[str, str] | None:
    """(reason, detail) when this .npz must not go to np.load, else None.

    np.load allocates what an array header declares before reading, and a few compressed bytes
    can inflate to gigabytes: so the file must be a zip archive (a bare .npy would be loaded
    whole), and both each array's zip entry size and its header's shape must fit `max_bytes`.
    An archive damaged in ways this does not read is left to np.load, which names what is wrong.
    """
    if not zipfile.is_zipfile(path):
        return "corrupt_file", "not a zip archive (.npz)"
    try:
        with zipfile.ZipFile(path) as zf:
            for name in NPZ_ARRAYS:
                info = zf.getinfo(f"{name}.npy")
                if info.file_size > max_bytes:
                    return "file_too_large", f"{name}: {info.file_size} bytes inflated > {max_bytes}"
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(f))
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > max_bytes:
                    return "file_too_large", f"{name}: header declares {declared} bytes > {max_bytes}"
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error):
        return None
    return None


def read_pneumoniamnist(ctx: SourceContext) -> Iterator[Item]:
    """The train split's 28x28 chest X-rays, the label as a structured attribute."""
    if (problem := _npz_problem(ctx.path, ctx.max_file_bytes)) is not None:
        yield None, rejection(*problem, locator=str(ctx.path)), 0
        return
    try:
        with np.load(ctx.path, allow_pickle=False) as data:
            images, labels = data["train_images"], data["train_labels"].reshape(-1)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as e:
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


def _dicom_pixels(ds, max_bytes: int) -> tuple[np.ndarray | None, str]:
    """An 8-bit display image from the first frame, or None and why not. Compressed pixel data
    decodes to every frame at once: its declared size is checked against `max_bytes` first."""
    if "PixelData" not in ds:
        return None, "no pixel data"
    declared = _dicom_pixel_bytes(ds)
    if declared > max_bytes:
        return None, f"pixel data too large: {declared} bytes decoded > {max_bytes}"
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


def _dicom_pixel_bytes(ds) -> int:
    """Bytes the decoded pixel data takes, from the header (0 when the header does not say)."""
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        dims = (int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), int(ds.get("SamplesPerPixel") or 1))
        bits = int(ds.get("BitsAllocated") or 8)
    except (TypeError, ValueError):
        return 0
    return max(frames, 1) * dims[0] * dims[1] * max(dims[2], 1) * max(-(-bits // 8), 1)


def read_dicom(ctx: SourceContext) -> Iterator[Item]:
    """Header fields as structured attributes; the first frame as PNG when decodable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for path in files_under(ctx.path, ("*.dcm",)):
        loc = str(path)
        size = path.stat().st_size
        if (rej := too_large(path, ctx.max_file_bytes)) is not None:  # pydicom reads the file whole
            yield None, rej, size
            continue
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
        arr, why = _dicom_pixels(ds, ctx.max_file_bytes)
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
