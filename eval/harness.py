"""One evaluation, end to end: config -> model adapter -> runner (+ instruction following,
eval/instruct.py, on the same adapter) -> report files.

Used by the `eval` stage (tasks/eval.py, one checkpoint per DVC foreach entry) and by the CLI
(`python -m eval`), so both evaluate with exactly the same protocol. `EvalConfig` is the stage's
typed params section (`eval:` in params.yaml); every field has a default, so the stage also runs
when the section is absent.

LLM clients. The pipeline's client (the `llm:` section; the stage runner opens it when `uses_llm`)
serves the llm rubric judge and `endpoint: local` (the pipeline's own model under test). An external
endpoint (`endpoint: http://...`) is the model under test, not the pipeline's LLM: the harness opens
its client itself, with the `llm:` section's settings (timeouts, retries, response cache) and the
endpoint's URL. Without a client from the caller (the CLI), the harness opens what it needs.

The endpoint under test is known by its identity and `endpoint_revision` (eval/models.py): its
normalised URL, or for `local` the served GGUF file's digest (the server's port changes every start),
so two models served under one model name never share cached answers or resumed results.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from eval.benchmarks import BUNDLED, BenchmarkSpec, byo_spec, get_spec
from eval.heldout import HeldoutConfig, heldout_perplexity
from eval.instruct import InstructParams, run_instruct
from eval.instruct import write_items as write_instruct_items
from eval.judge import LLMRubricJudge, LocalRubricJudge
from eval.models import EndpointModel, HFModel, PredictionsModel, image_budget, local_endpoint_identity
from eval.report import load_decontam, write_report
from eval.runner import EvalResult, RunSettings, evaluate, write_items
from models.config import ImageBudget


@dataclasses.dataclass
class ByoConfig:
    path: str                       # JSONL file (relative paths from the project root)
    family: str
    category: str = ""              # "" = the family's default category


@dataclasses.dataclass
class JudgeConfig:
    method: str = "local"           # local (lexical rubric, no LLM) | llm (rubric prompt via `llm:`) | none
    penalty: float = 0.5            # credit lost per unsupported statement, in key points
    constrained_json: bool = True   # response_format schema (llama.cpp server, vLLM)
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if self.method not in ("local", "llm", "none"):
            raise ValueError(f"judge.method {self.method!r}: local | llm | none")


@dataclasses.dataclass
class DecontamConfig:
    report: str = "data/clean/decontamination_report.jsonl"
    kept_dirs: list[str] = dataclasses.field(default_factory=lambda: ["data/clean/kept"])


@dataclasses.dataclass
class EvalConfig:
    checkpoint: str = "base"        # the name results are filed under: <out_root>/<checkpoint>
    model_path: str = ""            # a local HF checkpoint (causal LM or image-text-to-text) ...
    endpoint: str = ""              # ... or an OpenAI-compatible base URL ("local": the `llm:` section's
                                    #     endpoint, by default the project's llama.cpp server)
    endpoint_model: str = ""        #     model name at the endpoint ("" = llm.model)
    endpoint_revision: str = ""     #     what the endpoint serves (checkpoint name, hash): part of the
                                    #     response-cache key and the resume identity, with the URL
    endpoint_vision: bool = False   #     send images (data URLs) to the endpoint
    predictions: str = ""           # ... or a predictions JSONL ({benchmark, id, output}) to score
    max_predictions_bytes: int = 1 << 30   # a predictions file is held whole: refused above this size
    benchmarks: list[str] = dataclasses.field(default_factory=lambda: list(BUNDLED))
    byo: dict[str, ByoConfig] = dataclasses.field(default_factory=dict)
    limit: int = 0                  # items per benchmark, seeded sample (0 = all)
    limits: dict[str, int] = dataclasses.field(default_factory=dict)   # per-benchmark override
    mode_limits: dict[str, int] = dataclasses.field(default_factory=dict)  # per-mode override of limit
                                    # ({loglik: 200}: log-likelihood is cheap, generation is not);
                                    # limits[benchmark] > mode_limits[mode] > limit
    images: dict[str, Any] = dataclasses.field(default_factory=dict)   # ImageBudget overrides (training's
                                    # encode.images keys) over the checkpoint's medx_model.json budget
    modes: list[str] = dataclasses.field(default_factory=lambda: ["generate", "loglik"])
    style: str = "auto"             # auto | direct | thinking (<think> block stripped before parsing); auto:
                                    # thinking for a checkpoint trained with reasoning blocks (its
                                    # medx_model.json says thinking_trained: mid-training on), else direct
    continuation: str = "text"      # loglik continuations: option text | letter
    max_new_tokens: int = 32
    max_new_tokens_thinking: int = 512
    max_new_tokens_longform: int = 256
    batch_size: int = 8
    threads: int = 2
    seed: int = 1234
    device: Literal["auto", "cpu", "cuda"] = "auto"   # HF model: auto = cuda + bfloat16 when present,
                                                      # else cpu float32 (tasks.training.device.resolve)
    data_root: str = "../shared/data"
    out_root: str = "data/eval"
    work_root: str = ".cache/eval"  # resumable per-item results, outside DVC outputs
    judge: JudgeConfig = dataclasses.field(default_factory=JudgeConfig)
    decontam: DecontamConfig = dataclasses.field(default_factory=DecontamConfig)
    # held-out medical perplexity of a project checkpoint (eval/heldout.py); heldout: "" = not measured
    perplexity: HeldoutConfig = dataclasses.field(default_factory=lambda: HeldoutConfig(heldout=""))
    # instruction following on medical requests (eval/instruct.py): its own items, replies and cache; not
    # part of `settings()`, so the benchmark runs' fingerprint and resumed items are untouched
    instruct: InstructParams = dataclasses.field(default_factory=InstructParams)

    def __post_init__(self) -> None:
        sources = [bool(self.model_path), bool(self.endpoint), bool(self.predictions)]
        if sum(sources) > 1:
            raise ValueError("set only one of model_path, endpoint, predictions")
        self.settings()   # validates modes, style, continuation, sizes, mode limits
        image_budget(ImageBudget(), self.images)   # unknown keys and non-numbers fail before any model loads

    def resolved_style(self) -> str:
        """`style`, with auto resolved from the checkpoint: a model trained to reason inside <think> is
        asked to (the prompt's thinking line, the template's plain generation prompt, room for the
        block); pre-filling an empty block instead puts it where training never did."""
        if self.style != "auto":
            return self.style
        return "thinking" if self.model_path and thinking_trained(resolve_path(self.model_path)) else "direct"

    def settings(self) -> RunSettings:
        return RunSettings(modes=tuple(self.modes), style=self.resolved_style(), max_new_tokens=self.max_new_tokens,
                           max_new_tokens_thinking=self.max_new_tokens_thinking,
                           max_new_tokens_longform=self.max_new_tokens_longform, batch_size=self.batch_size,
                           limit=self.limit, limits=dict(self.limits), mode_limits=dict(self.mode_limits),
                           seed=self.seed, continuation=self.continuation)


def thinking_trained(path: Path) -> bool:
    from models.checkpoint import META_FILE, CheckpointError, read_meta

    if not (path / META_FILE).is_file():
        return False
    try:
        return bool(read_meta(path).get("thinking_trained", False))
    except CheckpointError:
        return False


def resolve_path(path: str) -> Path:
    from tasks.common.config import resolve

    return resolve(path)


def specs_of(cfg: EvalConfig) -> list[BenchmarkSpec]:
    extra = {name: byo_spec(name, str(resolve_path(b.path)), b.family, b.category or None)
             for name, b in cfg.byo.items()}
    names = list(dict.fromkeys([*cfg.benchmarks, *extra]))
    return [get_spec(n, extra) for n in names]


def needs_judge(cfg: EvalConfig) -> bool:
    return any(s.family == "longform" for s in specs_of(cfg))


def uses_llm(cfg: EvalConfig) -> bool:
    """Whether a run needs the pipeline's LLM client: the llm rubric judge (when a long-form benchmark
    is evaluated) or `endpoint: local`."""
    from tasks.llm.client import LOCAL

    return cfg.endpoint == LOCAL or (cfg.judge.method == "llm" and needs_judge(cfg))


@contextlib.contextmanager
def _llm_config(llm_cfg, base_url: str, model: str = "") -> Iterator:
    """The LLM config with a live base_url (the project's llama.cpp server when it is 'local')."""
    from tasks.llm.server import endpoint

    cfg = dataclasses.replace(llm_cfg, base_url=base_url or llm_cfg.base_url, model=model or llm_cfg.model)
    with endpoint(cfg) as live:
        yield live


@contextlib.contextmanager
def _endpoint_config(cfg: EvalConfig, llm_cfg, client) -> Iterator:
    """The live LLM config of the endpoint under test."""
    from tasks.llm.client import LOCAL, LLMConfig

    if client is not None and cfg.endpoint == LOCAL:    # the pipeline's server, already up
        yield dataclasses.replace(client.cfg, model=cfg.endpoint_model or client.cfg.model)
        return
    with _llm_config(llm_cfg or LLMConfig(), cfg.endpoint, cfg.endpoint_model) as live:
        yield live


@contextlib.contextmanager
def open_model(cfg: EvalConfig, llm_cfg=None, client=None) -> Iterator:
    """The adapter the config names (closed, and any server it started stopped, on exit)."""
    if cfg.predictions:
        yield PredictionsModel(resolve_path(cfg.predictions), max_file_bytes=cfg.max_predictions_bytes)
    elif cfg.endpoint:
        from tasks.llm.client import LOCAL

        with _endpoint_config(cfg, llm_cfg, client) as live:
            # `local`: known by the model file it serves, not by its port (new at every start)
            identity = local_endpoint_identity(live) if cfg.endpoint == LOCAL else ""
            model = EndpointModel(live, vision=cfg.endpoint_vision, concurrency_batch=cfg.batch_size,
                                  revision=cfg.endpoint_revision, identity=identity, images=cfg.images)
            try:
                yield model
            finally:
                model.close()
    elif cfg.model_path:
        yield HFModel(resolve_path(cfg.model_path), batch_size=cfg.batch_size, threads=cfg.threads, seed=cfg.seed,
                      device=cfg.device, images=cfg.images)
    else:
        raise ValueError("no model: set model_path, endpoint or predictions")


@contextlib.contextmanager
def open_judge(cfg: EvalConfig, llm_cfg=None, client=None) -> Iterator:
    if cfg.judge.method == "none":
        yield None
    elif cfg.judge.method == "local":
        yield LocalRubricJudge(penalty=cfg.judge.penalty)
    else:
        from tasks.llm.client import LLMClient, LLMConfig

        with contextlib.ExitStack() as stack:
            if client is None:
                live = stack.enter_context(_llm_config(llm_cfg or LLMConfig(), ""))
                client = stack.enter_context(LLMClient(live))
            yield LLMRubricJudge(client, penalty=cfg.judge.penalty, constrained_json=cfg.judge.constrained_json,
                                 max_tokens=cfg.judge.max_tokens)


def run(cfg: EvalConfig, out_dir: str | Path, work_dir: str | Path, *, llm_cfg=None, client=None,
        profile: str | None = None, progress: bool = False, fresh: bool = False,
        restart_on_mismatch: bool = False, title: str | None = None) -> tuple[dict, dict, EvalResult]:
    """Evaluate and write items.jsonl + the report files into `out_dir`; with `instruct.enabled`, the
    instruction-following items too (instruct_items.jsonl, metrics.json `instruct`, a report section).

    client   the pipeline's LLM client, open (the stage runner's): the llm judge and endpoint=local use it
    llm_cfg  settings of the clients the harness opens itself; default: the `llm:` section under
             `profile` when a profile is given (the stage), else LLMConfig() (the CLI)"""
    if llm_cfg is None and profile is not None and cfg.endpoint:
        from tasks.llm.client import load_llm_config

        llm_cfg = load_llm_config([f"profile={profile}"])
    specs = specs_of(cfg)
    with contextlib.ExitStack() as stack:
        judge = stack.enter_context(open_judge(cfg, llm_cfg, client)) if needs_judge(cfg) else None
        adapter = stack.enter_context(open_model(cfg, llm_cfg, client))
        result = evaluate(adapter, specs, resolve_path(cfg.data_root), work_dir, cfg.settings(), judge=judge,
                          progress=progress, fresh=fresh, restart_on_mismatch=restart_on_mismatch)
        if isinstance(adapter, PredictionsModel):
            result.adapter_stats["unmatched_predictions"] = adapter.unmatched()
        # the same adapter, the same style; replies cached beside items.jsonl (instruct_items.jsonl)
        instruct = (run_instruct(adapter, cfg.instruct, resolve_path(cfg.data_root), work_dir,
                                 style=cfg.resolved_style(), batch_size=cfg.batch_size, progress=progress, fresh=fresh,
                                 restart_on_mismatch=restart_on_mismatch)
                    if cfg.instruct.enabled else None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_items(result.rows, out / "items.jsonl")
    if instruct is not None:
        write_instruct_items(instruct, out / "instruct_items.jsonl")
    decontam = load_decontam(resolve_path(cfg.decontam.report),
                             [resolve_path(d) for d in cfg.decontam.kept_dirs if resolve_path(d).is_dir()])
    heldout = (heldout_perplexity(cfg.perplexity, resolve_path(cfg.model_path), device=cfg.device,
                                  images=cfg.images, seed=cfg.seed)
               if cfg.perplexity.heldout else None)
    metrics, summary = write_report(result, out, decontam=decontam, data_root=resolve_path(cfg.data_root),
                                    title=title or f"Evaluation: {cfg.checkpoint}", heldout=heldout, instruct=instruct)
    return metrics, summary, result
