"""Save and load the project's vision-language checkpoints; validate a directory before loading.

    from models.checkpoint import load_vlm, save_vlm, CheckpointError
    vlm = load_vlm("data/base_model")            # model, processor, tokenizer, image budget
    img = vlm.image("data/collect/images/ab/ab12.png")          # models.images with its budget
    batch = vlm.processor(text=[vlm.render(messages)], images=[img], return_tensors="pt")
    save_vlm(vlm, "data/cpt/model")              # later stages: same layout, meta file included

Any HF vision-language checkpoint loads (AutoModelForImageTextToText + AutoProcessor); the
project's own ones also carry `medx_model.json` (variant, image budget, pixels per visual token,
special tokens), without which defaults are derived from the processor.

Why validate first: from_pretrained on a broken directory fails deep inside safetensors or
tokenizers with messages that do not say which file is wrong (or, for a shard missing from an
index, may start a download attempt). `validate_checkpoint` checks, cheaply and before any
weight is read: config.json parses; every shard named in model.safetensors.index.json exists
and its header parses and matches the file length (a truncated copy is caught); tokenizer.json
parses as a tokenizer; the JSON configs and the chat template parse. Each problem raises
CheckpointError naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from models.config import ImageBudget, SpecialTokens
from models.images import load_image

META_FILE = "medx_model.json"
META_VERSION = 1
JSON_FILES = ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json",
              "special_tokens_map.json", "generation_config.json", META_FILE)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; `file` is the offending path."""

    def __init__(self, file: str | os.PathLike, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file = str(file)
        self.problem = problem


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None


def check_safetensors_file(path: Path) -> None:
    """Header parses and the file is as long as the header says (catches truncated copies)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len <= 0 or 8 + header_len > size:
                raise CheckpointError(path, f"corrupt safetensors header (length {header_len}, file {size} bytes)")
            header = json.loads(f.read(header_len))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(path, f"unreadable safetensors header ({type(e).__name__})") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    if 8 + header_len + max(ends, default=0) > size:
        raise CheckpointError(path, f"truncated: tensors end at {8 + header_len + max(ends)} bytes, "
                                    f"file has {size}")


def weight_files(root: Path) -> list[Path]:
    """The weight files the directory claims, checked to exist."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = root / index_name
        if index_path.exists():
            index = _read_json(index_path)
            weight_map = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(index_path, "no weight_map")
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if not (root / s).is_file()]
            if missing:
                raise CheckpointError(root / missing[0], f"missing shard listed in {index_name} "
                                                         f"({len(missing)} of {len(shards)} missing: {missing})")
            return [root / s for s in shards]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (root / single).is_file():
            return [root / single]
    raise CheckpointError(root, "no weights (model.safetensors, its index, or pytorch_model.bin)")


def validate_checkpoint(path: str | os.PathLike) -> Path:
    """Raise CheckpointError naming the first bad file; returns the resolved directory."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(root, "not a directory")
    config = root / "config.json"
    if not config.is_file():
        raise CheckpointError(config, "missing config.json")
    cfg = _read_json(config)
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise CheckpointError(config, "no model_type")
    for w in weight_files(root):
        if w.suffix == ".safetensors":
            check_safetensors_file(w)
    if not any((root / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(root, f"no tokenizer file (one of {list(TOKENIZER_FILES)})")
    if (root / "tokenizer.json").is_file():
        from tokenizers import Tokenizer
        try:
            Tokenizer.from_file(str(root / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 -- the Rust binding raises a bare Exception
            raise CheckpointError(root / "tokenizer.json", f"corrupt tokenizer ({str(e)[:200]})") from None
    for name in JSON_FILES:
        if (root / name).is_file():
            _read_json(root / name)
    if (root / "chat_template.jinja").is_file():
        check_chat_template(root / "chat_template.jinja")
    return root.resolve()


def check_chat_template(path: Path) -> None:
    """The template parses (with transformers' {% generation %} tag and loop controls)."""
    import jinja2
    import jinja2.ext

    class GenerationTag(jinja2.ext.Extension):
        tags: ClassVar[set[str]] = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.Scope(body).set_lineno(lineno)

    env = jinja2.Environment(extensions=[GenerationTag, jinja2.ext.loopcontrols])
    try:
        env.parse(path.read_text(encoding="utf-8"))
    except (jinja2.TemplateSyntaxError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"chat template does not parse: {e}") from None


@dataclass
class VLM:
    """A loaded checkpoint: what every training and evaluation stage works with."""

    model: Any
    processor: Any
    path: Path
    variant: str
    budget: ImageBudget
    factor: int                      # pixels per visual token along a side
    tokens: SpecialTokens

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def image(self, source) -> Any:
        """An image loaded and sized with this model's budget (raises models.images.ImageError)."""
        return load_image(source, self.budget, self.factor)

    def render(self, messages: list[dict], **kwargs) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, **kwargs)


def read_meta(root: str | os.PathLike) -> dict:
    """The checkpoint's medx_model.json ({} when absent; CheckpointError when unreadable)."""
    path = Path(root) / META_FILE
    return _read_json(path) if path.is_file() else {}


def write_meta(out_dir: Path, *, variant: str, budget: ImageBudget, factor: int,
               tokens: SpecialTokens, extra: dict | None = None) -> None:
    meta = {"format_version": META_VERSION, "variant": variant, "image_factor": factor,
            "image_budget": dataclasses.asdict(budget), "special_tokens": dataclasses.asdict(tokens),
            **(extra or {})}
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def processor_factor(processor) -> int:
    """Pixels per visual token for a foreign processor (patch size x merge), 14 if unknown."""
    patch = getattr(processor, "patch_size", None) or getattr(processor.image_processor, "patch_size", None)
    if isinstance(patch, dict):
        patch = patch.get("height")
    merge = getattr(processor, "spatial_merge_size", None) or getattr(
        processor.image_processor, "merge_size", None) or 1
    return int(patch or 14) * int(merge)


def load_vlm(path: str | os.PathLike, *, dtype: Any = None) -> VLM:
    """Validate, then load model and processor with the Auto classes (float32 by default)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = validate_checkpoint(path)
    try:
        processor = AutoProcessor.from_pretrained(root)
        model = AutoModelForImageTextToText.from_pretrained(root, dtype=dtype or torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(root, f"from_pretrained failed: {type(e).__name__}: {str(e)[:300]}") from None
    meta = read_meta(root)
    tokens = SpecialTokens(**meta["special_tokens"]) if "special_tokens" in meta else dataclasses.replace(
        SpecialTokens(), image=getattr(processor, "image_token", None) or SpecialTokens().image)
    budget = ImageBudget(**meta["image_budget"]) if "image_budget" in meta else ImageBudget()
    factor = int(meta.get("image_factor") or processor_factor(processor))
    return VLM(model=model.eval(), processor=processor, path=root, variant=meta.get("variant", "checkpoint"),
               budget=budget, factor=factor, tokens=tokens)


def save_vlm(vlm: VLM, out_dir: str | os.PathLike, *, extra_meta: dict | None = None) -> Path:
    """Model (safetensors), processor (tokenizer, image processor, chat template) and meta file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vlm.model.save_pretrained(out)
    vlm.processor.save_pretrained(out)
    write_meta(out, variant=vlm.variant, budget=vlm.budget, factor=vlm.factor, tokens=vlm.tokens,
               extra=extra_meta)
    return out


def checkpoint_digest(path: str | os.PathLike) -> str:
    """A cheap identity of a checkpoint directory: file names, sizes and the first MiB of every file
    (enough to tell checkpoints apart without hashing gigabytes of weights)."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(root)}:{f.stat().st_size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
