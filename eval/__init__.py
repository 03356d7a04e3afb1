"""Unified Med-VLM benchmark harness (paper §6): one protocol for every checkpoint and any model.

benchmarks (registry, loaders, bring-your-own JSONL) -> templates (per answer kind, direct/thinking)
-> models (HF checkpoint, OpenAI-compatible endpoint, predictions file) -> parsing + scoring
(deterministic; generation Pass@1 and option log-likelihood) -> runner (resumable per-item results)
-> report (every score with a 95% interval from intervals.py, chance baselines, parse failures,
category macro-averages, decontamination) and progression (which stage moved which benchmark, by
more than the intervals allow). Entry points: `python -m eval` (cli.py) and the
`eval` and `eval_progression` stages (tasks/eval.py, tasks/eval_progression.py).
"""

# The protocol's two modes and the number of each that a category averages. Defined here, with no
# imports, so `eval.progression` (the `eval_progression` stage) needs no harness module but this file
# and eval/intervals.py (which imports none).
MODES = ("generate", "loglik")
PRIMARY = {"generate": "score", "loglik": "acc_norm"}
