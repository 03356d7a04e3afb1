"""The `clean` chain: normalize -> PHI scrub -> rule filters -> exact dedup -> near dedup ->
decontamination -> chunking, over a stream of records.

`clean_corpus` is what the stage (tasks/clean.py) runs: the collect stage's part files cut into
shards, each shard's records through `Preparer` (the per-record work: normalize, PHI, filters,
dedup keys and MinHash signatures, decontamination hits, chunks) in the engine's workers
(tasks/common/engine.py), then every prepared record in input order through `Decider` (exact and
near dedup, the decontamination decision, kept or rejected) here, plus the decontamination report
files. `clean_records` runs both parts in this process over an iterable of (record, rejection)
pairs, so tests run it on in-memory records. Every input is counted once and ends either kept
(possibly as several chunks) or rejected with a reason.

Order matters and is chosen by cost and by meaning: normalization first so every hash and rule
sees canonical text; PHI scrubbing before anything is stored or indexed; cheap rules before the
dedup indexes so junk never occupies them; dedup before decontamination (a duplicate is rejected
as such even if it is also contaminated: it is cheaper and the reason stays the first that
applies); chunking last, on kept records only.

Deterministic: no randomness beyond the fixed MinHash seed, first-occurrence-wins in input
order, hashes stable across processes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Literal

from eval.benchmarks import byo_spec
from tasks.common.config import resolve
from tasks.common.engine import EngineConfig, Shard, ShardLedger, iter_shard_records, map_shards, plan_jsonl_shards
from tasks.common.io import dumps, shard_paths, write_json, write_jsonl
from tasks.common.records import rejection
from tasks.corpus.clean import filters
from tasks.corpus.clean.chunking import chunk_record
from tasks.corpus.clean.decontam import BUNDLED, BenchmarkIndex, Hit
from tasks.corpus.clean.dedup import ExactDedup, NearDedup, exact_key
from tasks.corpus.clean.normalize import normalize_text
from tasks.corpus.clean.phi import KINDS as PHI_KINDS
from tasks.corpus.clean.phi import scrub_phi

REPORT = "decontamination_report.jsonl"
REPORT_SUMMARY = "decontamination_summary.json"


@dataclass
class MinhashConfig:
    num_perm: int = 128
    shingle_words: int = 5
    threshold: float = 0.8
    num_bands: int = 0            # 0 = chosen from threshold/num_perm (see dedup.optimal_bands)


@dataclass
class ChunkConfig:
    max_words: int = 512
    overlap_words: int = 64


@dataclass
class ByoBenchmarkConfig:
    """A bring-your-own benchmark to decontaminate against: the shape of eval's `byo` entries, so
    one entry can be copied between the two sections."""
    path: str                            # JSONL file in eval's BYO format, relative to the project root
    family: str                          # mcq | yesno | short | vqa | longform | ocr
    category: str = ""                   # eval's report category; not used here


@dataclass
class DecontamConfig:
    benchmarks_dir: str = "benchmarks"   # relative to data_root
    ngram: int = 13
    phash_max_distance: int = 4
    max_items_per_ngram: int = 3         # n-grams in more benchmark items are boilerplate
    # reject: a record whose image is a test image is dropped; report: listed, but kept.
    image_action: Literal["reject", "report"] = "reject"
    # name -> bring-your-own benchmark indexed beside the bundled ones, under that name.
    byo: dict[str, ByoBenchmarkConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, b in self.byo.items():
            if name in BUNDLED:
                raise ValueError(f"byo.{name}: is a bundled benchmark, checked already")
            try:  # eval's rules for names and families: what is accepted here, eval can report on
                byo_spec(name, b.path, b.family, b.category or None)
            except ValueError as e:
                raise ValueError(f"byo.{name}: {e}") from None


@dataclass
class CleanConfig(filters.FilterParams):
    """The stage config: the rule-filter thresholds (inherited from FilterParams) plus I/O,
    dedup, chunking and decontamination settings."""
    in_dir: str = "data/collect"
    out_dir: str = "data/clean"
    shard_size: int = 50_000
    # Sources whose complete documents are legitimately short (a normal chest X-ray report is
    # ~100 chars: one in three IU-Xray reports is under 200) get their own floor.
    min_chars_by_source: dict[str, int] = field(default_factory=dict)
    minhash: MinhashConfig = field(default_factory=MinhashConfig)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    data_root: str = "../shared/data"
    seed: int = 1234

    def filter_params(self, source: str | None = None) -> filters.FilterParams:
        """The thresholds for one source (its own length floor, if it has one)."""
        shared = {f.name: getattr(self, f.name) for f in fields(filters.FilterParams)}
        return filters.FilterParams(**{**shared, "min_chars": self.min_chars_by_source.get(source, self.min_chars)})

    def benchmarks_path(self) -> Path:
        p = Path(self.decontam.benchmarks_dir)
        return p if p.is_absolute() else resolve(self.data_root) / p


def build_index(cfg: CleanConfig) -> BenchmarkIndex:
    """The index of the bundled benchmarks and the ones `decontam.byo` lists; FileNotFoundError
    naming the param when a listed file is missing."""
    d = cfg.decontam
    byo = []
    for name, b in sorted(d.byo.items()):
        path = resolve(b.path)
        if not path.is_file():
            raise FileNotFoundError(f"decontam.byo.{name}.path: benchmark file missing: {b.path} "
                                    f"(looked for {path})")
        byo.append((name, path, b.family))
    return BenchmarkIndex.build(cfg.benchmarks_path(), ngram=d.ngram,
                                phash_max_distance=d.phash_max_distance,
                                max_items_per_ngram=d.max_items_per_ngram, byo=byo)


def _report_row(rec: dict, hit: Hit) -> dict:
    return {"record_id": rec["id"], "source": rec["source"], "benchmark": hit.benchmark,
            "benchmark_item": hit.item, "kind": hit.kind, "evidence": hit.evidence}


@dataclass(slots=True)
class Prepared:
    """One input after the per-record work (a worker's part): everything the driver's ordered
    decisions (dedup, decontamination, kept or rejected) need, nothing they decide."""
    rec: dict | None
    upstream: dict | None = None          # the upstream rejection of a bad line / invalid record
    nbytes: int = 0
    phi: dict | None = None
    filtered: dict | None = None          # the rule filters' rejection
    exact_key: bytes = b""
    minhash: Any = None                   # RMinHash of a document (None: structured or no shingles)
    structured: bool = False
    hits: list[Hit] = field(default_factory=list)
    text_hit: bool = False
    image_hit: bool = False
    images_unreadable: int = 0
    chunks: list[dict] = field(default_factory=list)


class Preparer:
    """The per-record part of the chain: normalize -> PHI -> rule filters -> dedup keys (exact key,
    MinHash) -> decontamination hits -> chunks. Pure: the same input gives the same Prepared in any
    process, so it runs in the engine's workers."""

    def __init__(self, cfg: CleanConfig, index: BenchmarkIndex):
        self.cfg, self.index = cfg, index
        self.fparams_by_source: dict[str, filters.FilterParams] = {}
        self.signer = NearDedup(cfg.minhash.threshold, cfg.minhash.num_perm, cfg.minhash.shingle_words,
                                seed=cfg.seed, num_bands=cfg.minhash.num_bands)

    def __call__(self, rec: dict | None, rej: dict | None) -> Prepared:
        if rej is not None:
            return Prepared(None, upstream=rej)
        cfg, index = self.cfg, self.index
        p = Prepared(rec, nbytes=len(rec["text"].encode("utf-8")))
        text = normalize_text(rec["text"])
        text, p.phi = scrub_phi(text)
        images = rec["images"]
        fparams = self.fparams_by_source.get(rec["source"])
        if fparams is None:
            fparams = self.fparams_by_source[rec["source"]] = cfg.filter_params(rec["source"])
        # Structured records (an image, or attributes only: DICOM headers whose pixels could not
        # be decoded) are judged by that content, not by the length of their text.
        attributes = rec["meta"].get("attributes")
        p.structured = bool(images) or bool(attributes)
        reason = filters.check(text, fparams, has_images=p.structured)
        if reason:
            p.filtered = rejection(reason, filters.explain(text, reason, fparams), record=rec)
            return p
        content_keys = [img["sha256"] for img in images] or ([dumps(attributes)] if attributes else [])
        p.exact_key = exact_key(text, content_keys)
        # Near dedup is for documents; the short text of a structured record is not one.
        if not p.structured:
            p.minhash = self.signer.minhash(text)
        text_hits = index.check_text(text, normalized=True)
        image_hits: list[Hit] = []
        for img in images:
            try:
                image_hits += index.check_image(img["sha256"], resolve(img["path"]))
            except (OSError, ValueError):
                p.images_unreadable += 1  # sha256 was still checked; only the phash is missing
        p.hits, p.text_hit, p.image_hit = text_hits + image_hits, bool(text_hits), bool(image_hits)
        cleaned = {**rec, "text": text}
        if p.phi:
            cleaned["meta"] = {**rec["meta"], "phi_scrubbed": dict(sorted(p.phi.items()))}
        p.chunks = chunk_record(cleaned, cfg.chunk.max_words, cfg.chunk.overlap_words)
        return p


class Decider:
    """The ordered part of the chain, in the driver: exact and near dedup (first occurrence in
    input order wins), the decontamination decision, kept or rejected into the sink, the report."""

    def __init__(self, cfg: CleanConfig, sink):
        self.cfg, self.sink = cfg, sink
        self.exact = ExactDedup()
        self.near = NearDedup(cfg.minhash.threshold, cfg.minhash.num_perm, cfg.minhash.shingle_words,
                              seed=cfg.seed, num_bands=cfg.minhash.num_bands)
        self.phi_total: Counter = Counter()
        self.records_with_phi = self.chunks_written = self.records_chunked = self.images_unreadable = 0
        self.image_hits_kept = 0
        self.decontam_records: Counter = Counter()   # benchmark -> rejected (or flagged) records
        self.report: list[dict] = []

    def add(self, p: Prepared) -> None:
        sink, rec = self.sink, p.rec
        if p.upstream is not None:  # a bad line or invalid record upstream: count and quarantine it
            sink.count_read()
            sink.reject(p.upstream)
            return
        sink.count_read(1, p.nbytes)
        if p.phi:
            self.phi_total.update(p.phi)
            self.records_with_phi += 1
        if p.filtered is not None:
            sink.reject(p.filtered)
            return
        first = self.exact.check_add_key(rec["id"], p.exact_key)
        if first is not None:
            sink.reject(rejection("exact_duplicate", f"duplicate of {first}", record=rec))
            return
        if not p.structured:
            dup = self.near.check_add_signature(rec["id"], p.minhash)
            if dup is not None:
                sink.reject(rejection("near_duplicate",
                                      f"near-duplicate of {dup[0]} (estimated Jaccard {dup[1]:.3f})",
                                      record=rec))
                return
        self.images_unreadable += p.images_unreadable
        hits = p.hits
        self.report.extend(_report_row(rec, h) for h in hits)
        for bench in sorted({h.benchmark for h in hits}):
            self.decontam_records[bench] += 1
        if p.text_hit or (p.image_hit and self.cfg.decontam.image_action == "reject"):
            first_hit = hits[0]
            sink.reject(rejection(
                "decontaminated",
                f"{len(hits)} benchmark hit(s), first {first_hit.benchmark}/{first_hit.item} "
                f"({first_hit.kind}: {first_hit.evidence[:80]})", record=rec))
            return
        self.image_hits_kept += p.image_hit
        if len(p.chunks) > 1:
            self.records_chunked += 1
            self.chunks_written += len(p.chunks)
        sink.keep_as(p.chunks)

    def extra(self, index: BenchmarkIndex) -> dict:
        return {
            **{f"phi_{k}": self.phi_total.get(k, 0) for k in PHI_KINDS},
            "records_with_phi": self.records_with_phi,
            "records_chunked": self.records_chunked,
            "chunks_written": self.chunks_written,
            "exact_dedup_unique": len(self.exact),
            "near_dedup_indexed": len(self.near),
            "near_dedup_bands": self.near.num_bands,
            "near_dedup_candidates_checked": self.near.candidates_checked,
            "images_unreadable": self.images_unreadable,
            "decontam_report_rows": len(self.report),
            "decontam_records_by_benchmark": dict(sorted(self.decontam_records.items())),
            "decontam_image_hits_kept": self.image_hits_kept,
            "benchmark_index": index.stats,
        }


def clean_records(pairs: Iterable[tuple[dict | None, dict | None]], sink, cfg: CleanConfig, *,
                  index: BenchmarkIndex | None = None) -> tuple[dict, list[dict]]:
    """Run the chain over `pairs` (from io.iter_records) into `sink`, in this process.

    Returns (extra summary counts, decontamination report rows). `index` defaults to one built
    from cfg (tests pass a prebuilt one to avoid rebuilding it).
    """
    index = index if index is not None else build_index(cfg)
    prepare, decide = Preparer(cfg, index), Decider(cfg, sink)
    for rec, rej in pairs:
        decide.add(prepare(rec, rej))
    return decide.extra(index), decide.report


def prepare_shard(shard: Shard, shared: tuple[CleanConfig, BenchmarkIndex]) -> list[Prepared]:
    """The engine's map function: every input of one shard through the per-record chain."""
    cfg, index = shared
    prepare = Preparer(cfg, index)
    return [prepare(rec, rej) for rec, rej in iter_shard_records(shard)]


def input_shards(cfg: CleanConfig) -> list[Path]:
    """The collect stage's kept shards; FileNotFoundError when there are none."""
    shards = shard_paths(resolve(cfg.in_dir) / "kept")
    if not shards:
        raise FileNotFoundError(f"no input shards under {resolve(cfg.in_dir) / 'kept'}; run collect first")
    return shards


def report_summary(report: list[dict], index_stats: dict, benchmarks_checked: dict) -> dict:
    """The decontamination report in numbers: rows and records per benchmark and kind, the index,
    and the benchmarks checked (a benchmark absent there was not checked, which is not 0 hits)."""
    by_bench = Counter(r["benchmark"] for r in report)
    by_kind = Counter(r["kind"] for r in report)
    records: dict[str, set] = {}
    for r in report:
        records.setdefault(r["benchmark"], set()).add(r["record_id"])
    return {
        "rows": len(report),
        "rows_by_benchmark": dict(sorted(by_bench.items())),
        "rows_by_kind": dict(sorted(by_kind.items())),
        "records_by_benchmark": {b: len(ids) for b, ids in sorted(records.items())},
        "benchmark_items_hit": len({(r["benchmark"], r["benchmark_item"]) for r in report}),
        "benchmarks_checked": benchmarks_checked,
        "index": index_stats,
    }


def clean_corpus(cfg: CleanConfig, shards: list[Path], sink, out: Path,
                 index: BenchmarkIndex | None = None, engine: EngineConfig | None = None) -> tuple[dict, dict]:
    """The stage's work: `shards` (the collect stage's part files) through the chain into `sink`,
    the per-record part run by `engine` on shards of `engine.shard_records` records, the ordered
    part here; the decontamination index rebuilt from the benchmark files (unless the caller built
    it first), and `out`/REPORT (one row per record x benchmark item hit, sorted) and
    `out`/REPORT_SUMMARY written. Returns (summary extras with `shards`, report summary)."""
    engine = engine or EngineConfig(workers=1)
    index = index if index is not None else build_index(cfg)
    plan = plan_jsonl_shards(shards, engine.shard_records)
    decide, ledger = Decider(cfg, sink), ShardLedger(sink)
    for shard, prepared in zip(plan.shards, map_shards(prepare_shard, plan.shards, cfg=engine,
                                                       shared=(cfg, index))):
        with ledger.shard(shard.index):
            for p in prepared:
                decide.add(p)
    extra, report = decide.extra(index), decide.report
    extra["shards"] = ledger.rows()
    report.sort(key=lambda r: (r["record_id"], r["benchmark"], r["benchmark_item"], r["kind"]))
    write_jsonl(out / REPORT, report)
    rsummary = report_summary(report, index.stats, index.checked)
    write_json(out / REPORT_SUMMARY, rsummary)
    return extra, rsummary
