"""Stage `quality`: model-based quality filtering with a self-bootstrapped fastText classifier
(paper §3.1, stage 3 of the cleaning pipeline).

Run:   python -m tasks.quality [key=value ...]    (e.g. profile=tiny verifier=llm llm.base_url=local)
DVC:   dvc repro quality

What: reads the clean stage's kept records (`<in_dir>/kept`) and its rule-rejected texts
(`<in_dir>/rejected`, reasons in `seed_negative_reasons`), runs the bootstrap loop (seed labels ->
fastText -> score a fresh pool sample -> second-pass verification -> balanced resample -> retrain,
until hold-out accuracy >= target_accuracy or max_rounds), then scores every kept record: score >=
threshold is kept with `meta.quality_score`, else rejected as `low_quality` with the score.
Image records with little text pass through unscored (`quality_score: null`).

Output (out_dir): kept/, rejected/, summary.json, rounds.json (per-round hold-out accuracy,
precision, recall, classifier/verifier agreement), verifier_failures.json, quality_model.bin.
Each round's metrics are logged to MLflow at step=round.

Why: `verifier: local` (rules, no LLM) is the default because the embedded SmolLM2-135M is too
small to judge quality (DESIGN.md "LLM calls"); `verifier: llm` asks the endpoint in the `llm:`
section (base_url `local` starts the embedded llama.cpp server for the stage's duration).
Everything is seeded and fastText trains with thread=1, so a re-run gives identical outputs.
"""

from __future__ import annotations

import contextlib
import sys

from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir
from tasks.common.tracking import stage_run
from tasks.corpus.quality.signals import build_vocab
from tasks.corpus.quality.run import QualityConfig, run
from tasks.corpus.quality.verifiers import LLMVerifier, LocalVerifier
from tasks.llm.client import split_llm_overrides


def main(argv: list[str]) -> dict:
    stage_argv, _ = split_llm_overrides(argv)
    cfg, profile = load_stage_config("quality", QualityConfig, stage_argv)
    llm_params: dict = {}
    with contextlib.ExitStack() as stack:
        if cfg.verifier == "llm":
            from tasks.llm.server import open_stage_client
            client, llm_params = open_stage_client(stack, argv)

            def make_verifier(pool):
                return LLMVerifier(client, cfg.llm_verifier)
        else:
            def make_verifier(pool):
                return LocalVerifier(cfg.local_verifier, vocab=build_vocab(pool))

        with stage_run("quality", cfg, profile) as tracker, \
                atomic_output_dir(resolve(cfg.out_dir)) as out:
            if llm_params:
                tracker.mlflow.log_params(llm_params)
            sink, extra = run(cfg, resolve(cfg.in_dir), out, make_verifier,
                              on_round=lambda r, m: tracker.log_metrics(m, step=r))
            if cfg.verifier == "llm":
                # MLflow only, not summary.json: cache hits differ between a first run and a
                # re-run, and summary.json must be identical across re-runs.
                tracker.log_metrics({f"llm_{k}": v for k, v in client.stats.items()})
            summary = sink.close(**extra)
            tracker.log_sink(sink, summary)
            for name in ("rounds.json", "verifier_failures.json", "quality_model.bin"):
                tracker.log_artifact(out / name)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
