"""The quality stage's logic, free of DVC/MLflow: read the clean stage's output, bootstrap the
classifier, score every kept record into a sink; write the model, rounds and verifier failures,
and (`real_eval.enabled`) measure the classifier on real text (real_eval.py: real_holdout.json,
review_sample.jsonl), which only reads the decisions and never changes them.

    extra = quality_filter(cfg, sink, client=None, on_round=None)   # what tasks/quality.py runs

Memory stays bounded on any corpus size: the loop only needs `BootstrapParams.pool_needed()` pool
texts, drawn by seeded reservoir sampling in one pass; the scoring pass streams the shards again
(the real-text evaluation keeps counts and fixed-size samples only), sharded: Ray workers
(tasks/common/engine.py) score `engine.shard_records` records each, at most 2 x workers shards in
flight, and the driver takes the decisions in input order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from tasks.common.config import resolve
from tasks.common.engine import EngineConfig, Shard, ShardLedger, iter_shard_records, map_shards, plan_jsonl_shards
from tasks.common.io import StageSink, file_sha256, iter_jsonl, iter_records, shard_paths, write_json
from tasks.common.records import rejection
from tasks.corpus.quality import classifier
from tasks.corpus.quality.bootstrap import BootstrapParams, bootstrap
from tasks.corpus.quality.real_eval import RealEvalParams, RealEvaluation, load_review_labels
from tasks.corpus.quality.real_holdout import RULE_REASONS, SeenTexts
from tasks.corpus.quality.reservoir import reservoir
from tasks.corpus.quality.signals import build_vocab
from tasks.corpus.quality.verifiers import LLMVerifier, LLMVerifierParams, LocalVerifier, LocalVerifierParams, Verifier

# The clean stage's rule-filter reasons whose texts become seed negatives. Dedup and decontamination
# rejections are *good* text and must not. `too_short` is left out too: the classifier only scores
# texts that passed the length rule, so short negatives teach it length, which the rule already
# enforces (full data, default profile: with too_short, hold-out accuracy 0.958 and 5.1% of texts
# rejected, mostly short MedQuAD answers; without, 0.975 and 1.7%). RULE_REASONS (real_holdout.py)
# = the clean stage's quality rules.


@dataclasses.dataclass
class QualityConfig(BootstrapParams):
    """The stage config: the bootstrap loop's parameters (inherited from BootstrapParams) plus
    I/O, pass-through, seed negatives and the verifiers."""
    in_dir: str = "data/clean"
    out_dir: str = "data/quality"
    verifier: Literal["local", "llm"] = "local"
    min_text_chars: int = 200        # image records with less text than this pass through unscored
    seed_negative_reasons: list[str] = dataclasses.field(default_factory=lambda: list(RULE_REASONS))
    shard_size: int = 50000
    local_verifier: LocalVerifierParams = dataclasses.field(default_factory=LocalVerifierParams)
    llm_verifier: LLMVerifierParams = dataclasses.field(default_factory=LLMVerifierParams)
    real_eval: RealEvalParams = dataclasses.field(default_factory=RealEvalParams)

    def __post_init__(self) -> None:
        from tasks.corpus.quality.degrade import DEGRADERS
        unknown = sorted(set(self.degraders) - set(DEGRADERS))
        if unknown or not self.degraders:
            raise ValueError(f"degraders {self.degraders} must be non-empty, from {sorted(DEGRADERS)}")
        if not 0.0 < self.threshold < 1.0 or not 0.0 < self.target_accuracy <= 1.0:
            raise ValueError("threshold must be in (0, 1) and target_accuracy in (0, 1]")
        if min(self.seed_size, self.holdout_size, self.pool_sample_per_round) < 2:
            raise ValueError("seed_size, holdout_size and pool_sample_per_round must be >= 2")
        if self.real_eval.review_bands and self.real_eval.review_bands[0] <= self.threshold:
            raise ValueError(f"real_eval.review_bands {self.real_eval.review_bands} must lie above "
                             f"threshold {self.threshold} (they split the kept scores)")


def make_verifier(cfg: QualityConfig, pool: list[str], client: Any = None) -> Verifier:
    """The configured second-pass verifier: rules with the pool's vocabulary, or the LLM via `client`."""
    if cfg.verifier == "llm":
        if client is None:
            raise ValueError("verifier: llm needs an LLM client")
        return LLMVerifier(client, cfg.llm_verifier)
    return LocalVerifier(cfg.local_verifier, vocab=build_vocab(pool))


def passthrough(rec: dict, min_text_chars: int) -> bool:
    """Structured records (an image, or attributes only such as DICOM headers) with little text
    are kept unscored.

    Why: the classifier judges text; a radiograph with a one-line caption is not low-quality text,
    and image quality/relevance is judged by the image stages, not here.
    """
    structured = bool(rec["images"]) or bool(rec["meta"].get("attributes"))
    return structured and len(rec["text"].strip()) < min_text_chars


def iter_pool_texts(kept_dir: Path, min_text_chars: int) -> Iterator[str]:
    for rec, _ in iter_records(shard_paths(kept_dir)):
        if rec is not None and rec["text"].strip() and not passthrough(rec, min_text_chars):
            yield rec["text"]


def iter_rejected_entries(rejected_dir: Path, reasons: set[str]) -> Iterator[tuple[str, str]]:
    """(reason, text) of every rejected record with a non-blank text and one of `reasons`."""
    for path in sorted(Path(rejected_dir).glob("part-*.jsonl")):
        for entry, _ in iter_jsonl(path):
            rec = (entry or {}).get("record")
            if (entry or {}).get("reason") in reasons and isinstance(rec, dict) \
                    and isinstance(rec.get("text"), str) and rec["text"].strip():
                yield entry["reason"], rec["text"]


def iter_rejected_texts(rejected_dir: Path, reasons: set[str]) -> Iterator[str]:
    return (text for _, text in iter_rejected_entries(rejected_dir, reasons))


@dataclasses.dataclass(frozen=True)
class ScoringModel:
    """What a scoring worker needs: the trained model's bytes (shipped once through the object
    store, so workers need no shared filesystem) and the pass-through rule."""
    model_bytes: bytes
    min_text_chars: int


_MODELS: dict[str, Any] = {}        # per worker process: model sha256 -> loaded fastText model


def load_scoring_model(shared: ScoringModel):
    """The fastText model from its bytes, loaded once per process (fastText reads only files)."""
    key = hashlib.sha256(shared.model_bytes).hexdigest()
    if key not in _MODELS:
        import fasttext

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "quality_model.bin"
            path.write_bytes(shared.model_bytes)
            _MODELS.clear()
            _MODELS[key] = fasttext.load_model(str(path))
    return _MODELS[key]


def score_shard(shard: Shard, shared: ScoringModel) -> list[tuple[dict | None, dict | None, float | None]]:
    """The engine's map function: (record, upstream rejection, P(high) or None for a pass-through)
    for every input of one shard, in order; the threshold decision is the driver's."""
    items = list(iter_shard_records(shard))
    to_score = [rec["text"] for rec, rej in items if rej is None and not passthrough(rec, shared.min_text_chars)]
    scores = iter(classifier.scores(load_scoring_model(shared), to_score)) if to_score else iter(())
    return [(rec, rej, None if rej is not None or passthrough(rec, shared.min_text_chars) else next(scores))
            for rec, rej in items]


def quality_filter(cfg: QualityConfig, sink: StageSink, client: Any = None,
                   on_round: Callable[[int, dict], None] | None = None,
                   engine: EngineConfig | None = None) -> dict:
    """Run the stage from `cfg.in_dir` into `sink` (not closed here) and `sink.out_dir`
    (rounds.json, verifier_failures.json, quality_model.bin; with `real_eval.enabled`,
    real_holdout.json and review_sample.jsonl); returns the summary extras.

    `client` is the LLM client for `verifier: llm`; `on_round(round, metrics)` sees each round.
    The bootstrap runs here; scoring every kept record is sharded by `engine` (workers load the
    saved model), and the decisions are taken here in input order.
    """
    in_dir, out = resolve(cfg.in_dir), sink.out_dir
    labels = load_review_labels(cfg.real_eval)   # before the slow part: a bad file fails fast
    pool = reservoir(iter_pool_texts(in_dir / "kept", cfg.min_text_chars), cfg.pool_needed(),
                     random.Random(f"{cfg.seed}:pool"))
    rejected = reservoir(iter_rejected_texts(in_dir / "rejected", set(cfg.seed_negative_reasons)),
                         cfg.seed_size, random.Random(f"{cfg.seed}:rejected"))
    evaluation = RealEvaluation(cfg.real_eval, cfg.threshold, cfg.seed, SeenTexts(pool + rejected),
                                labels) if cfg.real_eval.enabled else None
    verifier = make_verifier(cfg, pool, client)
    result = bootstrap(pool, rejected, cfg, verifier, on_round=on_round)  # cfg is a BootstrapParams
    write_json(out / "rounds.json", {"rounds": result.rounds, "holdout": result.holdout,
                                     "stop_reason": result.stop_reason,
                                     "reached_target": result.reached_target,
                                     "verifier": verifier.name, "verifier_stats": verifier.stats})
    write_json(out / "verifier_failures.json", verifier.failures)
    result.model.save_model(str(out / "quality_model.bin"))

    counts = {"scored": 0, "passthrough_images": 0}
    engine = engine or EngineConfig(workers=1)
    plan = plan_jsonl_shards(shard_paths(in_dir / "kept"), engine.shard_records)
    shared = ScoringModel((out / "quality_model.bin").read_bytes(), cfg.min_text_chars)
    ledger = ShardLedger(sink)
    for shard, scored in zip(plan.shards, map_shards(score_shard, plan.shards, cfg=engine, shared=shared)):
        with ledger.shard(shard.index):
            for rec, rej, s in scored:    # input order: the decision and the evaluation see it
                sink.count_read()
                if rej is not None:
                    sink.reject(rej)
                elif s is None:
                    counts["passthrough_images"] += 1
                    sink.keep({**rec, "meta": {**rec["meta"], "quality_score": None}})
                else:
                    s = round(s, 4)
                    if s >= cfg.threshold:
                        sink.keep({**rec, "meta": {**rec["meta"], "quality_score": s}})
                    else:
                        sink.reject(rejection("low_quality", f"quality_score={s:.4f} < {cfg.threshold}",
                                              record=rec))
                    if evaluation is not None:  # after the decision, which it only reads
                        evaluation.observe(rec, s)
                    counts["scored"] += 1
    last = result.rounds[-1]
    extra = {**counts, "shards": ledger.rows(), "rounds": len(result.rounds), "final_accuracy": round(last["accuracy"], 4),
             "final_precision": round(last["precision"], 4), "final_recall": round(last["recall"], 4),
             "reached_target": result.reached_target, "stop_reason": result.stop_reason,
             "verifier": verifier.name, "verifier_failed": verifier.stats.get("failed", 0),
             "pool_sampled": len(pool), "seed_rejected_pool": len(rejected),
             # fastText with thread=1 + seed writes a bit-identical model, so its hash is stable
             "model_sha256": file_sha256(out / "quality_model.bin"),
             "threshold": cfg.threshold}
    if evaluation is not None:
        extra.update(evaluation.finish(
            out, iter_rejected_entries(in_dir / "rejected", set(cfg.real_eval.low_reasons)),
            result, cfg.fasttext))
    return extra
