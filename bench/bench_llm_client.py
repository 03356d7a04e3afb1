"""Throughput of the LLM client against the embedded llama.cpp + SmolLM2 server.

Run:  HF_HUB_OFFLINE=1 python -m bench.bench_llm_client [n_prompts]

Measures requests/s at max_concurrency 1 and 2 (cold cache), then the same batch again (all cache
hits), and prints one JSON line per setting. Why: it tells whether concurrency pays off on this
machine's cores and that a cached re-run costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time

from tasks.llm.client import LLMClient, LLMConfig
from tasks.llm.server import endpoint


def main(n: int = 8) -> None:
    prompts = [[{"role": "user", "content": f"Name one symptom of disease number {i}."}]
               for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp, endpoint(LLMConfig(max_tokens=24, cache_dir=None)) as live:
        for conc in (1, 2):
            cfg = dataclasses.replace(live, max_concurrency=conc, cache_dir=f"{tmp}/c{conc}")
            with LLMClient(cfg) as client:
                for phase in ("cold", "cached"):
                    t = time.perf_counter()
                    client.complete_many(prompts)
                    dt = time.perf_counter() - t
                    print(json.dumps({"concurrency": conc, "phase": phase, "n": n,
                                      "seconds": round(dt, 3), "req_per_s": round(n / dt, 2),
                                      **client.stats}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
