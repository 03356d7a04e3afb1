"""The batch collator: pads encoded samples, builds labels (which tokens carry loss), loads images.

    collate = Collator(vlm.processor, encoder.budget, encoder.factor)                  # CPT
    collate = Collator(vlm.processor, budget, factor, assistant_only_loss=True)        # SFT
    batch = collate([dataset[0], dataset[1]])   # input_ids, attention_mask, labels, pixel_values, ...
    inputs, extra = split_batch(batch)          # model inputs; bookkeeping (ids, positions, skipped)

Labels, and why:
- padding and image placeholder positions are never predicted (-100);
- `assistant_only_loss=False` (CPT, a pre-training objective): every other token carries loss,
  conversations included;
- `assistant_only_loss=True` (SFT): a conversation carries loss only on its assistant turns (the
  encoder's `assistant_mask`, from the chat template); system and user tokens are -100. A plain-text
  sample keeps loss on every token. A conversation without a mask is dropped from the batch with
  the reason `no_assistant_mask` (training it on every token would silently teach the prompts).
Images are decoded here (not kept from encoding: a corpus of pixel arrays would not fit in memory);
if an image changed on disk since encoding, the row is dropped and the reason recorded instead of
crashing the run. Text-only and image-text samples share batches: grouping by modality would reorder
the schedule; the model scatters image features only into rows that have placeholders.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from models.config import ImageBudget
from models.images import ImageError, load_image
from tasks.training.encode import EncodedSample, SampleSkip, image_token_ids, tokenizer_of

EXTRA_BATCH_KEYS = ("sample_ids", "positions", "skipped", "empty_batch")


def split_batch(batch: dict) -> tuple[dict, dict]:
    """(model inputs, bookkeeping) from a collated batch."""
    extra = {k: batch[k] for k in EXTRA_BATCH_KEYS if k in batch}
    return {k: v for k, v in batch.items() if k not in EXTRA_BATCH_KEYS}, extra


class Collator:
    """Pads a list of dataset items into a batch; labels per the module docstring.

    Extra keys, popped by the trainer before the forward pass: `sample_ids`, `positions` (for the
    order trace) and `skipped` ([(id, reason)] rows dropped, e.g. an image that failed to load).
    """

    def __init__(self, processor, budget: ImageBudget, factor: int, pad_to_multiple_of: int = 8,
                 blank_image_for_text: bool = False, assistant_only_loss: bool = False):
        self.processor = processor
        self.image_processor = getattr(processor, "image_processor", None)
        tok = tokenizer_of(processor)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.image_ids = sorted(image_token_ids(processor))
        self.image_token_id = getattr(processor, "image_token_id", None) or getattr(tok, "image_token_id", None)
        # several processes: every batch runs the vision tower (see add_blank_image)
        self.blank_image_for_text = blank_image_for_text and self.image_processor is not None \
            and self.image_token_id is not None
        self.assistant_only_loss = assistant_only_loss
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

    def check(self, sample: EncodedSample) -> None:
        if self.assistant_only_loss and sample.chat and sample.assistant_mask is None:
            raise SampleSkip("no_assistant_mask", f"{sample.id}: assistant turns unknown")

    def __call__(self, items: list[dict]) -> dict:
        rows, images, skipped = [], [], []
        for item in items:
            s: EncodedSample = item["sample"]
            try:
                self.check(s)
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
        if self.assistant_only_loss:
            for r, item in enumerate(rows):
                mask = item["sample"].assistant_mask
                if mask is not None:
                    labels[r, : len(mask)] = labels[r, : len(mask)].masked_fill(~torch.from_numpy(mask), -100)
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
