"""Stage `cpt_order`: the paper's §3.4 data-ordering curriculum over the CPT corpus.

Run:   python -m tasks.cpt_order [key=value ...]   (e.g. warmup.fraction=0.2 schedule.mix_fraction=0.1
                                                    warmup.train.device=cpu)
DVC:   dvc repro cpt_order

What (tasks/curriculum/run.py does it, on the generic training library tasks/training/):
1. reads data/cpt_data/samples/part-*.jsonl, sets the general-text pool aside (whole corpus
   documents, `general_pool.max_samples`), takes the seeded CPT budget of the rest (`max_samples`:
   cpt trains one pass over what is ordered here), encodes every sample with the base model's
   processor (bad samples -- empty or over-long text, unusable images, broken references -- are
   rejected with a reason) and sets a seeded held-out split aside, stratified by data kind
   (heldout.jsonl);
2. trains a warm-up copy of data/base_model on a seeded ~10% of the rest, on `warmup.train.device`
   (auto | cpu | cuda: CUDA with bf16 when present, else the CPU in float32);
3. embeds every sample by mean-pooling the warm-up model's middle decoder block over its tokens;
4. UMAP (seeded) -> HDBSCAN; HDBSCAN noise points are placed (nearest cluster centroid in UMAP
   space by default, or a final region: `noise_placement`), never dropped;
5. ranks clusters by compactness (mean pairwise Euclidean distance of sampled members, most
   compact first) and lays the schedule out: cluster, mixed transition (both clusters, shuffled,
   plus a replay buffer from earlier clusters), next cluster, ...; every region also gets
   `schedule.general_share` of general-text entries from the pool (forgetting control).
Outputs (data/cpt_order/): manifest.jsonl (training order: position, id, cluster, rank, region,
replay, noise, 2-D coordinates), clusters.json (per-cluster size, compactness, kinds, tasks;
per-transition composition), order_map.png, heldout.jsonl, rejected/part-*.jsonl (one entry per
sample neither scheduled nor held out, with its reason), summary.json.

MLflow: read/kept/rejected, clusters, noise points, replays, warm-up loss curve (warmup.*),
timings (timing.*); artifacts clusters.json, order_map.png (folder cpt_order), a manifest sample.

Why: the paper replaces random shuffling by an easy-to-hard order over semantically coherent
groups; everything here is seeded, so the same corpus, base model and params give the same
manifest.
"""

from __future__ import annotations

from tasks.common.io import head_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.curriculum.config import CptOrderConfig
from tasks.curriculum.run import order_corpus


def run(cfg: CptOrderConfig, ctx: StageContext) -> StageResult:
    summary, metrics = order_corpus(cfg, ctx.out, ctx.log_metrics)
    return StageResult(
        summary=summary, metrics=metrics, samples=head_jsonl(ctx.out / "manifest.jsonl", 20),
        artifacts=[("clusters.json", "cpt_order"), ("order_map.png", "cpt_order")],
        line=f"read={summary['read']} scheduled={summary['scheduled']} heldout={summary['heldout']} "
             f"rejected={summary['rejected']} clusters={summary['clusters']} noise={summary['noise_points']} "
             f"entries={summary['manifest_entries']} (replays {summary['replays']})")


STAGE = Stage("cpt_order", CptOrderConfig, run)

if __name__ == "__main__":
    main(STAGE)
