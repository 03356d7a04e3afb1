"""What the `cpt_order` stage does, given its config and an output directory (see tasks/cpt_order.py).

    summary, metrics = order_corpus(cfg, out_dir, log_metrics=lambda metrics, step=None: ...)

1. read the CPT samples; set the general-text pool aside (`general_pool`: whole corpus documents,
   every view of a chosen document, by a seeded hash of the document); cap the rest (`max_samples`,
   seeded: the training budget, since cpt trains one pass over the manifest), encode them (bad ones
   rejected with a reason), set the held-out split aside, stratified by data kind (never trained on,
   by the warm-up or by cpt);
2. warm-up: a copy of the base model trained on a seeded `warmup.fraction` of the remaining samples,
   in a seeded random order (the paper's "lightweight warm-up model on a small random subset"), on
   the device `warmup.train.device` resolves to (tasks/training/device.py);
3. embed every remaining sample with the warm-up model (mean-pooled middle decoder block), where the
   warm-up trained;
4. UMAP -> HDBSCAN -> noise placed -> clusters ranked by compactness -> schedule with mixed
   transitions, replay, and the general-text pool replayed through every region
   (tasks/curriculum/order.py);
5. write manifest.jsonl (one line per schedule entry, in training order), heldout.jsonl,
   clusters.json (the cluster report), order_map.png, rejected/part-*.jsonl (one entry per sample
   not scheduled and not held out, with its reason).

Returns the summary (deterministic: it becomes summary.json) and the MLflow-only metrics (timings).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tasks.common.config import project_root, resolve
from tasks.common.io import write_json, write_jsonl
from tasks.curriculum.config import CptOrderConfig
from tasks.curriculum.embed import decoder_layers, pick_layer, pooled_embeddings, reduce_and_cluster
from tasks.curriculum.order import build_schedule, check_schedule, place_noise, rank_clusters
from tasks.curriculum.plot import plot_order_map
from tasks.training.callbacks import MetricsCallback
from tasks.training.collate import Collator
from tasks.training.dataset import OrderedDataset
from tasks.training.encode import (
    EncodedSample,
    SampleEncoder,
    encode_all,
    encoding_stats,
    sample_rejection,
    write_rejections,
)
from tasks.training.model_io import load_model
from tasks.training.splits import cap_samples, data_kind, hash_fraction, heldout_ids, id_hash, read_samples
from tasks.training.trainer import ScheduleTrainer, training_arguments

LogFn = Callable[..., None]


def clip_for_embedding(e: EncodedSample, max_tokens: int, image_ids: set[int]) -> EncodedSample:
    """The sample's first `max_tokens` tokens (never cutting through image placeholders)."""
    if e.n_tokens <= max_tokens:
        return e
    keep = max_tokens
    if e.n_image_tokens:
        last = int(np.flatnonzero(np.isin(e.input_ids, list(image_ids)))[-1])
        keep = max(keep, last + 1)
    return e.clipped(keep)


def train_warmup(model, processor, encoder: SampleEncoder, encoded: dict, ids: list[str],
                 cfg: CptOrderConfig, log: LogFn) -> dict:
    """Train `model` in place on `ids` in a seeded random order; returns loss figures."""
    order = [ids[i] for i in np.random.default_rng(cfg.seed).permutation(len(ids))]
    dataset = OrderedDataset(encoded, order)
    params = dataclasses.replace(cfg.warmup.train, save_steps=0)
    history = MetricsCallback(lambda m, step: log(m, step=step), prefix="warmup.")
    with tempfile.TemporaryDirectory(prefix="cpt-warmup-") as tmp:
        trainer = ScheduleTrainer(model=model, args=training_arguments(params, tmp, seed=cfg.seed),
                                  train_dataset=dataset,
                                  data_collator=Collator(processor, encoder.budget, encoder.factor),
                                  callbacks=[history])
        result = trainer.train()
    losses = [h["loss"] for h in history.history if "loss" in h]
    model.eval()
    return {"samples": len(ids), "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "seconds": float(result.metrics.get("train_runtime", 0.0))}


def manifest_row(pos: int, e: dict, ids: list[str], pool_ids: list[str], is_noise, coords_2d) -> dict:
    """One manifest line; a general-replay entry names its pool sample and has no map position."""
    row = {"position": pos, "id": (pool_ids if e["general"] else ids)[e["index"]],
           **{k: v for k, v in e.items() if k != "index"}}
    if e["general"]:
        return {**row, "noise": False, "x": None, "y": None}
    i = e["index"]
    return {**row, "noise": bool(is_noise[i]), "x": round(float(coords_2d[i, 0]), 4),
            "y": round(float(coords_2d[i, 1]), 4)}


def cluster_report(ranking, entries: list[dict], encoded: dict, raw_by_id: dict, ids: list[str],
                   embed_meta: dict) -> dict:
    clusters = []
    for c in ranking:
        row = c.report()
        member_ids = [ids[i] for i in c.members]
        row["by_kind"] = dict(sorted(Counter(encoded[i].kind for i in member_ids).items()))
        row["by_task"] = dict(Counter(str(raw_by_id[i].get("task", "")) for i in member_ids).most_common(8))
        row["examples"] = sorted(member_ids)[:5]
        clusters.append(row)
    transitions: dict[int, dict] = {}
    for e in entries:
        if e["region"] != "transition":
            continue
        t = transitions.setdefault(e["region_index"], {"region_index": e["region_index"], "between": e["between"],
                                                       "size": 0, "replay": 0, "general": 0,
                                                       "from_ranks": Counter()})
        t["size"] += 1
        t["replay"] += e["replay"] and not e["general"]
        t["general"] += e["general"]
        if not e["general"]:
            t["from_ranks"][e["rank"]] += 1
    for t in transitions.values():
        t["from_ranks"] = {str(k): v for k, v in sorted(t["from_ranks"].items())}
    return {"clusters": clusters, "transitions": [transitions[k] for k in sorted(transitions)], **embed_meta}


def doc_key(sample: dict) -> str | None:
    """The corpus document a `document` view repeats (None for synthesized samples)."""
    return (sample.get("source_ids") or [None])[0] if sample.get("task") == "document" else None



def general_pool(samples: list[dict], cfg: CptOrderConfig) -> tuple[list[dict], list[dict]]:
    """(pool, rest): the views of whole documents, in seeded document order, until the pool holds
    `general_pool.max_samples` samples. Whole documents, so no document is both replayed as general
    text and held out or clustered."""
    p = cfg.general_pool
    if p.max_samples <= 0:
        return [], samples
    views: dict[str, list[dict]] = {}
    for s in samples:
        if s.get("task") in p.tasks and isinstance(s.get("id"), str):
            views.setdefault(str((s.get("source_ids") or [s["id"]])[0]), []).append(s)
    pool: list[dict] = []
    for doc in sorted(views, key=lambda d: id_hash(d, cfg.seed, "general_pool")):
        if len(pool) >= p.max_samples:
            break
        pool += views[doc]
    chosen = {id(s) for s in pool}
    return pool, [s for s in samples if id(s) not in chosen]


def order_corpus(cfg: CptOrderConfig, out: Path, log_metrics: LogFn) -> tuple[dict, dict]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    samples, bad_lines = read_samples(resolve(cfg.in_dir))
    pool_samples, samples = general_pool(samples, cfg)
    samples, left_out = cap_samples(samples, cfg.max_samples, cfg.seed)
    capped = len(left_out)
    raw_by_id = {s["id"]: s for s in samples if isinstance(s.get("id"), str)}
    vlm = load_model(resolve(cfg.base_model_dir))
    model, processor = vlm.model, vlm.processor
    encoder = SampleEncoder(processor, cfg.encode, project_root(), budget=vlm.budget, factor=vlm.factor)
    encoded, rejected = encode_all(samples, encoder)
    pool_encoded, pool_rejected = encode_all(pool_samples, encoder)
    pool_ids = sorted(pool_encoded)
    rejected += pool_rejected
    # the CPU budget's seeded cap: accounted like any other sample not taken
    rejected = bad_lines + rejected + [sample_rejection(c.get("id"), "over_max_samples",
                                                        f"max_samples={cfg.max_samples}") for c in left_out]
    timings["encode_s"] = time.perf_counter() - t0

    heldout = heldout_ids({i: data_kind(raw_by_id[i]) for i in encoded}, fraction=cfg.heldout.fraction,
                          max_samples=cfg.heldout.max_samples, min_per_kind=cfg.heldout.min_per_kind,
                          kinds=cfg.heldout.kinds, seed=cfg.seed)
    held = set(heldout)
    # views of one corpus document (cpt_data repeats documents by the mixing plan) share its text:
    # a view trained on while another is held out would flatter held-out perplexity
    held_docs = {doc_key(raw_by_id[i]) for i in held} - {None}
    siblings = sorted(i for i in encoded if i not in held and doc_key(raw_by_id[i]) in held_docs)
    rejected += [sample_rejection(i, "heldout_document_view", "another view of a held-out document")
                 for i in siblings]
    excluded = held | set(siblings)
    pool = sorted(i for i in encoded if i not in excluded)
    if not pool:
        raise ValueError("no trainable sample left after encoding and the held-out split")

    t = time.perf_counter()
    warm_ids = hash_fraction(pool, cfg.warmup.fraction, cfg.seed, "warmup",
                             at_least=min(cfg.warmup.min_samples, len(pool)))
    warmup = train_warmup(model, processor, encoder, encoded, warm_ids, cfg, log_metrics)
    timings["warmup_s"] = time.perf_counter() - t

    t = time.perf_counter()
    layer = pick_layer(model, cfg.embed.layer)
    clipped = {i: clip_for_embedding(encoded[i], cfg.embed.max_tokens, encoder.image_ids) for i in pool}
    emb, emb_ids, dropped = pooled_embeddings(model, OrderedDataset(clipped, pool),
                                              Collator(processor, encoder.budget, encoder.factor),
                                              layer=layer, batch_size=cfg.embed.batch_size)
    rejected += [sample_rejection(i, reason, "image failed while embedding") for i, reason in dropped]
    timings["embed_s"] = time.perf_counter() - t

    t = time.perf_counter()
    coords, coords_2d, hdb_labels = reduce_and_cluster(emb, cfg.umap, cfg.hdbscan, seed=cfg.seed)
    placed, is_noise = place_noise(hdb_labels, coords, cfg.noise_placement)
    ranking = rank_clusters(emb, hdb_labels, placed, sample_size=cfg.compactness_sample, seed=cfg.seed)
    entries = build_schedule(ranking, cfg.schedule, seed=cfg.seed, general_pool=len(pool_ids))
    check_schedule(entries, len(emb_ids), len(pool_ids))
    timings["cluster_s"] = time.perf_counter() - t

    write_jsonl(out / "manifest.jsonl", (manifest_row(pos, e, emb_ids, pool_ids, is_noise, coords_2d)
                                         for pos, e in enumerate(entries)))
    write_jsonl(out / "heldout.jsonl", ({"id": i, "kind": encoded[i].kind} for i in heldout))
    write_rejections(out / "rejected", rejected)
    embed_meta = {"layer": layer, "decoder_layers": len(decoder_layers(model)),
                  "embedding_dim": int(emb.shape[1]) if emb.size else 0, "samples": len(emb_ids),
                  "hdbscan_clusters": len(set(hdb_labels.tolist()) - {-1}),
                  "noise_points": int(is_noise.sum()), "noise_placement": cfg.noise_placement}
    report = cluster_report(ranking, entries, encoded, raw_by_id, emb_ids, embed_meta)
    write_json(out / "clusters.json", report)
    plot_order_map(coords_2d, placed, is_noise, ranking, out / "order_map.png")

    replays = sum(e["replay"] and not e["general"] for e in entries)
    general_entries = sum(e["general"] for e in entries)
    stats = encoding_stats(encoded, rejected)
    summary = {
        "read": len(samples) + len(pool_samples) + capped + len(bad_lines), "capped": capped,
        "kept": len(emb_ids) + len(heldout) + len(pool_ids), "scheduled": len(emb_ids), "heldout": len(heldout),
        "general_pool": len(pool_ids), "general_entries": general_entries,
        "heldout_by_kind": dict(sorted(Counter(data_kind(raw_by_id[i]) for i in heldout).items())),
        "rejected": len(rejected), "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
        "manifest_entries": len(entries), "replays": replays, "clusters": len(ranking),
        "hdbscan_clusters": embed_meta["hdbscan_clusters"], "noise_points": embed_meta["noise_points"],
        "truncated": stats["truncated"], "tokens": stats["tokens"], "by_kind": stats["by_kind"],
        "warmup": warmup, "embed_layer": layer,
        "cluster_order": [{"rank": c.rank, "label": c.label, "size": len(c.members),
                           "compactness": c.report()["compactness"]} for c in ranking],
    }
    metrics = {f"timing.{k}": round(v, 3) for k, v in timings.items()}
    metrics["warmup.seconds"] = warmup["seconds"]    # wall clock: MLflow only (not in summary.json)
    return summary, metrics
