"""Near-duplicate quality: precision and recall of the project's MinHash, datasketch's and
datatrove's against exact Jaccard on every pair of a seeded sample, beside their speed.

Run:   nice -n 10 .venv/bin/python bench/bench_near_dup_quality.py [--answers 3000] [--corpus-docs 2000]
           [--corpus DIR] [--seed 1234]
       nice -n 10 .venv/bin/python bench/bench_near_dup_quality.py --as-bench-minhash
       (datatrove rows need .venv-peer, see bench/bench_peer.py; without it they are skipped)

Sample (default): a seeded sample of MedQuAD answers (the XML <Answer> texts bench_minhash.py
reads) plus a seeded sample of the other text records of the default `collect` output (PubTator,
MEDLINE, IU-Xray; MedQuAD records are left out there, they contain the answers), all normalized and
PHI-scrubbed as the clean stage does, in a seeded random order (streaming methods depend on it).
`--as-bench-minhash`: every MedQuAD answer, raw, in file order: bench_minhash.py's input, so its
953 (ours) vs 1,329 (datasketch) near-duplicates are measured here against the truth.

Ground truth: Jaccard similarity of the word-shingle sets (tasks.corpus.clean.dedup.shingles, the
shingle size of params.yaml clean.minhash) of every pair, exactly: a sparse document x shingle
matrix times its transpose gives every pair's intersection (pairs sharing no shingle have J = 0);
a pair is a true near-duplicate when J >= clean.minhash.threshold.

Methods, each on the same documents in the same order:
- ours: NearDedup (rensa, clean.minhash: 128 permutations, 16 bands x 8 rows, candidates verified
  by estimated Jaccard >= threshold), streaming, first occurrence wins;
- datasketch: MinHash(128) + MinHashLSH(threshold) exactly as bench_minhash.py runs it (any LSH
  candidate makes a duplicate, no verification), and the same with our verification step;
- datatrove: signatures -> buckets -> clusters (bench_peer.py's worker) with 16 x 8 (our banding)
  and 14 x 8 (its default); any shared bucket makes a pair, pairs are clustered (union-find) and
  all but one document per cluster removed. It shingles its own simplified text (lower case,
  punctuation and digits normalized, spaCy tokens), so it is judged against the same truth as
  the others, not its own shingles.

Measures (P = precision, R = recall):
- pairs P: reported pairs (a duplicate and the document it was matched to; datatrove's bucket
  pairs) whose exact J >= threshold;
- cluster P / R: all pairs inside each method's clusters (connected components of its reported
  pairs) against all true pairs;
- doc P / R: documents in a non-singleton cluster against documents with >= 1 true partner;
- removed, and P / R of the removed set against exact first-wins streaming (the ideal of what ours
  and datasketch do: remove a document when it has a true partner among the earlier kept ones);
  datatrove keeps one document per cluster, not the first, so its removed set is compared too,
  but its count is better read beside "exact components" (sum of size - 1 over the true graph's
  connected components).
Speed: MB/s per core (CPU seconds; datatrove's inside its subprocess, all three steps).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peer  # noqa: E402  (the corpus and datatrove helpers)

ROOT = bench_peer.ROOT


# ---- the sample ------------------------------------------------------------------------------
def build_sample(args, work: Path) -> tuple[list[str], str]:
    """(texts in processing order, a one-line description)."""
    from bench_minhash import load_answers

    from tasks.corpus.clean.normalize import normalize_text
    from tasks.corpus.clean.phi import scrub_phi

    answers = load_answers(Path(args.data_root))
    if args.as_bench_minhash:
        return answers, f"all {len(answers)} MedQuAD answers, raw, file order (bench_minhash.py's input)"
    rng = random.Random(args.seed)
    picked = rng.sample(answers, min(args.answers, len(answers))) if args.answers else answers
    texts = [scrub_phi(normalize_text(t))[0] for t in picked]
    corpus_part = []
    if args.corpus_docs:
        collect_dir = Path(args.corpus) if args.corpus else bench_peer.collect_corpus(work)
        others = [d for d in bench_peer.text_documents(collect_dir) if d["source"] != "medquad"]
        corpus_part = rng.sample(others, min(args.corpus_docs, len(others)))
    sources = sorted({d["source"] for d in corpus_part})
    texts += [d["text"] for d in corpus_part]
    rng.shuffle(texts)
    return texts, (f"{len(picked)} MedQuAD answers + {len(corpus_part)} corpus documents "
                   f"({', '.join(sources) or 'none'}), seed {args.seed}, shuffled")


# ---- ground truth ----------------------------------------------------------------------------
def shingle_sets(texts: list[str], k: int) -> list[frozenset]:
    from tasks.corpus.clean.dedup import shingles

    return [frozenset(shingles(t, k)) for t in texts]


def exact_pairs(sets: list[frozenset], threshold: float, block: int = 1000) -> dict[tuple[int, int], float]:
    """Every pair (i < j) with exact Jaccard >= threshold, with its Jaccard."""
    vocab: dict[bytes, int] = {}
    indptr, indices = [0], []
    for s in sets:
        indices.extend(vocab.setdefault(x, len(vocab)) for x in s)
        indptr.append(len(indices))
    m = sparse.csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr),
                          shape=(len(sets), max(len(vocab), 1)))
    sizes = np.diff(m.indptr)
    mt = m.T.tocsr()
    out = {}
    for lo in range(0, len(sets), block):
        inter = (m[lo:lo + block] @ mt).tocoo()   # intersections of rows lo.. with every row
        i, j, n = inter.row + lo, inter.col, inter.data
        upper = j > i
        i, j, n = i[upper], j[upper], n[upper]
        jac = n / (sizes[i] + sizes[j] - n)
        for a, b, v in zip(i[jac >= threshold].tolist(), j[jac >= threshold].tolist(),
                           jac[jac >= threshold].tolist()):
            out[(a, b)] = v
    return out


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def components(n: int, pairs) -> list[list[int]]:
    """Connected components (size >= 2) of the graph on 0..n-1 with these edges."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in range(n):
        groups.setdefault(find(x), []).append(x)
    return [g for g in groups.values() if len(g) > 1]


def exact_streaming(n: int, truth) -> set[int]:
    """What first-occurrence-wins removes with exact similarities."""
    earlier: dict[int, list[int]] = {}
    for a, b in truth:
        earlier.setdefault(b, []).append(a)
    kept, removed = set(), set()
    for i in range(n):
        if any(j in kept for j in earlier.get(i, ())):
            removed.add(i)
        else:
            kept.add(i)
    return removed


# ---- the methods -----------------------------------------------------------------------------
def run_ours(texts, cfg):
    from tasks.corpus.clean.dedup import NearDedup

    m = cfg.minhash
    near = NearDedup(m.threshold, m.num_perm, m.shingle_words, seed=cfg.seed, num_bands=m.num_bands)
    pairs = []
    for i, t in enumerate(texts):
        hit = near.check_add(str(i), t)
        if hit is not None:
            pairs.append((int(hit[0]), i))
    return pairs, {b for _, b in pairs}


def run_datasketch(texts, cfg, verify: bool):
    from datasketch import MinHash, MinHashLSH

    from tasks.corpus.clean.dedup import shingles

    m = cfg.minhash
    lsh = MinHashLSH(threshold=m.threshold, num_perm=m.num_perm)
    kept: dict[int, MinHash] = {}
    pairs = []
    for i, t in enumerate(texts):
        sh = shingles(t, m.shingle_words)
        if not sh:
            continue
        mh = MinHash(num_perm=m.num_perm, seed=cfg.seed)
        mh.update_batch(sh)
        cands = sorted(lsh.query(mh))
        if verify:
            cands = [c for c in cands if mh.jaccard(kept[c]) >= m.threshold]
        if cands:
            pairs.append((cands[0], i))
        else:
            lsh.insert(i, mh)
            kept[i] = mh
    return pairs, {b for _, b in pairs}


def estimator_error(texts, sets, cfg, seed: int, lo_margin: float = 0.1) -> str:
    """Mean and SD of (estimated - exact) Jaccard, rensa's and datasketch's, over pairs whose exact
    Jaccard is within `lo_margin` below the threshold or above it (where the decisions are made).

    One pair per document (a seeded greedy matching): the pairs of one big boilerplate cluster
    share its documents' signatures, so their errors are not independent and would let one
    cluster's luck pass for a bias of the estimator."""
    from datasketch import MinHash

    from tasks.corpus.clean.dedup import NearDedup, shingles

    m = cfg.minhash
    near = sorted(exact_pairs(sets, m.threshold - lo_margin).items())
    random.Random(seed).shuffle(near)
    used: set[int] = set()
    pairs = []
    for (a, b), j in near:
        if a not in used and b not in used:
            used.update((a, b))
            pairs.append(((a, b), j))
    ours = NearDedup(m.threshold, m.num_perm, m.shingle_words, seed=cfg.seed)
    r_sig: dict = {}
    d_sig: dict = {}
    for (a, b), _ in pairs:
        for i in (a, b):
            if i not in r_sig:
                r_sig[i] = ours.minhash(texts[i])
                d_sig[i] = MinHash(num_perm=m.num_perm, seed=cfg.seed)
                d_sig[i].update_batch(shingles(texts[i], m.shingle_words))
    r_err = np.array([r_sig[a].jaccard(r_sig[b]) - j for (a, b), j in pairs])
    d_err = np.array([d_sig[a].jaccard(d_sig[b]) - j for (a, b), j in pairs])
    if not pairs:
        return "no pairs near the threshold"
    return (f"estimate - exact Jaccard, {len(pairs)} disjoint pairs with exact J >= {m.threshold - lo_margin:.2f}: "
            f"rensa (ours) mean {r_err.mean():+.4f} sd {r_err.std():.4f}; "
            f"datasketch mean {d_err.mean():+.4f} sd {d_err.std():.4f}")


# ---- scoring ---------------------------------------------------------------------------------
def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def score(n: int, pairs, removed: set[int], truth: dict, sets, ideal_removed: set[int]) -> dict:
    reported = {(min(a, b), max(a, b)) for a, b in pairs}
    pair_true = sum(1 for p in reported if p in truth)
    clusters = components(n, reported)
    inside = {(g[x], g[y]) for g in clusters for x in range(len(g)) for y in range(x + 1, len(g))}
    inside_true = len(inside & truth.keys())
    flagged = {d for g in clusters for d in g}
    true_docs = {d for p in truth for d in p}
    fp = sorted(jaccard(sets[a], sets[b]) for a, b in reported if (a, b) not in truth)
    return {
        "removed": len(removed), "pairs": len(reported),
        "pairs_p": ratio(pair_true, len(reported)),
        "cluster_p": ratio(inside_true, len(inside)), "cluster_r": ratio(inside_true, len(truth)),
        "doc_p": ratio(len(flagged & true_docs), len(flagged)), "doc_r": ratio(len(flagged & true_docs), len(true_docs)),
        "rem_p": ratio(len(removed & ideal_removed), len(removed)),
        "rem_r": ratio(len(removed & ideal_removed), len(ideal_removed)),
        "fp_median_j": f"{fp[len(fp) // 2]:.2f}" if fp else "-",
    }


COLUMNS = (("removed", 8), ("pairs", 7), ("pairs_p", 8), ("cluster_p", 10), ("cluster_r", 10),
           ("doc_p", 7), ("doc_r", 7), ("rem_p", 7), ("rem_r", 7), ("fp_median_j", 12))


def print_row(name: str, s: dict, cpu: float | None, mb: float) -> None:
    cells = "".join(f"{str(s.get(k, '')):>{w}}" for k, w in COLUMNS)
    speed = f"{cpu:>8.2f}{mb / cpu:>10.2f}" if cpu else f"{'':>8}{'':>10}"
    print(f"{name:<30}{cells}{speed}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answers", type=int, default=3000, help="MedQuAD answers sampled (0 = all)")
    ap.add_argument("--corpus-docs", type=int, default=2000, help="other corpus documents sampled (0 = none)")
    ap.add_argument("--corpus", help="an existing collect output dir; default: run collect")
    ap.add_argument("--as-bench-minhash", action="store_true", help="all MedQuAD answers, raw, file order")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--data-root", default=str(ROOT / ".." / "shared" / "data"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_peer.project_env(work)
        from tasks.common.config import load_stage_config
        from tasks.corpus.clean.run import CleanConfig

        cfg, _ = load_stage_config("clean", CleanConfig, [])
        m = cfg.minhash
        texts, what = build_sample(args, work)
        mb = bench_peer.megabytes(texts)
        t0 = time.perf_counter()
        sets = shingle_sets(texts, m.shingle_words)
        truth = exact_pairs(sets, m.threshold)
        n = len(texts)
        ideal = exact_streaming(n, truth)
        comp = components(n, truth)
        print(f"sample: {what}; {n} docs, {mb:.1f} MB; cpus visible {os.cpu_count()}")
        print(f"truth: {m.shingle_words}-word shingles, Jaccard >= {m.threshold} on all {n * (n - 1) // 2:,} "
              f"pairs ({time.perf_counter() - t0:.0f} s): {len(truth)} true pairs among "
              f"{len({d for p in truth for d in p})} docs; exact first-wins removes {len(ideal)}, "
              f"exact components remove {sum(len(g) - 1 for g in comp)}")
        print(f"\n{'method':<30}" + "".join(f"{k:>{w}}" for k, w in COLUMNS) + f"{'cpu s':>8}{'MB/s/core':>10}")
        print_row("exact first-wins", score(n, [], ideal, truth, sets, ideal) | {
            "pairs": "", "pairs_p": "", "cluster_p": "", "cluster_r": "", "doc_p": "", "doc_r": ""}, None, mb)

        bands = cfg.minhash.num_bands or None
        for name, fn in (("ours (rensa, verified)", lambda: run_ours(texts, cfg)),
                         ("datasketch (no verify)", lambda: run_datasketch(texts, cfg, False)),
                         ("datasketch + verify", lambda: run_datasketch(texts, cfg, True))):
            (pairs, removed), cpu, _ = bench_peer.timed(fn)
            print_row(name, score(n, pairs, removed, truth, sets, ideal), cpu, mb)

        python = bench_peer.peer_python()
        if python:
            from tasks.corpus.clean.dedup import optimal_bands

            bands = bands or optimal_bands(m.threshold, m.num_perm, 0.3, 0.7)
            for b, r in ((bands, m.num_perm // bands), (14, 8)):
                dt = bench_peer.run_datatrove(python, "minhash", texts, work / f"dt{b}x{r}", ngrams=m.shingle_words,
                                              buckets=b, hashes_per_bucket=r, seed=cfg.seed)
                cpu = sum(s["cpu_s"] for s in dt["times"].values())
                pairs = [tuple(p) for p in dt["pairs"]]
                print_row(f"datatrove {b}x{r}", score(n, pairs, set(dt["removed"]), truth, sets, ideal), cpu, mb)
        print(estimator_error(texts, sets, cfg, args.seed))


if __name__ == "__main__":
    main()
