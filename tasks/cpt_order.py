"""Stage `cpt_order`: the paper's §3.4 data-ordering curriculum over the CPT corpus.

Run:   python -m tasks.cpt_order [key=value ...]   (e.g. warmup.fraction=0.2 schedule.mix_fraction=0.1)
DVC:   dvc repro cpt_order

What (tasks/curriculum/run.py does it; the logic lives in tasks/training/{embed,order}.py):
1. reads data/cpt_data/samples/part-*.jsonl, encodes every sample with the base model's processor
   (bad samples -- empty or over-long text, unusable images, broken references -- go to
   rejected.jsonl with a reason) and sets a seeded held-out split aside (heldout.jsonl);
2. trains a warm-up copy of data/base_model on a seeded ~10% of the rest;
3. embeds every sample by mean-pooling the warm-up model's middle decoder block over its tokens;
4. UMAP (seeded) -> HDBSCAN; HDBSCAN noise points are placed (nearest cluster centroid in UMAP
   space by default, or a final region: `noise_placement`), never dropped;
5. ranks clusters by compactness (mean pairwise Euclidean distance of sampled members, most
   compact first) and lays the schedule out: cluster, mixed transition (both clusters, shuffled,
   plus a replay buffer from earlier clusters), next cluster, ...
Outputs (data/cpt_order/): manifest.jsonl (training order: position, id, cluster, rank, region,
replay, noise, 2-D coordinates), clusters.json (per-cluster size, compactness, kinds, tasks;
per-transition composition), order_map.png, heldout.jsonl, rejected.jsonl, summary.json.

MLflow: read/kept/rejected, clusters, noise points, replays, warm-up loss curve (warmup.*),
timings; artifacts clusters.json, order_map.png, summary.json.

Why: the paper replaces random shuffling by an easy-to-hard order over semantically coherent
groups; everything here is seeded, so the same corpus, base model and params give the same
manifest.
"""

from __future__ import annotations

import sys

from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir, head_jsonl
from tasks.common.tracking import stage_run
from tasks.training.config import CptOrderConfig
from tasks.curriculum.run import run


def main(argv: list[str] | None = None) -> dict:
    cfg, profile = load_stage_config("cpt_order", CptOrderConfig, sys.argv[1:] if argv is None else argv)
    with stage_run("cpt_order", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out_dir)) as out:
        summary = run(cfg, out, lambda metrics, step=None: tracker.log_metrics(metrics, step=step))
        flat = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        flat.update({f"timing.{k}": v for k, v in summary["timings"].items()})
        flat.update({f"warmup.{k}": v for k, v in summary["warmup"].items() if isinstance(v, (int, float))})
        tracker.log_summary({**flat, "rejected_by_reason": summary["rejected_by_reason"]},
                            kept_sample=head_jsonl(out / "manifest.jsonl", 20))
        for name in ("clusters.json", "order_map.png"):
            tracker.log_artifact(out / name, "cpt_order")
    print(f"cpt_order: read={summary['read']} scheduled={summary['scheduled']} heldout={summary['heldout']} "
          f"rejected={summary['rejected']} clusters={summary['clusters']} noise={summary['noise_points']} "
          f"entries={summary['manifest_entries']} (replays {summary['replays']})")
    return summary


if __name__ == "__main__":
    main()
