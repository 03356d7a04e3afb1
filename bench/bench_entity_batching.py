"""Benchmark: the paper's batch chunking (§3.2.1 Stage 1: many sentences per LLM request, ~30x
reported) against one sentence per request, on the same sentences, through the real local endpoint.

Run:   .venv/bin/python bench/bench_entity_batching.py [--sentences 48] [--batch 1 8 16]
                                                       [--prompt stage2] [--json out.json]

Input: the first sentences of the BC5CDR test abstracts (corpus/pubtator/CDR_TestSet.PubTator.txt
under data_root), as (doc_id, text) documents cut to exactly --sentences sentences.

Each batch size runs `tasks.extraction.llm.LLMExtractor` end to end -- prompt, request, strict
parse, one repair turn for what does not parse -- against ONE llama.cpp + SmolLM2-135M server
(started once, `llm:` section of params.yaml) with a FRESH, empty response cache per batch size, so
every sentence costs a real request. The reply budget scales with the batch
(max_tokens = --tokens-per-sentence x batch) so a batch is never cut short because it is a batch, and
the request timeout is raised (--timeout-s) so a slow batch is not retried and counted twice.
Reported per batch size: wall seconds, sentences/s, requests (incl. repairs), prompt and completion
tokens, sentences parsed vs failed; and the speedup of each batch size over batch size 1 in the same
run. The machine may be shared: compare the ratios, which are measured back to back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.common.config import load_params, resolve  # noqa: E402
from tasks.extraction.common import split_sentences  # noqa: E402
from tasks.extraction.gold import read_pubtator_file  # noqa: E402
from tasks.extraction.llm import LLMExtractor, LLMExtractParams  # noqa: E402
from tasks.llm.client import LLMClient, load_llm_config  # noqa: E402
from tasks.llm.server import endpoint  # noqa: E402


def sample_docs(data_root: Path, n_sentences: int) -> list[tuple[str, str]]:
    """Test abstracts cut so that the sample holds exactly n_sentences sentences."""
    docs, _ = read_pubtator_file(data_root / "corpus" / "pubtator" / "CDR_TestSet.PubTator.txt")
    out, left = [], n_sentences
    for d in docs:
        spans = split_sentences(d.text)
        take = spans[:left]
        out.append((d.doc_id, d.text[:take[-1][1]]))
        left -= len(take)
        if left == 0:
            return out
    raise SystemExit(f"only {n_sentences - left} sentences available")


def run(client_cfg, docs, batch: int, args) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        cfg = dataclasses.replace(client_cfg, cache_dir=cache, timeout_s=args.timeout_s)
        with LLMClient(cfg) as client:
            params = LLMExtractParams(prompt=args.prompt, batch_sentences=batch, max_batch_chars=100_000,
                                      max_tokens=args.tokens_per_sentence * batch,
                                      constrained_json=not args.free_text)
            ex = LLMExtractor(client, params)
            t0 = time.perf_counter()
            results = ex.extract(docs)
            wall = time.perf_counter() - t0
            cs = client.stats
    n = sum(r.sentences for r in results)
    assert cs["cache_hits"] == 0, "a fresh cache must not answer anything"
    return {"batch": batch, "sentences": n, "wall_s": round(wall, 2), "sentences_per_s": round(n / wall, 3),
            "requests": cs["requests"], "retries": cs["retries"], "prompt_tokens": cs["prompt_tokens"],
            "completion_tokens": cs["completion_tokens"], "parsed_first": ex.stats["parsed_first"],
            "parsed_after_repair": ex.stats["parsed_after_repair"],
            "failed_sentences": ex.stats["failed_sentences"],
            "failed_by_kind": {k[7:]: v for k, v in ex.stats.items() if k.startswith("failed_") and
                               k != "failed_sentences" and v}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=48)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--prompt", choices=["stage2", "stage1"], default="stage2")
    ap.add_argument("--tokens-per-sentence", type=int, default=40)
    ap.add_argument("--free-text", action="store_true", help="no grammar-constrained JSON")
    ap.add_argument("--timeout-s", type=float, default=600.0,
                    help="per request; long enough that a slow batch is not retried (a retry would "
                         "count its generation twice)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if 1 not in args.batch:
        args.batch = [1, *args.batch]
    data_root = resolve(load_params().get("data_root", "../shared/data"))
    docs = sample_docs(data_root, args.sentences)
    configured = load_llm_config([])
    rows = []
    with endpoint(configured) as live:
        for b in args.batch:
            rows.append(run(live, docs, b, args))
            print(json.dumps(rows[-1]), flush=True)
    base = next(r for r in rows if r["batch"] == 1)["sentences_per_s"]
    for r in rows:
        r["speedup_vs_1"] = round(r["sentences_per_s"] / base, 2)
    print(f"\n{'batch':>5} {'sent':>5} {'wall_s':>8} {'sent/s':>8} {'speedup':>8} {'requests':>9} "
          f"{'compl_tok':>10} {'parsed':>7} {'failed':>7}")
    for r in rows:
        print(f"{r['batch']:>5} {r['sentences']:>5} {r['wall_s']:>8} {r['sentences_per_s']:>8} "
              f"{r['speedup_vs_1']:>8} {r['requests']:>9} {r['completion_tokens']:>10} "
              f"{r['parsed_first'] + r['parsed_after_repair']:>7} {r['failed_sentences']:>7}")
    if args.json:
        args.json.write_text(json.dumps({"prompt": args.prompt, "model": configured.model,
                                         "constrained_json": not args.free_text, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
