"""CPT samples -> token ids and image references; a Dataset in a given order; the batch collator.

    vlm = load_model("data/base_model/model")                  # tasks/training/model_io.py
    encoder = SampleEncoder(vlm.processor, EncodeParams(max_tokens=512), project_root(),
                            budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all(samples, encoder)      # rejected: [{id, reason, detail}]
    dataset = OrderedDataset(encoded_by_id, ["id-3", "id-1", ...])
    collate = CptCollator(vlm.processor, encoder.budget, encoder.factor)
    batch = collate([dataset[0], dataset[1]])   # input_ids, attention_mask, labels, pixel_values, ...

A sample follows the cpt_data contract (tasks/cpt_synthesis/samples.py): `text` (plain) or `messages` (chat
turns, image parts {"type": "image"}), `images` [{path, sha256}] relative to the project root.

Choices, and why:
- Encoding happens once, before training, for every sample: a bad sample is found and skipped
  with a reason (empty_text, text_too_long, image_unreadable, too_small, extreme_aspect_ratio, ...)
  before the first step, never mid-epoch, and the schedule holds only trainable samples. The
  image checks are models.images' (1x1 -> too_small, 20000x20 -> extreme_aspect_ratio; grayscale,
  CMYK and 16-bit images are converted, not rejected). Images are decoded again by the collator
  (keeping pixel arrays for the whole corpus would not fit in memory); if an image changed on
  disk since encoding, the collator drops that row and records the reason instead of crashing.
- Plain text gets its images' placeholders in front ("<image>\\n" per image, then the text), a
  caption/report layout; conversations render with the model's chat template, which places each
  image part where it is. Every sample ends with the document separator (`doc_end_token`, the
  tokenizer's eos when the vocabulary lacks it), so the model learns where documents end.
- CPT loss is next-token prediction on every text token of every sample, conversations included
  (a pre-training objective, not a supervised one); image placeholder positions and padding are
  masked out of the labels.
- Over-long samples: a raw text above `max_text_chars` is skipped (tokenizing a multi-megabyte
  string costs more than it teaches); otherwise the token sequence is cut at `max_tokens` and the
  cut is counted. An image sample is only cut after its last image placeholder, keeping at
  least `min_text_tokens` of text; otherwise it is skipped (`image_tokens_exceed_max_tokens`),
  because a cut through an image's placeholders breaks the image-feature scatter.
- Text-only and image-text samples share batches: grouping by modality would reorder the
  curriculum, which is the thing under test; the collator pads images to the batch's largest
  and the model scatters image features only into rows that have placeholders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import ImageBudget
from models.images import ImageError, load_image
from tasks.common.io import PathEscapeError, file_sha256, safe_join


class SampleSkip(ValueError):
    """A sample that cannot be trained on; `reason` is a stable key for rejection counts."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class EncodeParams:
    max_tokens: int = 512                 # sequence length cap (text is cut, see module docstring)
    max_text_chars: int = 200_000         # a longer raw text is skipped before tokenizing
    min_text_tokens: int = 4              # text an image sample must keep after a cut
    doc_end_token: str = "<|endoftext|>"  # appended to every sample; eos when not in the vocabulary
    verify_image_sha256: bool = True      # the manifest names content: a changed file is skipped
    images: dict[str, Any] = dataclasses.field(default_factory=dict)  # ImageBudget field overrides

    def __post_init__(self):
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be >= 8, got {self.max_tokens}")

    def budget(self, base: ImageBudget | None = None) -> ImageBudget:
        """The model's image budget (`base`, from its medx_model.json) with `images` overrides."""
        names = {f.name for f in dataclasses.fields(ImageBudget)}
        unknown = sorted(set(self.images) - names)
        if unknown:
            raise ValueError(f"images: unknown key(s) {unknown}; known: {sorted(names)}")
        return dataclasses.replace(base or ImageBudget(), **self.images)


@dataclasses.dataclass
class EncodedSample:
    id: str
    kind: str
    input_ids: np.ndarray                 # int32, document separator included
    image_paths: tuple[str, ...]          # absolute paths, in placeholder order
    n_image_tokens: int
    truncated: bool

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def tokenizer_of(processor):
    return getattr(processor, "tokenizer", processor)


def image_factor_of(processor) -> int:
    """Pixels per visual token along a side (the image processor's patch grid)."""
    ps = getattr(getattr(processor, "image_processor", None), "patch_size", None)
    if isinstance(ps, dict):
        return int(ps.get("height") or ps.get("width"))
    if ps:
        return int(ps)
    return int(getattr(processor, "patch_size", 14) * getattr(processor, "spatial_merge_size", 1))


def image_token_ids(processor) -> set[int]:
    """Ids of every image placeholder kind the processor may insert (never trained on)."""
    tok = tokenizer_of(processor)
    ids = set()
    for attr in ("image_token_id", "image_break_token_id", "image_end_token_id"):
        for owner in (processor, tok):
            v = getattr(owner, attr, None)
            if isinstance(v, int) and v >= 0:
                ids.add(v)
    return ids


class SampleEncoder:
    """Turns one CPT sample into an EncodedSample or raises SampleSkip."""

    def __init__(self, processor, params: EncodeParams, root: str | os.PathLike, *,
                 budget: ImageBudget | None = None, factor: int | None = None):
        self.processor = processor
        self.tokenizer = tokenizer_of(processor)
        self.params = params
        self.root = Path(root)
        self.budget = params.budget(budget)
        self.factor = factor or image_factor_of(processor)
        self.image_token = getattr(self.tokenizer, "image_token", None) or getattr(processor, "image_token", None)
        self.image_ids = image_token_ids(processor)
        vocab = self.tokenizer.get_vocab()
        end = params.doc_end_token if params.doc_end_token in vocab else self.tokenizer.eos_token
        if end is None:
            raise ValueError("the tokenizer has neither the document separator nor an eos token")
        self.doc_end_id = int(self.tokenizer.convert_tokens_to_ids(end))

    # ---- images -------------------------------------------------------------------------------
    def image_path(self, ref: Any) -> Path:
        if not (isinstance(ref, dict) and isinstance(ref.get("path"), str) and ref["path"]):
            raise SampleSkip("bad_image_ref", f"image reference {str(ref)[:120]} has no path")
        try:
            path = safe_join(self.root, ref["path"])
        except PathEscapeError as e:
            raise SampleSkip("bad_image_ref", str(e)) from None
        if not path.is_file():
            raise SampleSkip("image_missing", f"{ref['path']} does not exist")
        if self.params.verify_image_sha256 and ref.get("sha256") and file_sha256(path) != ref["sha256"]:
            raise SampleSkip("image_sha256_mismatch", f"{ref['path']} changed since the sample was written")
        return path

    def load(self, path: str | os.PathLike):
        try:
            return load_image(path, self.budget, self.factor)
        except ImageError as e:
            raise SampleSkip(e.reason if e.reason.startswith("image_") else f"image_{e.reason}",
                             f"{Path(path).name}: {e.detail}") from None

    # ---- text ---------------------------------------------------------------------------------
    def render(self, sample: dict, n_images: int) -> str:
        text = sample.get("text") or ""
        messages = sample.get("messages") or []
        if not isinstance(text, str) or not isinstance(messages, list):
            raise SampleSkip("bad_sample", "text must be a string and messages a list")
        if messages:
            return self.render_messages(messages)
        if not text.strip():
            raise SampleSkip("empty_text", "no text and no messages")
        if len(text) > self.params.max_text_chars:
            raise SampleSkip("text_too_long", f"{len(text)} chars > {self.params.max_text_chars}")
        if n_images:
            if not self.image_token:
                raise SampleSkip("no_image_token", "the tokenizer has no image placeholder token")
            placed = text.count(self.image_token)
            if placed == 0:
                text = (self.image_token + "\n") * n_images + text
            elif placed != n_images:
                raise SampleSkip("image_mismatch", f"{placed} placeholders in the text for {n_images} images")
        return text

    def render_messages(self, messages: list) -> str:
        chars = 0
        has_text = False
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            parts = [content] if isinstance(content, str) else content if isinstance(content, list) else None
            if parts is None:
                raise SampleSkip("bad_sample", "a message needs string or list content")
            for p in parts:
                t = p if isinstance(p, str) else (p.get("text") if isinstance(p, dict) else None)
                if isinstance(t, str):
                    chars += len(t)
                    has_text = has_text or bool(t.strip())
        if not has_text:
            raise SampleSkip("empty_text", "conversation without any text")
        if chars > self.params.max_text_chars:
            raise SampleSkip("text_too_long", f"{chars} chars > {self.params.max_text_chars}")
        if getattr(self.tokenizer, "chat_template", None):
            try:
                return self.tokenizer.apply_chat_template(messages, tokenize=False)
            except Exception as e:  # noqa: BLE001 -- jinja raises many types for a malformed turn
                raise SampleSkip("bad_sample", f"chat template: {type(e).__name__}: {str(e)[:200]}") from None
        lines = []
        for m in messages:
            c = m["content"]
            if isinstance(c, list):
                c = "".join(self.image_token if p.get("type") == "image" else p.get("text", "") for p in c)
            lines.append(f"{m.get('role', 'user')}: {c}")
        return "\n".join(lines)

    # ---- one sample ---------------------------------------------------------------------------
    def encode(self, sample: Any) -> EncodedSample:
        if not isinstance(sample, dict) or not isinstance(sample.get("id"), str) or not sample["id"]:
            raise SampleSkip("bad_sample", "a sample needs a non-empty string id")
        refs = sample.get("images") or []
        if not isinstance(refs, list):
            raise SampleSkip("bad_sample", "images must be a list")
        kind = sample.get("kind", "image_text" if refs else "text")
        if kind not in ("text", "image_text", "ocr"):
            raise SampleSkip("bad_kind", f"kind {kind!r}")
        if kind != "text" and not refs:
            raise SampleSkip("missing_image", f"a {kind} sample without images")
        text = self.render(sample, len(refs))
        paths = [self.image_path(r) for r in refs]
        images = [self.load(p) for p in paths]
        if images:
            out = self.processor(text=[text], images=[images], return_tensors="np")
            ids = np.asarray(out["input_ids"][0], dtype=np.int64)
        else:
            ids = np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        ids = np.append(ids, self.doc_end_id)
        is_image = np.isin(ids, list(self.image_ids)) if self.image_ids else np.zeros(len(ids), bool)
        n_image_tokens = int(is_image.sum())
        if images and n_image_tokens == 0:
            raise SampleSkip("image_mismatch", "the processor inserted no image placeholder")
        if len(ids) - n_image_tokens < 2:
            raise SampleSkip("empty_text", "no text tokens")
        truncated = len(ids) > self.params.max_tokens
        if truncated:
            if images:
                last = int(np.flatnonzero(is_image)[-1])
                if last + 1 + self.params.min_text_tokens > self.params.max_tokens:
                    raise SampleSkip("image_tokens_exceed_max_tokens",
                                     f"{n_image_tokens} image tokens end at {last + 1}, max_tokens "
                                     f"{self.params.max_tokens}")
            ids = ids[: self.params.max_tokens]
        return EncodedSample(sample["id"], kind, ids.astype(np.int32), tuple(str(p) for p in paths),
                             n_image_tokens, truncated)


def encode_all(samples: Iterable[dict], encoder: SampleEncoder) -> tuple[dict[str, EncodedSample], list[dict]]:
    """({id: EncodedSample}, rejections [{id, reason, detail}]); duplicate ids are rejected too."""
    kept: dict[str, EncodedSample] = {}
    rejected: list[dict] = []
    for s in samples:
        sid = s.get("id") if isinstance(s, dict) else None
        try:
            enc = encoder.encode(s)
        except SampleSkip as e:
            rejected.append({"id": sid, "reason": e.reason, "detail": e.detail})
            continue
        if enc.id in kept:
            rejected.append({"id": enc.id, "reason": "duplicate_id", "detail": "id seen earlier"})
            continue
        kept[enc.id] = enc
    return kept, rejected


def encoding_stats(kept: dict[str, EncodedSample], rejected: list[dict]) -> dict:
    kinds = Counter(e.kind for e in kept.values())
    tokens = np.array([e.n_tokens for e in kept.values()] or [0])
    return {"encoded": len(kept), "rejected": len(rejected),
            "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
            "by_kind": dict(sorted(kinds.items())), "truncated": sum(e.truncated for e in kept.values()),
            "tokens": int(tokens.sum()), "image_tokens": sum(e.n_image_tokens for e in kept.values()),
            "tokens_mean": round(float(tokens.mean()), 2), "tokens_max": int(tokens.max())}


class OrderedDataset(torch.utils.data.Dataset):
    """Encoded samples in schedule order: item k is the k-th schedule entry (replays repeat ids)."""

    def __init__(self, encoded: dict[str, EncodedSample], order: list[str]):
        missing = [i for i in order if i not in encoded]
        if missing:
            raise KeyError(f"{len(missing)} scheduled ids have no encoded sample, e.g. {missing[:3]}")
        self.encoded = encoded
        self.order = list(order)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> dict:
        return {"position": k, "sample": self.encoded[self.order[k]]}

    def fingerprint(self) -> str:
        """sha256 of the id sequence: a resumed run must train the same order."""
        h = hashlib.sha256()
        for i in self.order:
            h.update(i.encode())
            h.update(b"\n")
        return h.hexdigest()


class CptCollator:
    """Pads a list of dataset items into a batch; labels mask padding and image placeholders.

    Extra keys, popped by the trainer before the forward pass: `sample_ids`, `positions` (for the
    order trace) and `skipped` ([(id, reason)] rows dropped because an image failed to load).
    """

    def __init__(self, processor, budget: ImageBudget, factor: int, pad_to_multiple_of: int = 8,
                 blank_image_for_text: bool = False):
        self.processor = processor
        self.image_processor = getattr(processor, "image_processor", None)
        tok = tokenizer_of(processor)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.image_ids = sorted(image_token_ids(processor))
        self.image_token_id = getattr(processor, "image_token_id", None) or getattr(tok, "image_token_id", None)
        # several processes: every batch runs the vision tower (see add_blank_image)
        self.blank_image_for_text = blank_image_for_text and self.image_processor is not None \
            and self.image_token_id is not None
        self.budget = budget
        self.factor = factor
        self.pad_to_multiple_of = pad_to_multiple_of
        self.skipped: list[tuple[str, str]] = []

    def load_images(self, sample: EncodedSample) -> list:
        out = []
        for p in sample.image_paths:
            if not os.path.isfile(p):
                raise SampleSkip("image_missing", f"{p} vanished after encoding")
            try:
                out.append(load_image(p, self.budget, self.factor))
            except (ImageError, OSError) as e:
                raise SampleSkip(f"image_{getattr(e, 'reason', 'unreadable')}", str(e)[:200]) from None
        return out

    def __call__(self, items: list[dict]) -> dict:
        rows, images, skipped = [], [], []
        for item in items:
            s: EncodedSample = item["sample"]
            try:
                imgs = self.load_images(s)
            except SampleSkip as e:
                skipped.append((s.id, e.reason))
                continue
            rows.append(item)
            images.extend(imgs)
        self.skipped.extend(skipped)
        if not rows:
            # one padding token, nothing to predict: the trainer runs it as a zero-loss step
            one = torch.full((1, 1), self.pad_id, dtype=torch.long)
            batch = {"input_ids": one, "attention_mask": torch.ones_like(one), "labels": torch.full_like(one, -100),
                     "empty_batch": True, "skipped": skipped, "sample_ids": [], "positions": []}
            return self.add_blank_image(batch) if self.blank_image_for_text else batch
        longest = max(r["sample"].n_tokens for r in rows)
        m = self.pad_to_multiple_of
        width = -(-longest // m) * m if m > 1 else longest
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, item in enumerate(rows):
            ids = torch.from_numpy(item["sample"].input_ids.astype(np.int64))
            input_ids[r, : len(ids)] = ids
            attention[r, : len(ids)] = 1
        labels = input_ids.masked_fill(attention == 0, -100)
        if self.image_ids:
            labels = labels.masked_fill(torch.isin(input_ids, torch.tensor(self.image_ids)), -100)
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                 "sample_ids": [r["sample"].id for r in rows], "positions": [r["position"] for r in rows],
                 "skipped": skipped}
        if images:
            self.add_pixels(batch, images)
        elif self.blank_image_for_text:
            self.add_blank_image(batch)
        return batch

    def add_pixels(self, batch: dict, images: list) -> None:
        px = self.image_processor(images=images, return_tensors="pt")
        batch["pixel_values"] = px["pixel_values"]
        if "image_sizes" in px:
            batch["image_sizes"] = px["image_sizes"]

    def add_blank_image(self, batch: dict) -> dict:
        """A text-only batch gains one blank one-token image whose placeholder sits in an extra,
        masked column (attention 0, label -100): it changes no logit, no loss and no gradient, but
        the vision tower runs. Why: under several processes every rank must run the same modules
        in the same order -- ZeRO-3 gathers each module's parameters with a collective as it
        runs, and DDP/ZeRO reduce every parameter's gradient -- so one rank skipping the vision
        tower while another runs it would hang or corrupt the collectives."""
        from PIL import Image

        n = batch["input_ids"].shape[0]
        column = torch.full((n, 1), self.pad_id, dtype=torch.long)
        column[0, 0] = self.image_token_id
        batch["input_ids"] = torch.cat([batch["input_ids"], column], dim=1)
        batch["attention_mask"] = torch.cat([batch["attention_mask"], torch.zeros((n, 1), dtype=torch.long)], 1)
        batch["labels"] = torch.cat([batch["labels"], torch.full((n, 1), -100, dtype=torch.long)], 1)
        self.add_pixels(batch, [Image.new("RGB", (self.factor, self.factor))])
        return batch


EXTRA_BATCH_KEYS = ("sample_ids", "positions", "skipped", "empty_batch")


def split_batch(batch: dict) -> tuple[dict, dict]:
    """(model inputs, bookkeeping) from a collated batch."""
    extra = {k: batch[k] for k in EXTRA_BATCH_KEYS if k in batch}
    return {k: v for k, v in batch.items() if k not in EXTRA_BATCH_KEYS}, extra
