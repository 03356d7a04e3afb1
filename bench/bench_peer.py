"""Peer comparison: the clean stage's rule filters and MinHash near-dedup against datatrove's
Gopher quality filter, Gopher repetition filter and MinHash dedup, on the default corpus.

Run:   nice -n 10 .venv/bin/python bench/bench_peer.py [--profile default|tiny] [--corpus DIR]
       (--corpus: an existing collect output dir with kept/part-*.jsonl; default: `collect` is run
       into a temporary directory first, as bench/bench_stages.py does)

Setup, once: datatrove runs in a subprocess of its own virtual environment. `pip install
--dry-run datatrove==0.10.1 spacy==3.8.18` in .venv changes no pinned package (it would add
datatrove, humanize, loguru and, for spaCy, 14 more), but English word splitting in datatrove
0.10.1 is spaCy's blank "en" tokenizer, so the peer would bring ~17 packages the pipeline does not
use into requirements.lock; it stays out, in .venv-peer (if .venv itself ever has datatrove and
spaCy, the bench uses it instead):

    python -m venv .venv-peer
    .venv-peer/bin/pip install datatrove==0.10.1 spacy==3.8.18 xxhash==3.8.2 tokenizers==0.23.3

(datatrove imports `tokenizers` from its dedup package and `xxhash` for its MinHash default hash,
but does not declare them.) Without .venv-peer the datatrove rows are skipped with that message.

What runs, all single process, one core, on the same texts: every text record of the collect
output (image and DICOM-attribute records are skipped: datatrove has no notion of them), after
the clean stage's own normalization and PHI scrubbing (what its filters and MinHash see):

- ours, rules:      tasks.corpus.clean.filters.check, all six rules, per-source thresholds;
- ours, repetition: only the repetition rules (duplicated lines, top n-gram, duplicated n-gram);
- datatrove GopherQualityFilter / GopherRepetitionFilter: default (Gopher paper) thresholds,
  `filter()` per document; each alone, then both chained as a datatrove pipeline runs them
  (repetition only on what quality passed, reusing the cached word split);
- ours, MinHash:    tasks.corpus.clean.dedup.NearDedup (params.yaml clean.minhash), streaming;
- datatrove MinHash: MinhashDedupSignature -> MinhashDedupBuckets (one call per bucket) ->
  MinhashDedupCluster, writing its files to a temporary dir; LSH set to our bands x rows
  (16 x 8 = 128 hashes) and shingle size, its own text simplification and tokenizer.

MB/s per core = UTF-8 MB of the texts / CPU seconds of the process doing the work
(time.process_time; datatrove's measured inside its subprocess, imports and input reading
excluded on both sides). Wall seconds are printed too. Rejected / near-duplicate counts are per
method; "both" counts the documents our rules and datatrove's chain both reject.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SETUP = ("python -m venv .venv-peer && .venv-peer/bin/pip install datatrove==0.10.1 "
              "spacy==3.8.18 xxhash==3.8.2 tokenizers==0.23.3")
# Single-threaded numeric libraries on both sides: the figures are per core.
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "RAYON_NUM_THREADS")}


# ---- the corpus, shared with bench_near_dup_quality.py and bench_scaling.py ------------------
def project_env(work: Path) -> None:
    """Run from the project root with MLflow in `work`, so data/ and mlflow.db stay untouched."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MEDX_MLFLOW_ARTIFACTS"] = (work / "artifacts").as_uri()


def engine_supported() -> bool:
    """Whether the stages take `engine.workers=N` (tasks/common/engine.py, split off in stage.main)."""
    import dataclasses
    try:
        from tasks.common.engine import EngineConfig
    except ImportError:
        return False
    return "workers" in {f.name for f in dataclasses.fields(EngineConfig)}


def engine_argv(workers: int = 1) -> list[str]:
    """The override that runs a stage on `workers` processes; [] where stages have no engine."""
    return [f"engine.workers={workers}"] if engine_supported() else []


def collect_corpus(work: Path, profile: str = "default") -> Path:
    """The project's `collect` stage into `work`/collect; returns that dir (kept/ inside)."""
    import importlib

    from tasks.common.stage import main as run_stage

    out = work / "collect"
    t0 = time.perf_counter()
    summary = run_stage(importlib.import_module("tasks.collect").STAGE,
                        [f"profile={profile}", f"out_dir={out}", *engine_argv(1)])
    print(f"collect ({profile}): {summary['kept']} records in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def text_documents(collect_dir: Path) -> list[dict]:
    """Text records of a collect output as the clean stage's filters see them: normalized, PHI
    scrubbed. Each: {id, source, text}; structured records (images, DICOM attributes) left out."""
    from tasks.common.io import iter_records, shard_paths
    from tasks.corpus.clean.normalize import normalize_text
    from tasks.corpus.clean.phi import scrub_phi

    docs = []
    for rec, rej in iter_records(shard_paths(collect_dir / "kept")):
        if rej is not None or rec["images"] or rec["meta"].get("attributes"):
            continue
        docs.append({"id": rec["id"], "source": rec["source"],
                     "text": scrub_phi(normalize_text(rec["text"]))[0]})
    return docs


def megabytes(texts) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def timed(fn, *args):
    """(result, cpu seconds, wall seconds) of fn(*args)."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, time.process_time() - c0, time.perf_counter() - w0


# ---- datatrove, driven from the project's venv ------------------------------------------------
def peer_python() -> str | None:
    """The interpreter that has datatrove + spaCy: this one if it has them (should they ever be
    locked), else .venv-peer's; None (with the setup command printed) when neither has."""
    probe = [sys.executable, "-c", "import datatrove, spacy, xxhash, tokenizers"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return sys.executable
    if PEER_PYTHON.exists():
        return str(PEER_PYTHON)
    print(f"datatrove rows skipped: no {PEER_PYTHON.relative_to(ROOT)}; create it with:\n  {PEER_SETUP}")
    return None


def run_datatrove(python: str, task: str, texts: list[str], work: Path, **opts) -> dict:
    """`task` (filters | minhash) on `texts` in a subprocess of `python` (see peer_python);
    returns the worker's JSON result."""
    work.mkdir(parents=True, exist_ok=True)
    inp, out = work / f"{task}.in.jsonl", work / f"{task}.out.json"
    with open(inp, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")
    args = [python, str(Path(__file__).resolve()), "--datatrove-worker", task,
            "--input", str(inp), "--output", str(out), "--work", str(work / task)]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(args, env={**os.environ, **ONE_THREAD, "PYTHONPATH": ""},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"datatrove {task} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def _worker_filters(texts: list[str], _args) -> dict:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

    def run(steps) -> dict:
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        c0, w0 = time.process_time(), time.perf_counter()
        reasons: dict[str, int] = {}
        rejected = []
        for i, doc in enumerate(docs):
            for step in steps:
                res = step.filter(doc)
                ok, why = res if isinstance(res, tuple) else (res, None)
                if not ok:
                    reasons[why or "unnamed"] = reasons.get(why or "unnamed", 0) + 1
                    rejected.append(i)
                    break
        return {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                "rejected": rejected, "reasons": dict(sorted(reasons.items()))}

    quality, repetition = GopherQualityFilter(), GopherRepetitionFilter()
    quality.filter(Document(text="warm up the tokenizer " * 20, id="w"))  # spaCy loads lazily
    return {"quality": run([quality]), "repetition": run([repetition]),
            "chain": run([quality, repetition])}


def _worker_minhash(texts: list[str], args) -> dict:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    cfg = MinhashConfig(n_grams=args.ngrams, num_buckets=args.buckets,
                        hashes_per_bucket=args.hashes_per_bucket, seed=args.seed)
    work = Path(args.work)
    sigs, dups, clusters = work / "sigs", work / "dups", work / "clusters"
    load_word_tokenizer("en").word_tokenize("warm up")  # spaCy loads lazily
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    times = {}

    def step(name, fn):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        times[name] = {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}

    step("signatures", lambda: MinhashDedupSignature(output_folder=str(sigs), config=cfg).run(iter(docs)))
    step("buckets", lambda: [MinhashDedupBuckets(input_folder=str(sigs), output_folder=str(dups), config=cfg)
                             .run(None, rank=b, world_size=cfg.num_buckets) for b in range(cfg.num_buckets)])
    step("clusters", lambda: MinhashDedupCluster(input_folder=str(dups), output_folder=str(clusters), config=cfg,
                                                 save_cluster_id=True).run(None, 0, 1))
    # Read back what the steps wrote (not timed): pairs per bucket, documents to remove, clusters.
    pairs = set()
    for f in sorted(dups.glob("*.dups")):
        data = f.read_bytes()
        for _f1, d1, _f2, d2 in struct.iter_unpack("<4I", data):
            pairs.add((min(d1, d2), max(d1, d2)))
    remove_file = clusters / "000000.remove"
    removed = [d for (d,) in struct.iter_unpack("<I", remove_file.read_bytes())] if remove_file.exists() else []
    cluster_file = clusters / "000000.clusters"
    cluster_of = ({d: c for d, c in struct.iter_unpack("<2I", cluster_file.read_bytes())}
                  if cluster_file.exists() else {})
    return {"times": times, "pairs": sorted(pairs), "removed": removed,
            "clusters": sorted(cluster_of.items())}


def datatrove_worker(argv: list[str]) -> None:
    """Entry point inside .venv-peer: imports nothing from the project."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--datatrove-worker", choices=("filters", "minhash"), required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ngrams", type=int, default=5)
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--hashes-per-bucket", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args(argv)
    from loguru import logger
    logger.remove()  # datatrove logs every step at INFO to stderr
    texts = [json.loads(line) for line in open(args.input, encoding="utf-8")]
    task = {"filters": _worker_filters, "minhash": _worker_minhash}[args.datatrove_worker]
    Path(args.output).write_text(json.dumps(task(texts, args)))


# ---- ours ------------------------------------------------------------------------------------
def ours_rules(docs: list[dict], cfg) -> dict:
    from tasks.corpus.clean import filters

    params = {}
    reasons: dict[str, int] = {}
    rejected = []
    for i, d in enumerate(docs):
        p = params.get(d["source"]) or params.setdefault(d["source"], cfg.filter_params(d["source"]))
        why = filters.check(d["text"], p)
        if why:
            reasons[why] = reasons.get(why, 0) + 1
            rejected.append(i)
    return {"rejected": rejected, "reasons": dict(sorted(reasons.items()))}


def ours_repetition_rules(docs: list[dict], cfg) -> dict:
    from tasks.corpus.clean import filters

    rules = (filters.rule_dup_line_ratio, filters.rule_top_ngram_ratio, filters.rule_dup_ngram_ratio)
    params = cfg.filter_params()
    reasons: dict[str, int] = {}
    rejected = []
    for i, d in enumerate(docs):
        for rule in rules:
            why = rule(d["text"], params)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
                rejected.append(i)
                break
    return {"rejected": rejected, "reasons": dict(sorted(reasons.items()))}


def ours_minhash(texts: list[str], cfg) -> dict:
    from tasks.corpus.clean.dedup import NearDedup

    m = cfg.minhash
    near = NearDedup(m.threshold, m.num_perm, m.shingle_words, seed=cfg.seed, num_bands=m.num_bands)
    dups = []  # (document, the earlier kept document it duplicates)
    for i, t in enumerate(texts):
        hit = near.check_add(str(i), t)
        if hit is not None:
            dups.append((i, int(hit[0])))
    return {"dups": dups, "bands": near.num_bands}


# ---- the table -------------------------------------------------------------------------------
def row(name: str, mb: float, cpu: float, wall: float, marked: int, note: str = "") -> None:
    print(f"{name:<40}{mb / cpu:>9.2f}{cpu:>9.1f}{wall:>9.1f}{marked:>10}  {note}", flush=True)


def header(what: str) -> None:
    print(f"\n{'':<40}{'MB/s/core':>9}{'cpu s':>9}{'wall s':>9}{what:>10}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--corpus", help="an existing collect output dir (kept/ inside); default: run collect")
    ap.add_argument("--max-docs", type=int, default=0, help="first N text documents only (0 = all)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project_env(work)
        from tasks.common.config import load_stage_config
        from tasks.corpus.clean.run import CleanConfig

        cfg, _ = load_stage_config("clean", CleanConfig, [f"profile={args.profile}"])
        collect_dir = Path(args.corpus) if args.corpus else collect_corpus(work, args.profile)
        docs = text_documents(collect_dir)
        if args.max_docs:
            docs = docs[:args.max_docs]
        texts = [d["text"] for d in docs]
        mb = megabytes(texts)
        m = cfg.minhash
        print(f"text documents: {len(docs)}, {mb:.1f} MB; cpus visible {os.cpu_count()}; "
              f"MinHash {m.num_perm} perms, {m.shingle_words}-word shingles, threshold {m.threshold}")
        peer = peer_python()

        header("rejected")
        rules, cpu, wall = timed(ours_rules, docs, cfg)
        row("ours: clean rules (6)", mb, cpu, wall, len(rules["rejected"]), json.dumps(rules["reasons"]))
        rep, cpu, wall = timed(ours_repetition_rules, docs, cfg)
        row("ours: repetition rules (3)", mb, cpu, wall, len(rep["rejected"]), json.dumps(rep["reasons"]))
        if peer:
            dt = run_datatrove(peer, "filters", texts, work / "dt")
            ours_set = set(rules["rejected"])
            for key, name in (("quality", "GopherQualityFilter"), ("repetition", "GopherRepetitionFilter"),
                              ("chain", "Gopher quality -> repetition")):
                r = dt[key]
                both = len(ours_set & set(r["rejected"]))
                row(f"datatrove: {name}", mb, r["cpu_s"], r["wall_s"], len(r["rejected"]),
                    f"both {both}; " + json.dumps(r["reasons"]))

        header("near-dup")
        near, cpu, wall = timed(ours_minhash, texts, cfg)
        bands = near["bands"]
        row(f"ours: NearDedup ({bands}x{m.num_perm // bands})", mb, cpu, wall, len(near["dups"]))
        if peer:
            dt = run_datatrove(peer, "minhash", texts, work / "dt", ngrams=m.shingle_words, buckets=bands,
                               hashes_per_bucket=m.num_perm // bands, seed=cfg.seed)
            t = dt["times"]
            cpu = sum(s["cpu_s"] for s in t.values())
            wall = sum(s["wall_s"] for s in t.values())
            steps = ", ".join(f"{k} {v['cpu_s']:.1f}" for k, v in t.items())
            row(f"datatrove: MinHash ({bands}x{m.num_perm // bands})", mb, cpu, wall, len(dt["removed"]),
                f"cpu s by step: {steps}; {len(dt['pairs'])} bucket pairs")
            ours_dups = {i for i, _ in near["dups"]}
            print(f"near-duplicates marked by both: {len(ours_dups & set(dt['removed']))} "
                  f"(which are right: bench/bench_near_dup_quality.py)")


if __name__ == "__main__":
    if "--datatrove-worker" in sys.argv:
        datatrove_worker(sys.argv[1:])
    else:
        main()
