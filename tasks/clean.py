"""Stage `clean`: dedup, filter, normalize, chunk, scrub PHI and decontaminate (paper §3.1).

Run:   python -m tasks.clean [key=value ...]      (e.g. minhash.threshold=0.7 chunk.max_words=256)
DVC:   dvc repro clean

Reads data/collect/kept/part-*.jsonl and applies, per record in input order (see
tasks/corpus/clean/run.py): unicode/whitespace normalization and IU-Xray `XXXX` placeholders ->
PHI scrubbing (e-mail, phone, record ids, secret-bearing URLs) -> Gopher-style rule filters ->
global exact dedup -> MinHash-LSH near dedup (rensa) -> decontamination against every benchmark
test split (13-gram text overlap; image sha256 and perceptual hash) -> sliding-window chunking.

Output (data/clean/): kept/part-*.jsonl (chunks of long documents carry meta.parent_id and
chunk_index), rejected/part-*.jsonl (reason per record: too_short, symbol_ratio, digit_ratio,
dup_line_ratio, top_ngram_ratio, dup_ngram_ratio, exact_duplicate, near_duplicate, decontaminated, or an
upstream record error), decontamination_report.jsonl (one row per record x benchmark item hit, sorted),
decontamination_summary.json (index stats, hits per benchmark and kind), summary.json.

Why the choices: first occurrence wins in input order and every hash is process-stable, so a
re-run is byte-identical; the decontamination index is rebuilt from the benchmark files on each
run (a few seconds) rather than cached, so it can never be stale; all counts and the per-benchmark
hits go to MLflow so contamination is visible per run, not only on disk.
"""

from __future__ import annotations

import sys
from collections import Counter

from tasks.common.config import load_stage_config, project_root, resolve
from tasks.common.io import StageSink, atomic_output_dir, dumps, iter_records, shard_paths, write_json
from tasks.common.tracking import stage_run
from tasks.corpus.clean.run import CleanConfig, build_index, clean_records

REPORT = "decontamination_report.jsonl"
REPORT_SUMMARY = "decontamination_summary.json"


def _relative_locators(pairs, root: str):
    """Rejections of bad input lines carry absolute shard paths; outputs must not depend on
    where the project lives, so make them project-relative."""
    for rec, rej in pairs:
        if rej is not None and isinstance(rej.get("locator"), str):
            rej["locator"] = rej["locator"].replace(root + "/", "")
        yield rec, rej


def report_summary(report: list[dict], index_stats: dict) -> dict:
    by_bench = Counter(r["benchmark"] for r in report)
    by_kind = Counter(r["kind"] for r in report)
    records = {}
    for r in report:
        records.setdefault(r["benchmark"], set()).add(r["record_id"])
    return {
        "rows": len(report),
        "rows_by_benchmark": dict(sorted(by_bench.items())),
        "rows_by_kind": dict(sorted(by_kind.items())),
        "records_by_benchmark": {b: len(ids) for b, ids in sorted(records.items())},
        "benchmark_items_hit": len({(r["benchmark"], r["benchmark_item"]) for r in report}),
        "index": index_stats,
    }


def main(argv: list[str] | None = None) -> dict:
    cfg, profile = load_stage_config("clean", CleanConfig, sys.argv[1:] if argv is None else argv)
    shards = shard_paths(resolve(cfg.in_dir) / "kept")
    if not shards:
        raise SystemExit(f"clean: no input shards under {resolve(cfg.in_dir) / 'kept'}; run collect first")
    with stage_run("clean", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out_dir)) as out:
        sink = StageSink(out, shard_size=cfg.shard_size)
        index = build_index(cfg)
        pairs = _relative_locators(iter_records(shards), str(project_root()))
        extra, report = clean_records(pairs, sink, cfg, index=index)

        report.sort(key=lambda r: (r["record_id"], r["benchmark"], r["benchmark_item"], r["kind"]))
        with open(out / REPORT, "w", encoding="utf-8") as f:
            f.writelines(dumps(r) + "\n" for r in report)
        rsummary = report_summary(report, index.stats)
        write_json(out / REPORT_SUMMARY, rsummary)

        summary = sink.close(**extra)
        tracker.log_sink(sink, summary)
        tracker.log_metrics({
            **{f"decontam.rows.{b}": n for b, n in rsummary["rows_by_benchmark"].items()},
            **{f"decontam.records.{b}": n for b, n in rsummary["records_by_benchmark"].items()},
            **{f"decontam.kind.{k}": n for k, n in rsummary["rows_by_kind"].items()},
            "decontam.benchmark_items_hit": rsummary["benchmark_items_hit"],
            "decontam.index_ngrams": index.stats.get("ngrams_indexed", 0),
            "decontam.index_images": index.stats.get("images_indexed", 0),
            "decontam.benchmark_malformed_lines": index.stats.get("malformed_total", 0),
        })
        tracker.log_artifact(out / REPORT, "decontamination")
        tracker.log_artifact(out / REPORT_SUMMARY, "decontamination")
    print(f"clean: read={summary['read']} kept={summary['kept']} rejected={summary['rejected']} "
          f"records_written={summary['records_written']} "
          f"decontaminated={summary['rejected_by_reason'].get('decontaminated', 0)}")
    return summary


if __name__ == "__main__":
    main()
