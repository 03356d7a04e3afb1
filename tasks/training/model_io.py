"""Load a model to train and save what was trained, in the project's checkpoint layout.

    vlm = load_model("data/base_model/model")   # models.checkpoint.VLM: model, processor, budget, factor
    save_trained(trainer, vlm, out / "model", extra_meta={"stage": "cpt", "order": "curriculum"})

Loading goes through models.checkpoint.load_vlm: the directory is validated first (a missing or
truncated weight shard is named instead of failing deep inside safetensors), and the image budget
and pixels-per-visual-token come from the checkpoint's medx_model.json, so CPT sizes images the
way the model was built for. Saving writes the same layout (weights, processor, medx_model.json),
so every later stage loads a trained model exactly like the base model. The Trainer's
`training_args.bin` (a pickle of TrainingArguments, absolute output directory and launcher state
included) is not kept: it is not needed to load the model and would make the saved directory, a DVC
output, depend on where the checkout lives and how the run was launched.
"""

from __future__ import annotations

from pathlib import Path

from transformers.trainer import TRAINING_ARGS_NAME

from models.checkpoint import VLM, CheckpointError, load_vlm, write_meta


class ModelLoadError(RuntimeError):
    pass


def load_model(path: str | Path) -> VLM:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"no HF checkpoint at {path} (config.json missing); run the base_model stage first")
    try:
        return load_vlm(path)
    except CheckpointError as e:
        raise ModelLoadError(f"cannot load {path}: {e}") from None


def save_trained(trainer, vlm: VLM, out_dir: str | Path, *, extra_meta: dict | None = None) -> Path:
    """Weights through the Trainer (it gathers ZeRO-3 partitions; every rank must call this), then,
    on the main process, the processor and the meta file."""
    out = Path(out_dir)
    trainer.save_model(str(out))
    if trainer.args.should_save:
        (out / TRAINING_ARGS_NAME).unlink(missing_ok=True)
        vlm.processor.save_pretrained(out)
        write_meta(out, variant=vlm.variant, budget=vlm.budget, factor=vlm.factor, tokens=vlm.tokens,
                   extra=extra_meta)
    return out
