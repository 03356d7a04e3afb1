"""Stage `cpt_data`: continual pre-training data synthesis (paper §3.3).

Run:   python -m tasks.cpt_data [key=value ...]
       (e.g. ocr.images=50 max_edges=2000 roles.caption=llm llm.base_url=http://host:8000/v1
        perplexity.enabled=false)
DVC:   dvc repro cpt_data

What (each part in tasks/cpt_synthesis/, a function with tests; every LLM role has a local implementation behind
the same interface, chosen per role in `roles`):
1. text knowledge from the KG (data/kg): atomic QA from single nodes and typed edges, aggregated QA from
   seeded random walks rewritten into a passage and questioned; non-self-contained texts ("the above",
   "this study", "as shown in Figure 2", a leading unresolved pronoun) rejected; perplexity-band
   selection with the base model (data/base_model, any HF checkpoint by path; skipped and reported when
   absent) -- tasks/cpt_synthesis/kg_qa.py, self_contained.py, perplexity.py;
2. image knowledge "label -> caption -> instruction" over VQA-RAD / PneumoniaMNIST / DICOM records of
   data/quality/kept: structured attributes, image checks (too small, extreme aspect ratio, CMYK and
   16-bit converted), a caption in a senior radiologist's voice, four instruction kinds --
   image_attributes.py, image_knowledge.py;
3. caption refinement: entities (the tree's Aho-Corasick matcher) -> KG facts -> revision suggestions ->
   rewrite -> rubric score (anatomy, morphology, evidence) as a filter -- caption_refine.py;
4. OCR: rendered EN/ZH lab reports (perspective, 10% rotation, blur, shadow, glare, occlusion) with row
   boxes, transcription and QA incl. NOT_FOUND -- ocr_panels.py, ocr_render.py, ocr_targets.py;
5. entity-balanced mixing: repeats per corpus document from data/entity_map/balanced_manifest.jsonl
   (systematic sampling, exact budget) -- mixing.py;
6. corpus documents: each text document of data/quality/kept written as task "document" samples, one
   per view the mixture plans (text cut at `documents.max_chars`, total views optionally capped at
   `documents.max_views` keeping the proportions); image documents are left to parts 2-3 --
   documents.py. This is how the mixing plan reaches cpt_order and cpt, which read only samples/.
Outputs (data/cpt_data): samples/ (synthesized + document samples), rejected/, rejected_items/, images/,
mixture.jsonl, summary.json (see tasks/cpt_synthesis/run.py).

Accounting: the unit is the corpus record, as in entity_map: every valid record is kept (it stays CPT
data; the mixture says how often it is seen), invalid lines are rejected; read == kept + rejected.
Every synthesis part reports inputs, kept and rejected-by-reason in summary.json `parts`, and every
rejected item is in rejected_items/ with its part and reason; for `documents` the unit is the planned
view (kept + rejected = inputs: missing_document, empty_text, image_document).

MLflow: read/kept/rejected, samples per task and generator, part rejections, OCR images/s, timings, LLM
client stats when a role is llm; artifacts summary.json and a sample of samples.

Why local roles by default: the embedded SmolLM2-135M cannot follow these prompts reliably (see
DESIGN.md "LLM calls"); templates over the KG and the structured attributes state only what the
sources say, and a capable endpoint flips a role to `llm` with the same outputs and accounting.
"""

from __future__ import annotations

import contextlib
import sys

from tasks.common.config import load_stage_config, resolve
from tasks.common.io import atomic_output_dir, head_jsonl
from tasks.common.tracking import stage_run
from tasks.cpt_synthesis.run import CptDataConfig, run
from tasks.llm.client import split_llm_overrides

SAMPLE_LINES = 30


def _sample(out, n: int = SAMPLE_LINES) -> list[dict]:
    shards = sorted((out / "samples").glob("part-*.jsonl"))
    return head_jsonl(shards[0], n) if shards else []


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    stage_argv, _ = split_llm_overrides(argv)
    cfg, profile = load_stage_config("cpt_data", CptDataConfig, stage_argv)
    with contextlib.ExitStack() as stack:
        client, llm_params = None, {}
        if cfg.uses_llm:
            from tasks.llm.server import open_stage_client
            client, llm_params = open_stage_client(stack, argv)
        with stage_run("cpt_data", cfg, profile) as tracker, atomic_output_dir(resolve(cfg.out_dir)) as out:
            if llm_params:
                tracker.mlflow.log_params(llm_params)
            summary = run(cfg, out, client)
            timings = summary.pop("_timings")
            tracker.log_summary(summary, kept_sample=_sample(out))
            metrics = {**{f"samples.{k}": v for k, v in summary["samples_by_task"].items()},
                       # parts.*: the synthesis steps' own accounting (rejected.<reason> counts documents)
                       **{f"parts.{part}.{k}": v[k] for part, v in summary["parts"].items() for k in ("kept", "rejected")},
                       **timings}
            tracker.log_metrics(metrics)
            if client is not None:
                tracker.log_metrics({f"llm_{k}": v for k, v in client.stats.items()})
    print(f"cpt_data: read={summary['read']} kept={summary['kept']} rejected={summary['rejected']} "
          f"samples={summary['samples']} {summary['samples_by_task']} "
          f"ocr={timings['ocr_images_per_s']:.1f} img/s total={timings['total_s']:.0f}s")
    return summary


if __name__ == "__main__":
    main()
