"""Stage `clean`: dedup, filter, normalize, chunk, scrub PHI and decontaminate (paper §3.1).

Run:   python -m tasks.clean [key=value ...]      (e.g. minhash.threshold=0.7 engine.workers=4)
DVC:   dvc repro clean

Reads data/collect/kept/part-*.jsonl and applies, per record in input order (see
tasks/corpus/clean/run.py): unicode/whitespace normalization and IU-Xray `XXXX` placeholders ->
PHI scrubbing (e-mail, phone, record ids, secret-bearing URLs) -> Gopher-style rule filters ->
global exact dedup -> MinHash-LSH near dedup (rensa) -> decontamination against every bundled
benchmark test split and every bring-your-own benchmark listed in `decontam.byo` (eval's JSONL
format, indexed under its name with eval's item ids; 13-gram text overlap; image sha256 and
perceptual hash) -> sliding-window chunking.

Sharded (tasks/common/engine.py): Ray workers do the per-record work of `engine.shard_records`
records each (normalize, PHI, filters, exact-dedup key, MinHash signature, decontamination hits,
chunks); the driver walks the prepared records in input order and takes every order-dependent
decision (exact and near dedup against what was kept before, decontaminated or kept), so the outputs
do not depend on the number of workers. The decontamination index is built once here and shipped to
the workers once.

Output (data/clean/): kept/part-*.jsonl (chunks of long documents carry meta.parent_id and
chunk_index), rejected/part-*.jsonl (reason per record: too_short, symbol_ratio, digit_ratio,
dup_line_ratio, top_ngram_ratio, dup_ngram_ratio, exact_duplicate, near_duplicate, decontaminated, or an
upstream record error), decontamination_report.jsonl (one row per record x benchmark item hit, sorted),
decontamination_summary.json (index stats, hits per benchmark and kind, and `benchmarks_checked`:
items indexed and source, bundled or byo, of every benchmark checked; eval reports any other
benchmark as not checked), summary.json; read/kept/rejected per shard go to MLflow (shards.json).

Why the choices: first occurrence wins in input order and every hash is process-stable, so a
re-run is byte-identical; the decontamination index is rebuilt from the benchmark files on each
run (a few seconds) rather than cached, so it can never be stale; all counts and the per-benchmark
hits go to MLflow so contamination is visible per run, not only on disk. The index is built
before any record is read, so a missing benchmark file (bundled, or one `decontam.byo` lists)
stops the stage with the file named and nothing written.
"""

from __future__ import annotations

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.corpus.clean.run import REPORT, REPORT_SUMMARY, CleanConfig, build_index, clean_corpus, input_shards


def run(cfg: CleanConfig, ctx: StageContext) -> StageResult:
    try:
        shards = input_shards(cfg)
        bench_index = build_index(cfg)
    except FileNotFoundError as e:
        raise SystemExit(f"clean: {e}") from None
    sink = ctx.sink(cfg.shard_size)
    extra, rsummary = clean_corpus(cfg, shards, sink, ctx.out, index=bench_index, engine=ctx.engine)
    index = rsummary["index"]
    checked = rsummary["benchmarks_checked"]
    metrics = {
        **{f"decontam.rows.{b}": n for b, n in rsummary["rows_by_benchmark"].items()},
        **{f"decontam.records.{b}": n for b, n in rsummary["records_by_benchmark"].items()},
        **{f"decontam.kind.{k}": n for k, n in rsummary["rows_by_kind"].items()},
        "decontam.benchmark_items_hit": rsummary["benchmark_items_hit"],
        "decontam.index_ngrams": index.get("ngrams_indexed", 0),
        "decontam.index_images": index.get("images_indexed", 0),
        "decontam.benchmark_malformed_lines": index.get("malformed_total", 0),
        "decontam.benchmarks_checked": len(checked),
        **{f"decontam.items_checked.{b}": c["items"] for b, c in checked.items()},
    }
    line = (f"read={sink.read} kept={sink.kept_inputs} rejected={sink.rejected.count} "
            f"records_written={sink.kept.count} decontaminated={sink.reasons.get('decontaminated', 0)}")
    return StageResult(summary=extra, metrics=metrics, line=line,
                       artifacts=[(REPORT, "decontamination"), (REPORT_SUMMARY, "decontamination")])


STAGE = Stage("clean", CleanConfig, run, sharded=True)

if __name__ == "__main__":
    main(STAGE)
