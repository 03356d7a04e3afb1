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
mixture.jsonl, summary.json (see tasks/cpt_synthesis/run.py; the logic is `synthesize` there).

Accounting: the unit is the corpus record, as in entity_map: every valid record is kept (it stays CPT
data; the mixture says how often it is seen), invalid lines are rejected; read == kept + rejected.
Every synthesis part reports inputs, kept and rejected-by-reason in summary.json `parts`, and every
rejected item is in rejected_items/ (the entry shape of rejected/, plus its part); for `documents` the unit is the planned
view (kept + rejected = inputs: missing_document, empty_text, image_document).

MLflow: every number of summary.json (read/kept/rejected, parts.<part>.kept/rejected, ...), samples per
task (samples.<task>), OCR images/s, timings, LLM client stats when a role is llm; artifacts
summary.json and the first samples.

Why local roles by default: the embedded SmolLM2-135M cannot follow these prompts reliably (see
ARCHITECTURE.md "LLM roles"); templates over the KG and the structured attributes state only what the
sources say, and a capable endpoint flips a role to `llm` with the same outputs and accounting.
"""

from __future__ import annotations

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.cpt_synthesis.run import CptDataConfig, first_samples, synthesize


def run(cfg: CptDataConfig, ctx: StageContext) -> StageResult:
    sink = ctx.sink(cfg.shard_size, kept=None)   # it writes samples, not copies of the corpus
    summary, timings = synthesize(cfg, sink, ctx.client, relative=ctx.relative)
    by_task = summary["samples_by_task"]
    return StageResult(
        summary=summary,
        metrics={**{f"samples.{k}": v for k, v in by_task.items()}, **timings},
        samples=first_samples(ctx.out),
        line=(f"read={sink.read} kept={sink.kept_inputs} rejected={sink.rejected.count} "
              f"samples={summary['samples']} {by_task} ocr={timings['ocr_images_per_s']:.1f} img/s "
              f"total={timings['total_s']:.0f}s"))


STAGE = Stage("cpt_data", CptDataConfig, run, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
