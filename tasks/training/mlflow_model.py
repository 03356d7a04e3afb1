"""Log the trained model to the active MLflow run and register it.

    info = log_trained_model(mlflow, "data/cpt/model", registered_name="medxiaohe-cpt", register=True)
    # {"model_uri": "models:/m-...", "registered_name": ..., "registered_version": "3"}

mlflow.transformers logs a *pipeline*: the VLM goes in as an `image-text-to-text` pipeline built
from the saved model and its processor (handing mlflow the directory or a component dict fails
for this task with transformers 5: mlflow cannot infer the processor). mlflow cannot infer the
environment of a model it did not build, so `pip_requirements` pins the installed versions of what
loading the model needs.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

REQUIREMENTS = ("transformers", "torch", "accelerate", "pillow", "numpy", "safetensors", "tokenizers")


def pinned_requirements() -> list[str]:
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def log_trained_model(mlflow, model_dir: str | Path, *, registered_name: str, register: bool) -> dict:
    from transformers import pipeline

    from tasks.training.model_io import load_model

    vlm = load_model(model_dir)
    pipe = pipeline("image-text-to-text", model=vlm.model, processor=vlm.processor)
    info = mlflow.transformers.log_model(
        transformers_model=pipe, name="model", pip_requirements=pinned_requirements(),
        registered_model_name=registered_name if register else None)
    version = getattr(info, "registered_model_version", None)
    return {"model_uri": info.model_uri, "registered_name": registered_name if register else None,
            "registered_version": str(version) if version is not None else None}


def model_tags(tracker, model_dir: str | Path, params) -> dict:
    """Log (and register) a training stage's saved model when its `mlflow` params ask for it (a
    tasks/cpt_training/config.py ModelLogParams); the run tags that point at it."""
    if not params.log_model:
        return {}
    logged = log_trained_model(tracker.mlflow, model_dir, registered_name=params.registered_name,
                               register=params.register)
    return {"model_uri": logged["model_uri"], "registered_version": logged["registered_version"] or ""}
