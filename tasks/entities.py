"""Stage `entities`: medical entity extraction and the frequency-filtered entity table
(paper §3.2.1, Stage 1 batch extraction and Stage 2 joint extraction + typing).

Run:   python -m tasks.entities [key=value ...]     (e.g. profile=tiny extractor=llm llm.base_url=local)
       python -m tasks.entities engine.workers=4    (the CRF's corpus extraction on 4 Ray workers)
DVC:   dvc repro entities

What: reads the quality stage's kept records (`<in_dir>/kept`), splits each text into sentences and
extracts typed entity mentions with one of two extractors behind one interface (param `extractor`):
- `local` (default): a CRF (sklearn-crfsuite, BIO tags, word-shape/affix/neighbour features) trained
  here. With `typing: vocabulary` (default) it learns eight types taken from the MeSH 2017 tree's
  categories -- Anatomy, Disease, Symptom, Chemical, Procedure, Test, Organism, Gene
  (tasks/extraction/vocabulary.py) -- from the PubTator gold training splits (BC5CDR train + dev,
  NCBI-disease train: gold Chemical/Disease spans, plus dictionary labels for the types those
  corpora do not annotate) and weakly labelled corpus sentences (the typed dictionary as labelling
  functions, tasks/extraction/weak_labels.py). `typing: gold` is the gold corpora's two types alone;
- `llm`: the paper's batch-chunking prompt (many sentences per request, one JSON key per sentence,
  explicit "None"; `llm_extract.prompt: stage2` adds typing) through the project's LLM client, at most
  `llm_extract.max_docs` documents; its type names are mapped onto the eight by `type_aliases`. Replies
  go through the one parse/repair loop (tasks/llm/ask.py): unparseable replies get one repair turn,
  then are recorded; a document keeps the entities of its parsed sentences.
With `extractor: local` the corpus extraction is sharded (tasks/common/engine.py): Ray workers run
the trained CRF on `engine.shard_records` documents each, the driver aggregates in input order, so
the outputs do not depend on the number of workers; the LLM path runs in the driver (its requests
batch sentences across documents, and the endpoint is one server).
Mentions are aggregated by normalized text into the entity table (majority type, every type's count,
`alt_types`), then the paper's filters run: entities seen < `min_entity_count` times, then types with
< `min_type_entities` entities.
Measured, in extraction_eval.json:
- gold: both extractors against the gold PubTator TEST splits (never trained on): the CRF on every
  test abstract (or `eval.local_max_docs`), the LLM path on a seeded sample of `eval.llm_docs`
  abstracts (0 = skip, no server) -- exact-span P/R/F1 for Chemical and Disease (a predicted Symptom
  counts as Disease: the gold corpora annotate signs as diseases), beside the typed dictionary alone
  as a baseline (`dictionary`);
- generalisation: the CRF's recall on occurrences of held-out dictionary terms, never used to label
  training text (`heldout_terms`; the dictionary's recall there is 0 by construction);
- the other six types: `type_review_sample.jsonl`, a seeded sample of corpus mentions per type with
  context and `label: null`; with `review.review_labels` (the reviewed copy, DVC-tracked) per-type
  precision with Wilson 95% intervals (`reviewed`).
Logic: tasks/extraction/run.py (extract_entities).

Output (out_dir): mentions/part-*.jsonl ({doc_id, source, entities: [{text, norm, type, start, end}]},
one line per kept document, `failed_sentences` when some of its sentences failed on the LLM path;
documents without text are kept with no entities), entities.jsonl (the table: norm, text, type,
types, alt_types, count, doc_count; sorted by -count, norm), rejected/part-*.jsonl (documents that
could not be processed), rejected_entities/part-*.jsonl (entities filtered out: rare_entity,
rare_type, empty, too_long; the entity as the rejection's record), extraction_eval.json,
type_review_sample.jsonl, llm_failures.jsonl, crf_model.crfsuite, summary.json (read == kept +
rejected in documents (per shard: MLflow shards.json); entity-level counts, types, mentions per type that
the dictionary holds with the same type / another type / not at all).

What of the LLM is a DVC output: when `extractor: llm`, the LLM's extraction is the stage's result, so
its mentions, failures (llm_failures.jsonl: every failed sentence with the raw replies, corpus and
eval), its scores (extraction_eval.json `llm`, `local_on_llm_sample`) and its stats (summary.json
`llm_extract`) are outputs. When `extractor: local` the LLM is only the side-by-side comparison, and
llama.cpp answers differently from machine to machine, so its scores, sample and failures go to MLflow
only (metrics eval.llm.*, eval.local_on_llm_sample.*, llm_extract.*; artifacts
llm_comparison/extraction_eval_llm.json and llm_comparison/llm_failures.jsonl): data/entities then
holds nothing an endpoint wrote, and llm_failures.jsonl keeps its name as the corpus extraction's LLM
failures -- none on the local path, an empty file -- so the stage hashes the same on every machine.

Why: `local` is the default because the embedded SmolLM2-135M is too small for this prompt (ARCHITECTURE.md
"LLM roles"); the eval measures both on the same gold so the choice is visible in MLflow
(eval.local.Disease.f1 next to eval.llm.Disease.f1). The types come from a published vocabulary so
each is defined and each dictionary label traceable to a MeSH tree number; weak labels let a gold
corpus of two types teach eight, and the held-out terms show what the CRF finds beyond the
dictionary. The CRF trains in minutes on CPU, is deterministic given the data order, and needs no
download. Timings and LLM cache hits go to MLflow
only, so summary.json and the other outputs are identical across re-runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.extraction.run import MODEL_FILE, EntitiesConfig, extract_entities, input_shards, write_comparison


def run(cfg: EntitiesConfig, ctx: StageContext) -> StageResult:
    try:
        shards = input_shards(cfg)
    except FileNotFoundError as e:
        raise SystemExit(f"entities: {e}") from None
    sink = ctx.sink(cfg.shard_size, kept="mentions")      # kept documents with their entities
    res = extract_entities(cfg, ctx.out, sink, ctx.client, shards, ctx.engine)
    if res.comparison is not None:          # machine-dependent: MLflow, never data/entities
        with tempfile.TemporaryDirectory() as tmp:
            for path in write_comparison(Path(tmp), res.comparison):
                ctx.log_artifact(path, "llm_comparison")
    s, m = res.summary, res.metrics
    line = (f"read={sink.read} kept={sink.kept_inputs} rejected={sink.rejected.count} "
            f"table={s['entities_in_table']} entities_rejected={s['entities_rejected']} "
            f"crf_train_s={m['crf.train_seconds']:.1f} extract_s={m['extract.seconds']:.1f} "
            f"eval_f1={s['eval_micro_f1']}")
    return StageResult(summary=s, metrics=m, line=line,
                       artifacts=["extraction_eval.json", "entities.jsonl", "llm_failures.jsonl", MODEL_FILE])


STAGE = Stage("entities", EntitiesConfig, run, uses_llm=lambda cfg: cfg.uses_llm, sharded=True)

if __name__ == "__main__":
    main(STAGE)
