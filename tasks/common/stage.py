"""The stage contract: a typed config, one `run` function, one result type, one runner.

Every module `tasks/<stage>.py` declares

    STAGE = Stage("collect", CollectConfig, run)          # + uses_llm=..., out_dir=...
    def run(cfg: CollectConfig, ctx: StageContext) -> StageResult: ...
    if __name__ == "__main__":
        main(STAGE)

and `main` owns everything that is not the stage's own logic, in this order:

1. config: `params.yaml` section + `profiles.<profile>.<stage>` + `key=value` overrides into the
   typed config (unknown keys fail); `llm.*` overrides go to the `llm:` section, `engine.*`
   overrides to the `engine:` section (`ctx.engine`: how a sharded stage runs its shards, which
   never changes what it writes, so it is not part of the stage's own section);
2. the LLM client's life cycle when `uses_llm(cfg)` is true (the embedded server is started for
   the stage's duration and stopped after it), its params logged without the key;
3. the MLflow child run (`tasks.common.tracking.stage_run`);
4. the atomic output directory: `run` writes under `ctx.out`, a temporary sibling renamed into
   place only when `run` returns;
5. the accounting: a record sink opened through `ctx.sink()` is closed by the runner (it raises
   unless read == kept + rejected); a stage without a sink that reports `read` must report
   `kept` and `rejected` that add up;
6. `summary.json` (wall-clock keys removed, so a re-run is byte-identical) and MLflow: every
   numeric leaf of the summary, `result.metrics`, samples, artifacts and the LLM client's stats.

Rejections are stored one way, as `rejected/part-*.jsonl` through the sink, each entry from
`tasks.common.records.rejection` (a reason per entry). Locators in them are relative to the
project root (or `${data_root}`), so no output depends on where the checkout lives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

from tasks.common.config import (
    load_params,
    load_stage_config,
    project_root,
    resolve,
    split_llm_overrides,
    split_section_overrides,
)
from tasks.common.engine import EngineConfig
from tasks.common.io import (
    StageSink,
    atomic_output_dir,
    head_jsonl,
    path_prefixes,
    relative_paths,
    without_wall_clock,
    write_json,
)

C = TypeVar("C")


@dataclasses.dataclass
class StageResult:
    """What a stage's `run` returns.

    summary    deterministic facts about the outputs, written to `summary.json` (for a stage with a
               sink, merged into the sink's accounting); numeric leaves also go to MLflow
    metrics    MLflow-only numbers (wall clock, throughput, client stats): never in DVC outputs
    samples    a few output rows shown in MLflow (`kept_sample.jsonl`); default: the sink's sample
    artifacts  files under the output directory logged to MLflow, as `name` or (`name`, `folder`)
    line       the one line printed when the stage ends (default: read/kept/rejected)
    """
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    samples: list[dict] | None = None
    artifacts: list[str | tuple[str, str]] = dataclasses.field(default_factory=list)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    line: str = ""
    write_summary: bool = True


@dataclasses.dataclass
class StageContext:
    """What `run` gets besides its config: where to write, the LLM client, a step-metric logger."""
    name: str
    profile: str
    out: Path | None                      # None on non-zero ranks of a distributed run
    client: Any = None                    # tasks.llm.client.LLMClient when the stage uses an LLM
    tracker: Any = None                   # tasks.common.tracking.StageTracker (None off rank 0)
    data_root: Path | None = None        # locators under it are written as ${data_root}/...
    llm_argv: list[str] = dataclasses.field(default_factory=list)  # the `llm.*` overrides given
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)  # params.yaml `engine:`
    _sink: StageSink | None = None

    def sink(self, shard_size: int = 50_000, kept: str | None = "kept") -> StageSink:
        """The stage's record sink: <kept>/part-*.jsonl and rejected/part-*.jsonl under `out`
        (`kept=None` for a stage that only accounts for what it read, e.g. documents used as evidence)."""
        if self._sink is None:
            self._sink = StageSink(self.out, shard_size=shard_size, data_root=self.data_root, kept=kept)
        return self._sink

    def relative(self, obj: Any) -> Any:
        """`obj` with absolute project and data-root paths made relative (see io.relative_paths)."""
        return relative_paths(obj, path_prefixes(self.data_root))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Metrics during the run (per round, per training step); a no-op off rank 0."""
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=step)

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        """A file that belongs in MLflow and not in the DVC outputs (e.g. machine-dependent LLM replies)."""
        if self.tracker is not None:
            self.tracker.log_artifact(path, folder)


@dataclasses.dataclass
class Stage(Generic[C]):
    """One pipeline stage: its name, typed config and `run`; `section` is its params.yaml key."""
    name: str
    config: type[C]
    run: Callable[[C, StageContext], StageResult]
    uses_llm: Callable[[C], bool] = lambda cfg: False
    out_dir: Callable[[C], str] = lambda cfg: cfg.out_dir
    run_name: Callable[[C], str] | None = None    # the MLflow run name (eval@<checkpoint>)
    distributed: bool = False                     # every rank runs `run`; rank 0 alone writes and logs
    sharded: bool = False                         # runs its shards through ctx.engine (engine params logged)
    section: str = ""

    def __post_init__(self):
        self.section = self.section or self.name


_METRIC_UNSAFE = re.compile(r"[^\w\-. /]")


def numeric_leaves(obj: Any, prefix: str = "") -> dict[str, float]:
    """{'a': {'b': 1}, 'c': [..], 'd': True} -> {'a.b': 1.0}: the numbers MLflow can plot. Characters
    MLflow refuses in a metric name (a key such as `<|im_start|>` or `6+`) become `_`."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(numeric_leaves(v, f"{prefix}{_METRIC_UNSAFE.sub('_', str(k))}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix.rstrip(".")] = float(obj)
    return out


def check_accounting(summary: dict, stage: str) -> None:
    """read == kept + rejected wherever a stage reports what it read."""
    if "read" not in summary:
        return
    read, kept, rejected = summary["read"], summary.get("kept"), summary.get("rejected")
    if kept is None or rejected is None or read != kept + rejected:
        raise RuntimeError(f"{stage}: accounting broken: read={read} kept={kept} rejected={rejected}")


def rank() -> int:
    """This process's rank under torchrun/deepspeed (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def _artifacts(items: Iterable[str | tuple[str, str]]):
    for item in items:
        yield (item, None) if isinstance(item, str) else item


def main(stage: Stage[C], argv: list[str] | None = None) -> dict:
    """Run `stage` with `argv` overrides (default: the command line); returns the summary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stage_argv, _ = split_llm_overrides(argv)
    stage_argv, engine_argv = split_section_overrides(stage_argv, "engine")
    cfg, profile = load_stage_config(stage.section, stage.config, stage_argv)
    engine, _ = load_stage_config("engine", EngineConfig, engine_argv)
    name = stage.run_name(cfg) if stage.run_name else stage.name
    if stage.distributed and rank() != 0:
        result = stage.run(cfg, StageContext(name, profile, None))
        return result.summary

    from tasks.common.tracking import stage_run

    with contextlib.ExitStack() as stack:
        client, llm_params = None, {}
        if stage.uses_llm(cfg):
            from tasks.llm.server import open_stage_client
            client, llm_params = open_stage_client(stack, argv)
        tracker = stack.enter_context(stage_run(name, cfg, profile))
        if llm_params:
            tracker.mlflow.log_params(llm_params)
        if stage.sharded:
            tracker.mlflow.log_params({f"engine.{k}": v for k, v in dataclasses.asdict(engine).items()})
        out = stack.enter_context(atomic_output_dir(resolve(stage.out_dir(cfg))))
        ctx = StageContext(name, profile, out, client, tracker, data_root_of(cfg),
                           [a for a in argv if a.startswith("llm.") or a.startswith("profile=")], engine)
        result = stage.run(cfg, ctx)
        summary = _finish(ctx, result)
        if result.tags:
            tracker.mlflow.set_tags(result.tags)
        if client is not None:
            # MLflow only: cache hits differ between a first run and a re-run
            tracker.log_metrics({f"llm_{k}": v for k, v in client.stats.items()})
    print(f"{name}: {result.line or _default_line(summary)}")
    return summary


def _finish(ctx: StageContext, result: StageResult) -> dict:
    """Close the sink or check the accounting, write summary.json, log everything to MLflow."""
    tracker, out = ctx.tracker, ctx.out
    summary = ctx.relative(without_wall_clock(result.summary))
    # Per-shard accounting describes how the run was split (engine.shard_records, a source per
    # worker), not the outputs: it is checked where it is counted (engine.ShardLedger) and goes to
    # MLflow (shards.json), so outputs and dvc.lock do not depend on the execution layout.
    shards = summary.pop("shards", None)
    if ctx._sink is not None:
        summary = ctx._sink.close(**summary)       # writes summary.json; raises on broken accounting
        kept_sample, rejected_sample = ctx._sink.kept_sample, ctx._sink.rejected_sample
        input_bytes = ctx._sink.input_bytes
    else:
        check_accounting(summary, ctx.name)
        if result.write_summary:
            write_json(out / "summary.json", summary)
        kept_sample, rejected_sample, input_bytes = None, None, 0
        if (out / "rejected").is_dir():
            rejected_sample = {"all": [r for p in sorted((out / "rejected").glob("part-*.jsonl"))
                                       for r in head_jsonl(p, 20)][:20]}
    if result.samples is not None:
        kept_sample = result.samples
    tracker.log_summary(summary, kept_sample=kept_sample, rejected_sample=rejected_sample,
                        input_bytes=input_bytes,
                        numeric=numeric_leaves({k: v for k, v in summary.items() if k != "rejected_by_reason"}))
    if result.metrics:
        tracker.log_metrics(result.metrics)
    if shards is not None:
        tracker.log_shards(shards)
    for path, folder in _artifacts(result.artifacts):
        if (out / path).exists():
            tracker.log_artifact(out / path, folder)
    return summary


def _default_line(summary: dict) -> str:
    if "read" in summary:
        return f"read={summary['read']} kept={summary['kept']} rejected={summary['rejected']}"
    return ", ".join(f"{k}={v}" for k, v in summary.items() if isinstance(v, (int, float, str)))[:300]


def data_root_of(cfg: Any) -> Path:
    """The configured data root (the stage's own `data_root`, else params.yaml's)."""
    return resolve(getattr(cfg, "data_root", None) or load_params().get("data_root", "../shared/data"))


__all__ = ["Stage", "StageContext", "StageResult", "main", "numeric_leaves", "check_accounting", "rank",
           "project_root", "data_root_of"]
