"""Benchmark: MinHash near-duplicate detection alone, in MB/s per core, shingling included.

Run:   .venv/bin/python bench/bench_minhash.py [DATA_ROOT] [--max-mb N]
       (DATA_ROOT defaults to ../shared/data relative to the project root)

Input: every non-empty answer of the MedQuAD XML files (corpus/medquad/**/*.xml, ~21 MB),
parsed with defusedxml. Both contenders run the same streaming task on the same documents
in the same process: word 5-shingles -> 128-permutation MinHash -> LSH query, insert when
no candidate (first occurrence wins), threshold 0.8.

- ours: tasks.corpus.clean.dedup.NearDedup end to end (numpy/bytes shingling, rensa
  RMinHash + RMinHashLSH, Jaccard verification of candidates);
- datasketch: MinHash(num_perm=128).update_batch + MinHashLSH(threshold=0.8), fed the same
  shingles (our shingler, i.e. its best case; shingling time is counted for both).

MB/s per core = input UTF-8 megabytes / CPU seconds of this process (process_time), so a
library that used several threads would not look faster than it is per core. Wall time is
printed too. Target for ours: >= 10 MB/s/core.

The two counts differ; which is right (against exact Jaccard on every pair of these documents)
is measured by bench/bench_near_dup_quality.py --as-bench-minhash.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from defusedxml import ElementTree  # noqa: E402

from tasks.corpus.clean.dedup import NearDedup, shingles  # noqa: E402


def load_answers(data_root: Path, max_mb: float = 0) -> list[str]:
    files = sorted(glob.glob(str(data_root / "corpus" / "medquad" / "**" / "*.xml"), recursive=True))
    if not files:
        raise SystemExit(f"no MedQuAD XML under {data_root / 'corpus' / 'medquad'}")
    out, size = [], 0
    for path in files:
        for ans in ElementTree.parse(path).getroot().iter("Answer"):
            if ans.text and ans.text.strip():
                out.append(ans.text)
                size += len(ans.text.encode("utf-8"))
                if max_mb and size >= max_mb * 1e6:
                    return out
    return out


def run_ours(texts: list[str], threshold: float, num_perm: int, k: int) -> int:
    nd = NearDedup(threshold=threshold, num_perm=num_perm, shingle_words=k, seed=1234)
    dups = 0
    for i, t in enumerate(texts):
        dups += nd.check_add(str(i), t) is not None
    return dups


def run_datasketch(texts: list[str], threshold: float, num_perm: int, k: int) -> int:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dups = 0
    for i, t in enumerate(texts):
        sh = shingles(t, k)
        if not sh:
            continue
        m = MinHash(num_perm=num_perm, seed=1234)
        m.update_batch(sh)
        if lsh.query(m):
            dups += 1
        else:
            lsh.insert(str(i), m)
    return dups


def measure(fn, *args) -> tuple[float, float, int]:
    c0, w0 = time.process_time(), time.perf_counter()
    dups = fn(*args)
    return time.process_time() - c0, time.perf_counter() - w0, dups


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_root", nargs="?", default=str(ROOT / ".." / "shared" / "data"))
    ap.add_argument("--max-mb", type=float, default=0, help="use only the first N MB (0 = all)")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle-words", type=int, default=5)
    args = ap.parse_args(argv)

    texts = load_answers(Path(args.data_root), args.max_mb)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"MedQuAD answers: {len(texts)} docs, {mb:.2f} MB; {args.shingle_words}-word shingles, "
          f"{args.num_perm} permutations, threshold {args.threshold}; cpus visible: {os.cpu_count()}")
    params = (texts, args.threshold, args.num_perm, args.shingle_words)
    results = {}
    for name, fn in (("ours (rensa)", run_ours), ("datasketch", run_datasketch)):
        cpu, wall, dups = measure(fn, *params)
        results[name] = {"mb_per_s_core": mb / cpu, "cpu_s": cpu, "wall_s": wall, "duplicates": dups}
        print(f"{name:14s} {mb / cpu:8.2f} MB/s/core  (cpu {cpu:6.2f} s, wall {wall:6.2f} s, "
              f"near-duplicates {dups})")
    ratio = results["ours (rensa)"]["mb_per_s_core"] / results["datasketch"]["mb_per_s_core"]
    print(f"ratio ours/datasketch: {ratio:.1f}x")
    return results


if __name__ == "__main__":
    main()
