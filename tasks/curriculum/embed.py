"""Sample embeddings for the curriculum (paper §3.4): warm-up model, mean-pooled intermediate layer,
UMAP, HDBSCAN.

    layer = pick_layer(model, 0)                                  # 0 -> the middle decoder block
    emb = pooled_embeddings(model, dataset, collate, layer=layer, batch_size=16)   # (n, hidden) float32
    coords, coords_2d, labels = reduce_and_cluster(emb, UmapParams(), HdbscanParams(), seed=1234)

Choices, and why:
- The embedding is the output of decoder block `layer` (1-based; the paper: "an intermediate
  decoder layer (for efficiency)"), averaged over the sample's real tokens (attention mask), image
  placeholder positions included: after the adapter they carry the image, so image-text samples
  cluster by what they show as well as by what they say. The forward pass stops at that block (a
  hook raises once it has the output), so the upper half of the decoder and the vocabulary
  projection, most of the cost, never run.
- UMAP (seeded; umap-learn is then single-threaded and reproducible) reduces to `n_components`
  dimensions for HDBSCAN, which struggles in hundreds of dimensions; the 2-D map for the figure is
  a separate 2-component projection with the same seed (it is the clustering space itself when
  n_components is 2).
- HDBSCAN's min_cluster_size defaults to max(5, n // 50): at most ~50 clusters whatever the
  corpus size, i.e. curriculum regions of at least 2% of the data.
- Very small inputs (fewer than `MIN_FOR_CLUSTERING` samples) skip UMAP/HDBSCAN: every sample is
  noise, and the ordering logic turns that into one shuffled region.
"""

from __future__ import annotations

import numpy as np
import torch

from tasks.curriculum.config import HdbscanParams, UmapParams
from tasks.training.collate import split_batch
from tasks.training.device import autocast, to_device

MIN_FOR_CLUSTERING = 10


class _LayerOutput(Exception):
    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder's block list of a causal LM or a LLaVA-family model."""
    for path in ("model.language_model.layers", "language_model.model.layers", "model.layers",
                 "language_model.layers"):
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj):
            return obj
    raise ValueError(f"cannot find the decoder blocks of {type(model).__name__}")


def pick_layer(model, layer: int) -> int:
    """1-based block index; 0 picks the middle block."""
    n = len(decoder_layers(model))
    chosen = layer or max(1, n // 2)
    if not 1 <= chosen <= n:
        raise ValueError(f"embed.layer {layer} outside the decoder's 1..{n} blocks")
    return chosen


@torch.no_grad()
def pooled_embeddings(model, dataset, collate, *, layer: int, batch_size: int
                      ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """(embeddings (n, hidden), their sample ids, rows the collator dropped [(id, reason)]).

    Each embedding is the mean of block `layer`'s output over the sample's real tokens, computed on
    the device the model sits on (bf16 autocast on CUDA; the pooling is float32)."""
    block = decoder_layers(model)[layer - 1]
    device = next(model.parameters()).device

    def stop(_module, _inputs, output):
        raise _LayerOutput(output[0] if isinstance(output, tuple) else output)

    handle = block.register_forward_hook(stop)
    was_training = model.training
    model.eval()
    out, ids, dropped = [], [], []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            inputs, extra = split_batch(batch)
            dropped.extend(tuple(s) for s in extra.get("skipped", []))
            if extra.get("empty_batch"):
                continue
            ids.extend(extra["sample_ids"])
            inputs.pop("labels", None)
            inputs = to_device(inputs, device)
            try:
                with autocast(device):
                    model(**inputs)
                raise RuntimeError(f"block {layer} did not run")
            except _LayerOutput as got:
                hidden = got.hidden.float()
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    emb = np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
    return emb, ids, dropped


def _umap(x: np.ndarray, n_components: int, p: UmapParams, seed: int) -> np.ndarray:
    import umap

    reducer = umap.UMAP(n_components=n_components, n_neighbors=max(2, min(p.n_neighbors, len(x) - 1)),
                        min_dist=p.min_dist, metric=p.metric, random_state=seed, n_jobs=1)
    return reducer.fit_transform(x).astype(np.float32)


def auto_min_cluster_size(n: int, p: HdbscanParams) -> int:
    return p.min_cluster_size or max(5, n // 50)


def reduce_and_cluster(emb: np.ndarray, up: UmapParams, hp: HdbscanParams, *, seed: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clustering coordinates, 2-D coordinates, HDBSCAN labels with -1 = noise)."""
    n = len(emb)
    if n < MIN_FOR_CLUSTERING:
        coords = np.zeros((n, 2), np.float32)
        if n:
            centred = emb - emb.mean(0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            k = min(2, vt.shape[0])
            coords[:, :k] = centred @ vt[:k].T
        return coords, coords, np.full(n, -1)
    import hdbscan

    coords = _umap(emb, up.n_components, up, seed)
    coords_2d = coords if up.n_components == 2 else _umap(emb, 2, up, seed)
    min_size = auto_min_cluster_size(n, hp)
    clusterer = hdbscan.HDBSCAN(min_cluster_size=min_size, min_samples=hp.min_samples or None,
                                cluster_selection_method=hp.cluster_selection_method, core_dist_n_jobs=1)
    labels = clusterer.fit_predict(coords.astype(np.float64))
    return coords, coords_2d, np.asarray(labels, dtype=int)
