"""The `clean` chain: normalize -> PHI scrub -> rule filters -> exact dedup -> near dedup ->
decontamination -> chunking, over a stream of records.

`clean_corpus` is what the stage (tasks/clean.py) runs: the collect stage's shards through
`clean_records`, plus the decontamination report files. `clean_records` only needs an iterable of
(record, rejection) pairs and a StageSink, so tests run it on in-memory records. Every input
is counted once and ends either kept (possibly as several chunks) or rejected with a reason.

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
from typing import Iterable, Literal

from eval.benchmarks import byo_spec
from tasks.common.config import resolve
from tasks.common.io import dumps, iter_records, shard_paths, write_json, write_jsonl
from tasks.common.records import rejection
from tasks.corpus.clean import filters
from tasks.corpus.clean.chunking import chunk_record
from tasks.corpus.clean.decontam import BUNDLED, BenchmarkIndex, Hit
from tasks.corpus.clean.dedup import ExactDedup, NearDedup
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


def clean_records(pairs: Iterable[tuple[dict | None, dict | None]], sink, cfg: CleanConfig, *,
                  index: BenchmarkIndex | None = None) -> tuple[dict, list[dict]]:
    """Run the chain over `pairs` (from io.iter_records) into `sink`.

    Returns (extra summary counts, decontamination report rows). `index` defaults to one built
    from cfg (tests pass a prebuilt one to avoid rebuilding it).
    """
    index = index if index is not None else build_index(cfg)
    fparams_by_source: dict[str, filters.FilterParams] = {}
    exact = ExactDedup()
    near = NearDedup(cfg.minhash.threshold, cfg.minhash.num_perm, cfg.minhash.shingle_words,
                     seed=cfg.seed, num_bands=cfg.minhash.num_bands)
    phi_total: Counter = Counter()
    records_with_phi = chunks_written = records_chunked = images_unreadable = 0
    image_hits_kept = 0
    decontam_records: Counter = Counter()   # benchmark -> rejected (or flagged) records
    report: list[dict] = []

    for rec, rej in pairs:
        if rej is not None:  # a bad line or invalid record upstream: count and quarantine it
            sink.count_read()
            sink.reject(rej)
            continue
        sink.count_read(1, len(rec["text"].encode("utf-8")))

        text = normalize_text(rec["text"])
        text, phi = scrub_phi(text)
        if phi:
            phi_total.update(phi)
            records_with_phi += 1
        images = rec["images"]

        fparams = fparams_by_source.get(rec["source"])
        if fparams is None:
            fparams = fparams_by_source[rec["source"]] = cfg.filter_params(rec["source"])
        # Structured records (an image, or attributes only: DICOM headers whose pixels could not
        # be decoded) are judged by that content, not by the length of their text.
        attributes = rec["meta"].get("attributes")
        structured = bool(images) or bool(attributes)
        reason = filters.check(text, fparams, has_images=structured)
        if reason:
            sink.reject(rejection(reason, filters.explain(text, reason, fparams), record=rec))
            continue

        content_keys = [img["sha256"] for img in images] or ([dumps(attributes)] if attributes else [])
        first = exact.check_add(rec["id"], text, content_keys)
        if first is not None:
            sink.reject(rejection("exact_duplicate", f"duplicate of {first}", record=rec))
            continue
        # Near dedup is for documents; the short text of a structured record is not one.
        if not structured:
            dup = near.check_add(rec["id"], text)
            if dup is not None:
                sink.reject(rejection("near_duplicate",
                                      f"near-duplicate of {dup[0]} (estimated Jaccard {dup[1]:.3f})",
                                      record=rec))
                continue

        text_hits = index.check_text(text, normalized=True)
        image_hits: list[Hit] = []
        for img in images:
            try:
                image_hits += index.check_image(img["sha256"], resolve(img["path"]))
            except (OSError, ValueError):
                images_unreadable += 1  # sha256 was still checked; only the phash is missing
        hits = text_hits + image_hits
        report.extend(_report_row(rec, h) for h in hits)
        for bench in sorted({h.benchmark for h in hits}):
            decontam_records[bench] += 1
        if text_hits or (image_hits and cfg.decontam.image_action == "reject"):
            first_hit = hits[0]
            sink.reject(rejection(
                "decontaminated",
                f"{len(hits)} benchmark hit(s), first {first_hit.benchmark}/{first_hit.item} "
                f"({first_hit.kind}: {first_hit.evidence[:80]})", record=rec))
            continue
        image_hits_kept += bool(image_hits)

        cleaned = {**rec, "text": text}
        if phi:
            cleaned["meta"] = {**rec["meta"], "phi_scrubbed": dict(sorted(phi.items()))}
        out = chunk_record(cleaned, cfg.chunk.max_words, cfg.chunk.overlap_words)
        if len(out) > 1:
            records_chunked += 1
            chunks_written += len(out)
        sink.keep_as(out)

    extra = {
        **{f"phi_{k}": phi_total.get(k, 0) for k in PHI_KINDS},
        "records_with_phi": records_with_phi,
        "records_chunked": records_chunked,
        "chunks_written": chunks_written,
        "exact_dedup_unique": len(exact),
        "near_dedup_indexed": len(near),
        "near_dedup_bands": near.num_bands,
        "near_dedup_candidates_checked": near.candidates_checked,
        "images_unreadable": images_unreadable,
        "decontam_report_rows": len(report),
        "decontam_records_by_benchmark": dict(sorted(decontam_records.items())),
        "decontam_image_hits_kept": image_hits_kept,
        "benchmark_index": index.stats,
    }
    return extra, report


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
                 index: BenchmarkIndex | None = None) -> tuple[dict, dict]:
    """The stage's work: `shards` through the chain into `sink`, the decontamination index rebuilt
    from the benchmark files (unless the caller built it first), and `out`/REPORT (one row per
    record x benchmark item hit, sorted) and `out`/REPORT_SUMMARY written. Returns (summary
    extras, report summary)."""
    index = index if index is not None else build_index(cfg)
    extra, report = clean_records(iter_records(shards), sink, cfg, index=index)
    report.sort(key=lambda r: (r["record_id"], r["benchmark"], r["benchmark_item"], r["kind"]))
    write_jsonl(out / REPORT, report)
    rsummary = report_summary(report, index.stats, index.checked)
    write_json(out / REPORT_SUMMARY, rsummary)
    return extra, rsummary
