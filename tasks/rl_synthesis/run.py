"""What the `rl_data` stage does, given its config (tasks/rl_data.py is the stage).

    built = build_rl_prompts(cfg, client, log)     # RLBuild: prompts, ledger per source, rates, report

1. candidates: the SFT set's checkable prompts and the RL-specific KG instances (candidates.py);
2. decontamination against every benchmark (13-grams, images), each collision reported by prompt and
   benchmark item (tasks/mid_synthesis/decontam.py, the index `clean` builds);
3. rubric items for judge-scored prompts (tasks/reward/rubric.py: the expert-analyst LLM prompt, or the
   local path's atomic points from the reference and the KG entities it names);
4. the pass rate of each prompt under the SFT policy over k samples, graded by the hybrid reward's gate,
   and the band (band.py); the best of those k samples becomes the prompt's pairwise reference;
5. hints (hints.py), the curriculum phase, and the held-out split (seeded, per task).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.common.config import resolve
from tasks.mid_synthesis.run import DecontamParams
from tasks.mid_synthesis.samples import GateOutcome
from tasks.reward import rubric
from tasks.reward.hybrid import HybridReward, RewardParams
from tasks.rl_synthesis.band import band_filter, pass_rates
from tasks.rl_synthesis.candidates import ScenarioParams, from_sft_set, kg_scenarios
from tasks.rl_synthesis.hints import hints_for
from tasks.rl_synthesis.prompts import phase_of, validate_prompt, words

JUDGED = ("open", "conflict", "instruct")


@dataclasses.dataclass
class BandParams:
    k: int = 5                         # samples per prompt under the SFT policy
    low: float = 0.2                   # keep pass rates in [low, high] (the paper: 0.6-0.8; params.yaml says why)
    high: float = 0.8
    max_new_tokens: int = 96
    temperature: float = 1.0
    batch_prompts: int = 8


@dataclasses.dataclass
class RLDataConfig:
    policy: str = "data/sft/model"                 # the policy whose pass rates define the band
    sft_samples: str = "data/sft_data/samples"
    kg_dir: str = "data/kg"
    corpus_dir: str = "data/quality/kept"          # what the search tool indexes (tool-assisted prompts)
    search_max_docs: int = 25000
    data_root: str = "../shared/data"
    out_dir: str = "data/rl_data"
    seed: int = 1234
    shard_size: int = 50000
    threads: int = 2
    thinking: bool = True                          # prompts ask for <think> reasoning (the eval's thinking style)
    max_per_source: dict[str, int] = dataclasses.field(default_factory=lambda: {
        "sft:mid_data": 40, "sft:kg_qa": 20, "sft:pubmedqa": 20, "sft:instruct": 30, "sft:medquad": 20,
        "sft:ocr": 0, "sft:vqa_rad": 0})
    scenarios: ScenarioParams = dataclasses.field(default_factory=ScenarioParams)
    band: BandParams = dataclasses.field(default_factory=BandParams)
    heldout_fraction: float = 0.25                 # of the kept prompts per task, never trained on
    rubric_writer: Literal["local", "llm"] = "local"
    max_rubric_items: int = 6
    reward: RewardParams = dataclasses.field(default_factory=RewardParams)
    decontam: DecontamParams = dataclasses.field(default_factory=DecontamParams)
    long_prompt_words: int = 80                    # a prompt this long (history included) is long-horizon

    @property
    def uses_llm(self) -> bool:
        return self.rubric_writer == "llm" or self.reward.judge == "llm"

    def under_data_root(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else resolve(self.data_root) / p


@dataclasses.dataclass
class RLBuild:
    prompts: list[dict]
    ledger: dict[str, GateOutcome]
    rates: list[dict]
    decontam_report: list[dict]
    rubric_failures: list[dict]
    timings: dict[str, float]


def _cap(out: GateOutcome, n: int | None, seed: int) -> GateOutcome:
    """A seeded draw of at most n kept candidates; the rest rejected as over the cap."""
    if n is None or len(out.kept) <= n:
        return out
    keep = set(np.random.default_rng(seed).permutation(len(out.kept))[:n].tolist())
    kept = []
    for i, p in enumerate(out.kept):
        if i in keep:
            kept.append(p)
        else:
            out.reject("select", "over_max", f"max_per_source {n}", p["id"])
    out.kept = kept
    return out


def _split(prompts: list[dict], fraction: float, seed: int) -> None:
    by_task: dict[str, list[dict]] = {}
    for p in prompts:
        by_task.setdefault(p["task"], []).append(p)
    for task, group in sorted(by_task.items()):
        rng = np.random.default_rng([seed, sum(task.encode())])
        n = int(round(fraction * len(group))) if len(group) > 1 else 0
        for i in rng.permutation(len(group))[:n].tolist():
            group[i]["split"] = "heldout"


def build_rl_prompts(cfg: RLDataConfig, client, log=print) -> RLBuild:
    from tasks.corpus.clean.decontam import BenchmarkIndex
    from tasks.mid_synthesis.decontam import decontaminate
    from tasks.mid_synthesis.search_tool import SearchParams, SearchTool
    from tasks.rl_training.policy import Policy

    timings: dict[str, float] = {}
    t = time.perf_counter()
    sft = from_sft_set(resolve(cfg.sft_samples), thinking=cfg.thinking)
    ledger: dict[str, GateOutcome] = {"sft:read": GateOutcome(read=sft.read - len(sft.kept),
                                                              rejected=sft.rejected)}
    for p in sft.kept:
        ledger.setdefault(p["meta"]["source"], GateOutcome()).kept.append(p)
    for src, out in ledger.items():
        if src != "sft:read":
            out.read = len(out.kept)
            _cap(out, cfg.max_per_source.get(src), cfg.seed)
    tool = SearchTool.from_corpus(str(resolve(cfg.corpus_dir)), SearchParams(max_docs=cfg.search_max_docs))
    kg = resolve(cfg.kg_dir)
    for name, out in kg_scenarios(kg / "edges.jsonl", kg / "nodes.jsonl", tool, cfg.scenarios, cfg.seed,
                                  thinking=cfg.thinking).items():
        ledger[f"kg:{name}"] = out
    timings["candidates_s"] = time.perf_counter() - t

    t = time.perf_counter()
    d = cfg.decontam
    index = BenchmarkIndex.build(cfg.under_data_root(d.benchmarks_dir), ngram=d.ngram,
                                 phash_max_distance=d.phash_max_distance, max_items_per_ngram=d.max_items_per_ngram)
    candidates = [dict(p, images=[]) for out in ledger.values() for p in out.kept]
    clean, report = decontaminate(candidates, index)
    source_of = {p["id"]: p["meta"]["source"] for p in candidates}
    dropped = {r["item"]["id"] if isinstance(r["item"], dict) else r["item"]: r for r in clean.rejected}
    for src, out in ledger.items():
        out.kept = [p for p in out.kept if p["id"] not in dropped]
        out.rejected += [dropped[i] for i in dropped if source_of.get(i) == src]
    for row in report:
        row["prompt_source"] = source_of.get(row.get("id"), "")
    timings["decontamination_s"] = time.perf_counter() - t

    t = time.perf_counter()
    failures = []
    for out in ledger.values():
        for p in out.kept:
            p.pop("images", None)
            if p["task"] in JUDGED:
                entities = [s.split(":", 1)[1] for s in p["source_ids"] if s.startswith("kg-node:")]
                items, failure = rubric.dynamic_rubric(p["messages"], p["answer"], entities=entities,
                                                       client=client if cfg.rubric_writer == "llm" else None,
                                                       max_items=cfg.max_rubric_items)
                p["rubric"] = [*p["rubric"], *items]
                if failure:
                    failures.append({"id": p["id"], **failure})
    timings["rubrics_s"] = time.perf_counter() - t

    t = time.perf_counter()
    reward = HybridReward(cfg.reward, client)
    policy = Policy.load(resolve(cfg.policy), threads=cfg.threads)
    pool = [p for out in ledger.values() for p in out.kept]
    b = cfg.band
    log(f"rl_data: {len(pool)} candidates, {b.k} samples each under {cfg.policy}")
    texts = policy.render([p["messages"] for p in pool], thinking=cfg.thinking)
    sampled = policy.sample(texts, n=b.k, max_new_tokens=b.max_new_tokens, temperature=b.temperature,
                            seed=cfg.seed, batch_prompts=b.batch_prompts, salt="band",
                            progress=lambda done, total: log(f"  sampled {done}/{total}"))
    rates = pass_rates(pool, sampled, reward)
    for p, completions in zip(pool, sampled):
        p["reference"] = completions[rates[p["id"]]["best"]]
    timings["pass_rates_s"] = time.perf_counter() - t

    prompts = []
    for src, out in ledger.items():
        banded = band_filter(out.kept, rates, b.low, b.high)
        out.kept = banded.kept
        out.rejected += banded.rejected
        prompts += banded.kept
    for p in prompts:
        p["hints"] = hints_for(p, cfg.seed)
        p["meta"]["phase"] = phase_of(p, cfg.long_prompt_words)
        p["meta"]["words"] = words(p)
        validate_prompt(p)
    prompts.sort(key=lambda p: p["id"])
    _split(prompts, cfg.heldout_fraction, cfg.seed)
    rate_rows = [{"id": p["id"], "source": p["meta"]["source"], "task": p["task"], **rates[p["id"]]}
                 for p in pool]
    return RLBuild(prompts, ledger, rate_rows, report, failures, timings)


def summary_of(built: RLBuild) -> dict[str, Any]:
    table = {src: {"read": o.read, "kept": len(o.kept), "rejected": len(o.rejected), "rejected_by_gate": o.by_gate()}
             for src, o in sorted(built.ledger.items())}
    hist = Counter(round(r["pass_rate"], 2) for r in built.rates)
    return {"sources": table,
            "prompts": len(built.prompts),
            "by_task": dict(sorted(Counter(p["task"] for p in built.prompts).items())),
            "by_phase": dict(sorted(Counter(p["meta"]["phase"] for p in built.prompts).items())),
            "by_split": dict(sorted(Counter(p["split"] for p in built.prompts).items())),
            "pass_rate_histogram": {f"{k:.2f}": v for k, v in sorted(hist.items())},
            "candidates_sampled": len(built.rates),
            "decontamination_collisions": len(built.decontam_report),
            "rubric_items": sum(len(p["rubric"]) for p in built.prompts),
            "rubric_failures": len(built.rubric_failures)}
