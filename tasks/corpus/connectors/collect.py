"""Collecting: every enabled connector into one record schema (the logic of stage `collect`).

A bad file or line is quarantined by its connector, never fatal; a missing or checksum-mismatched
source stops the stage with the path named (every source is checked before any is read). Ids
derive from content, so a repeat is the same record twice and is rejected as `duplicate_id`.

Sharded by source (tasks/common/engine.py): a worker runs one connector (parsing, image decoding
and checks) and returns its items and the images it met; the driver walks the sources in name
order, rejects repeated ids, and stores each image once by content hash (so no two workers ever
write the same file, and `images_stored`/`images_reused` count as a single pass would).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tasks.common.config import resolve
from tasks.common.engine import EngineConfig, ShardLedger, map_shards
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
    # read caps (tasks/common/io.py): over-cap input is quarantined while it streams, never held
    max_record_bytes: int = 64 << 20     # one JSONL line, PubTator block, MEDLINE citation
    max_file_bytes: int = 256 << 20      # a file parsed whole (JSON manifest, XML, DICOM, image, .npz array)
    max_inflated_bytes: int = 8 << 30    # a .gz after inflating
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


@dataclass(frozen=True)
class SourceShard:
    """One source to read: what a worker needs (no paths relative to a working directory)."""
    name: str
    path: str
    license: str
    ref_prefix: str                  # the image paths records carry (the final output folder)
    max_image_pixels: int
    max_text_bytes: int
    max_records: int                 # 0 = all
    max_record_bytes: int
    max_file_bytes: int
    max_inflated_bytes: int


@dataclass
class SourceItems:
    """A source's items in connector order, and the images met: (sha256, relative path, bytes or
    None when this shard shipped the same bytes already), one per image reference."""
    items: list[tuple[dict | None, dict | None, int]]
    images: list[tuple[str, str, bytes | None]]


class ShippingImageStore(ImageStore):
    """The connector's image store inside a worker: validates and hashes as ImageStore does, and
    keeps the bytes for the driver instead of writing them (one writer per output folder)."""

    def __init__(self, ref_prefix: str, max_pixels: int):
        super().__init__(Path("."), ref_prefix, max_pixels)
        self.puts: list[tuple[str, str, bytes | None]] = []
        self._shipped: set[str] = set()

    def _put(self, data: bytes, ext: str) -> dict:
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}.{ext}"
        self.puts.append((sha, rel, None if sha in self._shipped else data))
        self._shipped.add(sha)
        return {"path": f"{self.ref_prefix}/{rel}", "sha256": sha}


def iter_source(shard: SourceShard, images: ImageStore):
    """The items of one source as its connector yields them, up to `max_records`."""
    ctx = SourceContext(name=shard.name, path=Path(shard.path), images=images,
                        max_text_bytes=shard.max_text_bytes, license=shard.license,
                        max_record_bytes=shard.max_record_bytes, max_file_bytes=shard.max_file_bytes,
                        max_inflated_bytes=shard.max_inflated_bytes)
    for n, item in enumerate(CONNECTORS[shard.name](ctx), 1):
        yield item
        if shard.max_records and n >= shard.max_records:
            break


def read_source(shard: SourceShard, _shared=None) -> SourceItems:
    """Every item of one source (the map function: runs in a worker)."""
    images = ShippingImageStore(shard.ref_prefix, shard.max_image_pixels)
    items = list(iter_source(shard, images))
    return SourceItems(items, images.puts)


def store_images(images: ImageStore, puts: list[tuple[str, str, bytes | None]]) -> None:
    """Write each image the first time its hash is met; count the rest as reused (as ImageStore)."""
    for _sha, rel, data in puts:
        path = images.root / rel
        if path.exists():
            images.reused += 1
            continue
        if data is None:   # shipped earlier by the same shard, so written above already
            raise RuntimeError(f"image {rel} has no bytes and is not stored")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        images.stored += 1


def collect(cfg: CollectConfig, sink: StageSink, images: ImageStore,
            engine: EngineConfig | None = None) -> tuple[dict, list[dict]]:
    """Run every enabled connector into `sink` (one shard per source, run by `engine`); returns
    (per-source counts, per-shard accounting)."""
    engine = engine or EngineConfig(workers=1)
    enabled = [(name, src) for name, src in sorted(cfg.sources.items()) if src.enabled]
    provenance, shards = {}, []
    for name, src in enabled:
        path = source_path(cfg, src)
        verify_source(name, path, src.sha256)
        provenance[name] = {"path": str(src.path), "url": src.url, "sha256": src.sha256}
        shards.append(SourceShard(name, str(path), src.license or LICENSES.get(name, ""), images.ref_prefix,
                                  images.max_pixels, cfg.max_text_bytes, cfg.max_records_per_source,
                                  cfg.max_record_bytes, cfg.max_file_bytes, cfg.max_inflated_bytes))
    per_source: dict[str, Counter] = {}
    seen_ids: set[str] = set()  # ids derive from content: a repeat is the same record twice
    ledger = ShardLedger(sink)
    if engine.in_process(len(shards)):
        # in the stage's process: stream each connector straight into the sink and the image store,
        # one item in memory at a time (a worker instead returns its source whole)
        results = ((shard, iter_source(shard, images)) for shard in shards)
    else:
        def shipped(shard, result):
            store_images(images, result.images)
            return shard, result.items
        results = (shipped(shard, r) for shard, r in zip(shards, map_shards(read_source, shards, cfg=engine)))
    for index, (shard, items) in enumerate(results):
        name = shard.name
        counts = per_source.setdefault(name, Counter())
        with ledger.shard(index, source=name):
            for record, rej, nbytes in items:
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
                                rej[key] = rej[key].replace(shard.path, "${pydicom}/data/test_files")
                    sink.reject(rej)
                    counts["rejected"] += 1
    write_json(sink.out_dir / "sources.json", provenance)
    return {name: dict(c) for name, c in per_source.items()}, ledger.rows()
