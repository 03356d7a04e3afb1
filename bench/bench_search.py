"""Benchmark the mid-training search tool: BM25 queries/s against a plain scan, and index build cost.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_search.py [--corpus data/quality/kept] [--queries 300]

- bm25 (csc):  tasks.mid_synthesis.search_tool.SearchTool.search (column slices of a CSC weight
               matrix, one sparse mat-vec per query, top-k by partition);
- plain scan:  the same BM25 scores computed by looping over passages with a per-passage term
               counter (what a straightforward implementation does), top-k by sorting;
both over the same passages and queries (KG node names + relation words from data/kg when present,
else words drawn from the corpus), in the same run. The scan is timed on a seeded subset of queries
and scaled; the two rankings are checked to agree on the top result. Prints the index build time,
its memory, queries/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.mid_synthesis.search_tool import SearchParams, SearchTool, tokenize


def queries_from(kg_dir: Path, n: int, seed: int, tool: SearchTool) -> list[str]:
    rng = np.random.default_rng(seed)
    edges = kg_dir / "edges.jsonl"
    if edges.is_file():
        rows = [json.loads(line) for line in edges.open()][:20000]
        rows = [r for r in rows if r["kind"] != "cooccurrence"]
        picks = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
        return [f"{rows[i]['head']} {rows[i]['relation'].replace('_', ' ')}" for i in picks]
    words = list(tool.index.vocab)
    return [" ".join(rng.choice(words, size=3)) for _ in range(n)]


def scan_scores(passages: list[list[str]], query: str, idf: dict[str, float], avgdl: float,
                k1: float, b: float) -> list[float]:
    q = Counter(tokenize(query))
    out = []
    for toks in passages:
        tf = Counter(toks)
        dl = len(toks)
        out.append(sum(c * idf.get(t, 0.0) * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * dl / avgdl))
                       for t, c in q.items() if t in tf))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="data/quality/kept")
    ap.add_argument("--kg", default="data/kg")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--scan-queries", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    params = SearchParams(max_docs=0)
    tracemalloc.start()
    t = time.perf_counter()
    tool = SearchTool.from_corpus(args.corpus, params)
    build_s = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"index: {len(tool.passages):,} passages, {len(tool.index.vocab):,} terms, built in {build_s:.1f} s, "
          f"peak traced memory {peak / 2**20:.0f} MiB")

    queries = queries_from(Path(args.kg), args.queries, args.seed, tool)
    t = time.perf_counter()
    tops = [tool.search(q, 5) for q in queries]
    bm25_qps = len(queries) / (time.perf_counter() - t)

    toks = [tokenize(p.text) for p in tool.passages]
    df = Counter(t for ts in toks for t in set(ts))
    n = len(toks)
    idf = {t: math.log1p((n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
    avgdl = sum(map(len, toks)) / max(n, 1)
    sub = queries[: args.scan_queries]
    t = time.perf_counter()
    agree = 0
    for q, top in zip(sub, tops):
        s = scan_scores(toks, q, idf, avgdl, params.k1, params.b)
        best = max(range(n), key=lambda i: (round(s[i], 4), -i))
        agree += bool(top) and tool.passages[best].passage_id == top[0]["passage_id"]
    scan_qps = len(sub) / (time.perf_counter() - t)
    print(f"bm25 (csc):  {bm25_qps:,.0f} queries/s over {len(queries)} queries")
    print(f"plain scan:  {scan_qps:,.2f} queries/s over {len(sub)} queries (top-1 agrees on {agree}/{len(sub)})")
    print(f"ratio bm25 / scan: {bm25_qps / scan_qps:,.0f}x")


if __name__ == "__main__":
    main()
