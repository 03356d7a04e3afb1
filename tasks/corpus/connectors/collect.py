"""Collecting: every enabled connector into one record schema (the logic of stage `collect`).

A bad file or line is quarantined by its connector, never fatal; a missing or checksum-mismatched
source stops the stage with the path named. Ids derive from content, so a repeat is the same record
twice and is rejected as `duplicate_id`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tasks.common.config import resolve
from tasks.common.io import StageSink, write_json
from tasks.common.records import rejection
from tasks.corpus.connectors import CONNECTORS, LICENSES, SourceConfig, SourceContext
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
                if name == "dicom":  # the files inside the installed package: name them by package path
                    for key in ("locator", "detail"):
                        if isinstance(rej.get(key), str):
                            rej[key] = rej[key].replace(str(path), "${pydicom}/data/test_files")
                sink.reject(rej)
                counts["rejected"] += 1
            if cfg.max_records_per_source and counts["read"] >= cfg.max_records_per_source:
                break
    write_json(sink.out_dir / "sources.json", provenance)
    return {name: dict(c) for name, c in per_source.items()}
