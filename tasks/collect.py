"""Stage `collect`: read every training source into one record schema (paper §3.1).

Run:   python -m tasks.collect [key=value ...]      (e.g. max_records_per_source=50)
DVC:   dvc repro collect

Sources (params.yaml `collect.sources`, paths relative to `data_root`): MedQuAD XML (one
record per answered QA pair), PubTator (BC5CDR + NCBI-disease, gold mentions in meta),
MEDLINE XML.gz abstracts, IU-Xray report text (train split), VQA-RAD train split (image +
QA), PneumoniaMNIST train split (image + label), the DICOM files shipped in pydicom (header
fields), and optional record-schema JSONL. Benchmark test splits are never read here.

Output (data/collect/): kept/part-*.jsonl, rejected/part-*.jsonl (each with a reason),
images/<sha[:2]>/<sha>.<ext> stored once by content hash, sources.json (provenance), and
summary.json. Why the choices: records keep source-native ids in `meta` so later stages can
join back to gold annotations; XML goes through defusedxml so a hostile file cannot expand
entities or fetch anything; a bad file or line is quarantined, never fatal, so one broken
input cannot stop a corpus build, while a missing or checksum-mismatched source stops the
stage with the path named, because silently building from the wrong data is worse.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tasks.common.config import load_stage_config, resolve
from tasks.common.records import rejection
from tasks.common.io import StageSink, atomic_output_dir, write_json
from tasks.common.tracking import stage_run
from tasks.corpus.connectors import CONNECTORS, LICENSES, SourceConfig, SourceContext, SourceError
from tasks.corpus.connectors.base import verify_source
from tasks.corpus.images import ImageStore


@dataclass
class CollectConfig:
    out_dir: str = "data/collect"
    data_root: str = "../shared/data"
    max_records_per_source: int = 0
    max_image_pixels: int = 40_000_000
    max_text_bytes: int = 2_000_000
    shard_size: int = 50_000
    sources: dict[str, SourceConfig] = field(default_factory=dict)

    def __post_init__(self):
        unknown = sorted(set(self.sources) - set(CONNECTORS))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; connectors: {sorted(CONNECTORS)}")


def source_path(cfg: CollectConfig, src: SourceConfig) -> Path:
    """Source paths are relative to data_root; the special value `pydicom` means the DICOM
    test files inside the installed pydicom package."""
    if src.path == "pydicom":
        import pydicom

        return Path(pydicom.__file__).parent / "data" / "test_files"
    return resolve(cfg.data_root) / src.path


def collect(cfg: CollectConfig, sink: StageSink, images: ImageStore) -> dict:
    """Run every enabled connector into `sink`; returns per-source counts."""
    per_source: dict[str, Counter] = {}
    provenance = {}
    data_root = str(resolve(cfg.data_root))
    seen_ids: set[str] = set()  # ids derive from content: a repeat is the same record twice
    for name, src in sorted(cfg.sources.items()):
        if not src.enabled:
            continue
        path = source_path(cfg, src)
        verify_source(name, path, src.sha256)
        provenance[name] = {"path": str(src.path), "url": src.url, "sha256": src.sha256}
        ctx = SourceContext(name=name, path=path, images=images, max_text_bytes=cfg.max_text_bytes,
                            license=src.license or LICENSES.get(name, ""))
        counts = per_source.setdefault(name, Counter())
        for record, rej, nbytes in CONNECTORS[name](ctx):
            sink.count_read(1, nbytes)
            counts["read"] += 1
            if record is not None and record["id"] in seen_ids:
                record, rej = None, rejection("duplicate_id", f"record {record['id']} already collected",
                                              record=record)
            if record is not None:
                seen_ids.add(record["id"])
                sink.keep(record)
                counts["kept"] += 1
            else:
                rej.setdefault("source", name)
                # paths relative to data_root: outputs must not depend on where the data lives
                for key in ("locator", "detail"):
                    if key in rej:
                        rej[key] = rej[key].replace(data_root, "${data_root}")
                sink.reject(rej)
                counts["rejected"] += 1
            if cfg.max_records_per_source and counts["read"] >= cfg.max_records_per_source:
                break
    write_json(sink.out_dir / "sources.json", provenance)
    return {name: dict(c) for name, c in per_source.items()}


def main(argv: list[str] | None = None) -> dict:
    cfg, profile = load_stage_config("collect", CollectConfig, sys.argv[1:] if argv is None else argv)
    with stage_run("collect", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out_dir)) as out:
        sink = StageSink(out, shard_size=cfg.shard_size)
        images = ImageStore(out / "images", f"{cfg.out_dir}/images", cfg.max_image_pixels)
        try:
            per_source = collect(cfg, sink, images)
        except SourceError as e:
            raise SystemExit(f"collect: {e}") from None
        summary = sink.close(images_stored=images.stored, images_reused=images.reused,
                             per_source=per_source)
        tracker.log_sink(sink, summary)
        tracker.log_metrics({f"{name}.{k}": v for name, c in per_source.items() for k, v in c.items()})
    print(f"collect: read={summary['read']} kept={summary['kept']} rejected={summary['rejected']}")
    return summary


if __name__ == "__main__":
    main()
