"""Stage `collect`: read every training source into one record schema (paper §3.1).

Run:   python -m tasks.collect [key=value ...]      (e.g. max_records_per_source=50 engine.workers=4)
DVC:   dvc repro collect

Sources (params.yaml `collect.sources`, paths relative to `data_root`): MedQuAD XML (one
record per answered QA pair), PubTator (BC5CDR + NCBI-disease, gold mentions in meta),
MEDLINE XML.gz abstracts, IU-Xray report text (train split), VQA-RAD train split (image +
QA), PneumoniaMNIST train split (image + label), the DICOM files shipped in pydicom (header
fields), and optional record-schema JSONL. Benchmark test splits are never read here.

Output (data/collect/): kept/part-*.jsonl, rejected/part-*.jsonl (each with a reason),
images/<sha[:2]>/<sha>.<ext> stored once by content hash, sources.json (provenance), and
summary.json. Per-source shard accounting (the unit the Ray workers run) goes to MLflow
(shards.json); `engine.workers`, `engine.address` (tasks/common/engine.py) change how, never what, it writes. Why the choices: records keep source-native ids in `meta` so later stages can
join back to gold annotations; XML goes through defusedxml so a hostile file cannot expand
entities or fetch anything; a bad file or line is quarantined, never fatal, so one broken
input cannot stop a corpus build, while a missing or checksum-mismatched source stops the
stage with the path named, because silently building from the wrong data is worse.
"""

from __future__ import annotations

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.corpus.connectors import SourceError
from tasks.corpus.connectors.collect import CollectConfig, collect
from tasks.corpus.images import ImageStore


def run(cfg: CollectConfig, ctx: StageContext) -> StageResult:
    sink = ctx.sink(cfg.shard_size)
    images = ImageStore(ctx.out / "images", f"{cfg.out_dir}/images", cfg.max_image_pixels)
    try:
        per_source, shards = collect(cfg, sink, images, ctx.engine)
    except SourceError as e:
        raise SystemExit(f"collect: {e}") from None
    return StageResult(
        summary={"images_stored": images.stored, "images_reused": images.reused, "per_source": per_source,
                 "shards": shards},
        metrics={f"{name}.{k}": v for name, c in per_source.items() for k, v in c.items()})


STAGE = Stage("collect", CollectConfig, run, sharded=True)

if __name__ == "__main__":
    main(STAGE)
