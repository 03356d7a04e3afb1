"""Training samples -> token ids, image references and (for conversations) an assistant-token mask.

    vlm = load_model("data/base_model/model")                  # tasks/training/model_io.py
    encoder = SampleEncoder(vlm.processor, EncodeParams(max_tokens=512), project_root(),
                            budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all(samples, encoder)      # rejected: records.rejection entries + id

A sample follows the training-sample contract (tasks/cpt_synthesis/samples.py): `text` (plain) or
`messages` (chat turns, image parts {"type": "image"}), `images` [{path, sha256}] relative to the
project root, and optionally `tools` (the JSON schemas a conversation with tool calls may use: the chat
template lists them in the system turn, as at inference). Every training stage (CPT, mid-training; SFT
and RL next) encodes this way.

Choices, and why:
- Encoding happens once, before training, for every sample: a bad sample is found and skipped
  with a reason (empty_text, text_too_long, image_unreadable, too_small, extreme_aspect_ratio, ...)
  before the first step, never mid-epoch, and the schedule holds only trainable samples. The
  image checks are models.images' (1x1 -> too_small, 20000x20 -> extreme_aspect_ratio; grayscale,
  CMYK and 16-bit images are converted, not rejected). Images are decoded again by the collator
  (tasks/training/collate.py: keeping pixel arrays for a whole corpus would not fit in memory).
- Plain text gets its images' placeholders in front ("<image>\\n" per image, then the text), a
  caption/report layout; conversations render with the model's chat template, which places each
  image part where it is. Every sample ends with the document separator (`doc_end_token`, the
  tokenizer's eos when the vocabulary lacks it), so the model learns where documents end.
- Conversations also get `assistant_mask` (True on the tokens of assistant turns): from the
  template's own `{% generation %}` marks when it has them (the project's template does,
  models/chat_template.py), else from where each assistant turn starts and ends in the rendering
  (the rendering of the turns before it with a generation prompt, and of the turns up to it). The
  collator's `assistant_only_loss` uses it (SFT); CPT trains on every text token and ignores it. A
  conversation whose mask cannot be derived keeps `assistant_mask=None`; an encoder built with
  `require_assistant_mask=True` rejects it instead (`no_assistant_tokens`).
- Over-long samples: a raw text above `max_text_chars` is skipped (tokenizing a multi-megabyte
  string costs more than it teaches); otherwise the token sequence is cut at `max_tokens` and the
  cut is counted. An image sample is only cut after its last image placeholder, keeping at
  least `min_text_tokens` of text; otherwise it is skipped (`image_tokens_exceed_max_tokens`),
  because a cut through an image's placeholders breaks the image-feature scatter.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from models.config import ImageBudget
from models.images import ImageError, load_image
from tasks.common.io import PathEscapeError, ShardedJsonlWriter, file_sha256, path_prefixes, relative_paths, safe_join
from tasks.common.records import rejection

GENERATION_MARK = re.compile(r"\{%-?\s*generation\s*-?%\}")


class SampleSkip(ValueError):
    """A sample that cannot be trained on; `reason` is a stable key for rejection counts."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def sample_rejection(sample_id: Any, reason: str, detail: str = "", *, locator: str | None = None) -> dict:
    """A rejection entry (tasks.common.records.rejection) for a training sample, named by its id."""
    return {**rejection(reason, detail, locator=locator), "id": sample_id}


def write_rejections(directory: str | os.PathLike, entries: Iterable[dict]) -> int:
    """`directory`/part-*.jsonl (the project's one rejection layout), absolute paths in the entries made
    relative to the project root (or ${data_root}); returns the count."""
    writer = ShardedJsonlWriter(Path(directory))
    prefixes = path_prefixes()        # once: it reads params.yaml, and a capped corpus rejects ~10^4 samples
    for entry in entries:
        writer.write(relative_paths(entry, prefixes))
    writer.close()
    return writer.count


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
    chat: bool = False                    # rendered from `messages`
    assistant_mask: np.ndarray | None = None   # bool per token (chat only): inside an assistant turn

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    def clipped(self, n: int) -> EncodedSample:
        """The first `n` tokens (the mask cut with them)."""
        if n >= self.n_tokens:
            return self
        mask = self.assistant_mask[:n] if self.assistant_mask is not None else None
        return dataclasses.replace(self, input_ids=self.input_ids[:n], assistant_mask=mask, truncated=True)


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


def align_mask(text_ids: list[int], text_mask: list[bool], ids: np.ndarray, image_ids: set[int]) -> np.ndarray | None:
    """`text_mask` (over the tokenization of the rendered text, one token per image placeholder)
    carried over to `ids` (the processor's, each placeholder expanded to the image's tokens, which
    get False); None when the two sequences do not correspond."""
    out: list[bool] = []
    i = j = 0
    while i < len(text_ids) and j < len(ids):
        if text_ids[i] in image_ids:
            while i < len(text_ids) and text_ids[i] in image_ids:
                i += 1
            while j < len(ids) and int(ids[j]) in image_ids:
                out.append(False)
                j += 1
        elif text_ids[i] == int(ids[j]):
            out.append(bool(text_mask[i]))
            i += 1
            j += 1
        else:
            return None
    if i != len(text_ids) or j != len(ids):
        return None
    return np.asarray(out, dtype=bool)


class SampleEncoder:
    """Turns one sample into an EncodedSample or raises SampleSkip."""

    def __init__(self, processor, params: EncodeParams, root: str | os.PathLike, *,
                 budget: ImageBudget | None = None, factor: int | None = None,
                 require_assistant_mask: bool = False):
        self.processor = processor
        self.tokenizer = tokenizer_of(processor)
        self.params = params
        self.root = Path(root)
        self.budget = params.budget(budget)
        self.factor = factor or image_factor_of(processor)
        self.image_token = getattr(self.tokenizer, "image_token", None) or getattr(processor, "image_token", None)
        self.image_ids = image_token_ids(processor)
        self.require_assistant_mask = require_assistant_mask
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
            return self.render_messages(messages, tools=sample.get("tools") or None)
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

    def render_messages(self, messages: list, tools: list | None = None) -> str:
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
                return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
            except Exception as e:  # noqa: BLE001 -- jinja raises many types for a malformed turn
                raise SampleSkip("bad_sample", f"chat template: {type(e).__name__}: {str(e)[:200]}") from None
        return "\n".join(self._plain_lines(messages))

    def _plain_lines(self, messages: list) -> list[str]:
        """The rendering of a conversation for a tokenizer without a chat template."""
        lines = []
        for m in messages:
            c = m["content"]
            if isinstance(c, list):
                c = "".join(self.image_token if p.get("type") == "image" else p.get("text", "") for p in c)
            lines.append(f"{m.get('role', 'user')}: {c}")
        return lines

    # ---- the assistant mask -------------------------------------------------------------------
    def assistant_spans(self, messages: list, text: str, tools: list | None = None) -> list[tuple[int, int]] | None:
        """Character spans of the assistant turns in `text` (the conversation's rendering), from
        where the rendering of each turn's prefix ends; None when renderings are not prefixes."""
        template = getattr(self.tokenizer, "chat_template", None)
        spans = []
        if not template:
            lines, pos = self._plain_lines(messages), 0
            for m, line in zip(messages, lines):
                if m.get("role") == "assistant":
                    spans.append((pos + len("assistant: "), pos + len(line)))
                pos += len(line) + 1
            return spans

        def rendered(msgs: list, generation_prompt: bool) -> str:
            if not msgs and not generation_prompt:
                return ""
            return self.tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation_prompt)

        for i, m in enumerate(messages):
            if m.get("role") != "assistant":
                continue
            upto = rendered(messages[: i + 1], False)
            start = rendered(messages[:i], True)
            if not (text.startswith(upto) and upto.startswith(start)):
                return None
            end = len(upto.rstrip("\n"))     # the turn's end marker, not the line break after it
            spans.append((len(start), end))
        return spans

    def text_mask(self, messages: list, text: str, tools: list | None = None) -> tuple[list[int], list[bool]] | None:
        """(token ids of `text` as the tokenizer alone splits it, True where the token is in an assistant turn)."""
        template = getattr(self.tokenizer, "chat_template", None)
        if template and GENERATION_MARK.search(template):
            out = self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                                     return_assistant_tokens_mask=True)
            return list(out["input_ids"]), [bool(x) for x in out["assistant_masks"]]
        spans = self.assistant_spans(messages, text, tools)
        if spans is None:
            return None
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        flags = [any(s <= start < e for s, e in spans) for start, _ in enc["offset_mapping"]]
        return list(enc["input_ids"]), flags

    def assistant_mask(self, messages: list, text: str, ids: np.ndarray, tools: list | None = None) -> np.ndarray | None:
        try:
            got = self.text_mask(messages, text, tools)
        except Exception:  # noqa: BLE001 -- a template or tokenizer that cannot say: no mask, not a crash
            return None
        if got is None:
            return None
        return align_mask(got[0], got[1], ids, self.image_ids)

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
        messages = sample.get("messages") or []
        mask = self.assistant_mask(messages, text, ids, sample.get("tools") or None) if messages else None
        if messages and self.require_assistant_mask and (mask is None or not mask.any()):
            raise SampleSkip("no_assistant_tokens", "no assistant turn could be located in the rendering")
        ids = np.append(ids, self.doc_end_id)
        if mask is not None:
            mask = np.append(mask, False)
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
            mask = mask[: self.params.max_tokens] if mask is not None else None
        return EncodedSample(sample["id"], kind, ids.astype(np.int32), tuple(str(p) for p in paths),
                             n_image_tokens, truncated, chat=bool(messages), assistant_mask=mask)


def encode_all(samples: Iterable[dict], encoder: SampleEncoder) -> tuple[dict[str, EncodedSample], list[dict]]:
    """({id: EncodedSample}, rejections [{id, reason, detail}]); duplicate ids are rejected too."""
    kept: dict[str, EncodedSample] = {}
    rejected: list[dict] = []
    for s in samples:
        sid = s.get("id") if isinstance(s, dict) else None
        try:
            enc = encoder.encode(s)
        except SampleSkip as e:
            rejected.append(sample_rejection(sid, e.reason, e.detail))
            continue
        if enc.id in kept:
            rejected.append(sample_rejection(enc.id, "duplicate_id", "id seen earlier"))
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
