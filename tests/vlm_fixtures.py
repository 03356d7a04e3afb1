"""Synthetic data for the model tests (the models themselves come from tests/tiny_hf_models.py):

- the base-model tests: a small synthetic cleaned corpus (records in the project schema, PNG images
  beside it, some of them unusable) and micro architecture sizes that build in about a second on CPU
  (`write_corpus`, `micro_config`, `stage_args`);
- the training tests: CPT samples in the cpt_data contract over the three topics of
  tiny_hf_models.TOPICS (disjoint vocabularies, so an embedding model can separate them): text
  samples, conversations, and image captions whose images are PNGs under `<root>/images/`
  (`make_samples`, `save_png`, `write_jsonl`).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image
from tiny_hf_models import TOPICS, topic_sentence

from models.config import BaseModelConfig, TokenizerTrainConfig

FINDINGS = ["consolidation", "effusion", "pneumothorax", "cardiomegaly", "atelectasis", "nodule",
            "edema", "fracture", "opacity", "emphysema", "hyperinflation", "granuloma"]
SITES = ["right upper lobe", "left lower lobe", "lingula", "right costophrenic angle",
         "left hilum", "mediastinum", "retrocardiac region", "apex"]
DRUGS = ["amoxicillin", "azithromycin", "prednisone", "furosemide", "metoprolol", "heparin"]

# Overrides (dicts for BaseModelConfig / key=value lists for the stage) of a ~0.2M-parameter model.
MICRO_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
MICRO_DECODER = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}
MICRO_IMAGES = {"max_pixels": 112 * 112, "max_side": 448}


def sentence(rng: random.Random) -> str:
    return rng.choice([
        f"There is {rng.choice(FINDINGS)} in the {rng.choice(SITES)}.",
        f"No {rng.choice(FINDINGS)} is seen; the {rng.choice(SITES)} is clear.",
        f"The patient was treated with {rng.choice(DRUGS)} {rng.randint(5, 500)} mg daily.",
        f"Follow-up imaging in {rng.randint(2, 12)} weeks showed resolution of the {rng.choice(FINDINGS)}.",
    ])


def write_png(root: Path, rel: str, img: Image.Image) -> dict:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return {"path": rel, "sha256": "0" * 64}


def write_corpus(root: Path, n_text: int = 160, seed: int = 0) -> dict:
    """root/kept/part-00000.jsonl + root/images/*.png; returns {'kept', 'image_root', 'good_image_id'}."""
    rng = random.Random(seed)
    records = [{"id": f"txt-{i:04d}", "source": "medquad", "images": [], "meta": {},
                "text": " ".join(sentence(rng) for _ in range(rng.randint(3, 12)))} for i in range(n_text)]
    gradient = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (64, 1))
    bad = {"img-1x1": Image.new("RGB", (1, 1)), "img-strip": Image.new("L", (20000, 20))}
    for rid, img in bad.items():
        records.append({"id": rid, "source": "vqa_rad", "text": "A strip.", "meta": {},
                        "images": [write_png(root, f"images/{rid}.png", img)]})
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "img-garbage.png").write_bytes(b"not a png")
    records.append({"id": "img-garbage", "source": "vqa_rad", "text": "Garbage.", "meta": {},
                    "images": [{"path": "images/img-garbage.png", "sha256": "0" * 64}]})
    records.append({"id": "img-good", "source": "iu_xray", "meta": {},
                    "text": "Frontal chest radiograph. There is consolidation in the right upper lobe.",
                    "images": [write_png(root, "images/img-good.png", Image.fromarray(gradient))]})
    kept = root / "kept"
    kept.mkdir(parents=True, exist_ok=True)
    with open(kept / "part-00000.jsonl", "w") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in records)
        f.write("{not json\n")
    return {"kept": kept, "image_root": root, "good_image_id": "img-good"}


def micro_config(corpus: dict, out_dir: Path | None = None, **over) -> BaseModelConfig:
    fields = {"variant": "tiny", "in_dir": str(corpus["kept"]), "image_root": str(corpus["image_root"]),
              "out_dir": str(out_dir or ""), "seed": 7, "vision": dict(MICRO_VISION),
              "decoder": dict(MICRO_DECODER), "images": dict(MICRO_IMAGES), "sanity_max_tokens": 32,
              "throughput_steps": 1,
              "tokenizer": TokenizerTrainConfig(vocab_size=500, max_texts=150, holdout_texts=10)}
    fields.update(over)
    return BaseModelConfig(**fields)


def stage_args(corpus: dict, out_dir: Path, *extra: str) -> list[str]:
    """The same micro model as key=value overrides for `python -m tasks.base_model`."""
    def mapping(d: dict) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"
    return ["variant=tiny", f"in_dir={corpus['kept']}", f"image_root={corpus['image_root']}",
            f"out_dir={out_dir}", "seed=7", f"vision={mapping(MICRO_VISION)}",
            f"decoder={mapping(MICRO_DECODER)}", f"images={mapping(MICRO_IMAGES)}",
            "sanity_max_tokens=32", "throughput_steps=1", "tokenizer.vocab_size=500",
            "tokenizer.max_texts=150", "tokenizer.holdout_texts=10", *extra]


# ---- CPT samples (training tests) ---------------------------------------------------------------

def save_png(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode: str = "RGB") -> dict:
    """Write an image; returns its sample reference {path, sha256} (path as given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        Image.new("RGB", size, color).save(path, format="PNG")
    elif mode == "I;16":
        arr = (np.arange(size[0] * size[1], dtype=np.uint16).reshape(size[1], size[0]) * 37) % 4096
        img = Image.fromarray(arr)                         # uint16 -> mode I;16
        assert img.mode == "I;16", img.mode
        img.save(path, format="PNG")
    else:
        Image.new(mode, size, color[0] if mode == "L" else tuple(color) + (0,)).save(
            path, format="JPEG" if mode == "CMYK" else "PNG")
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def make_samples(root: Path, n_per_topic: int = 12, *, seed: int = 0, with_images: bool = True) -> list[dict]:
    """CPT samples over three topics: text, conversations and (chest topic) image captions."""
    rng = random.Random(seed)
    samples = []
    colors = {"cardio": (200, 30, 30), "derm": (30, 200, 30), "chest": (30, 30, 200)}
    for topic in TOPICS:
        for i in range(n_per_topic):
            sid = f"cpt-{topic}-{i:03d}"
            base = {"id": sid, "task": "passage", "source_ids": [f"src-{topic}-{i}"], "meta": {"generator": "local"},
                    "messages": [], "images": [], "text": ""}
            if with_images and topic == "chest" and i % 2 == 0:
                ref = save_png(root / "images" / f"{sid}.png", (56 + 28 * (i % 3), 84), colors[topic])
                ref["path"] = str(Path(ref["path"]).relative_to(root))
                samples.append({**base, "kind": "image_text", "task": "caption", "images": [ref],
                                "text": topic_sentence(rng, topic, 10)})
            elif i % 3 == 1:
                samples.append({**base, "kind": "text", "task": "atomic_qa", "messages": [
                    {"role": "user", "content": topic_sentence(rng, topic, 6) + "?"},
                    {"role": "assistant", "content": topic_sentence(rng, topic, 10)}]})
            else:   # every other plain text is a corpus document (CPT's general-replay pool draws on them)
                doc = {"task": "document", "source_ids": [f"doc-{topic}-{i}"]} if i % 2 else {}
                samples.append({**base, **doc, "kind": "text", "text": " ".join(topic_sentence(rng, topic)
                                                                                for _ in range(1 + i % 3))})
    return samples


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
