"""Run a model over benchmarks with one protocol, writing a per-item results JSONL as it goes.

    result = evaluate(adapter, specs, data_root, work_dir, settings)

1. Load every benchmark (quarantined lines are kept with their reason: read = items + quarantined),
   take the seeded `limit` slice of each, and plan (item, mode) tasks: `generate` for every item,
   `loglik` for closed items (choice, yes/no) when the adapter can score continuations. Items with
   images are skipped, with the reason `model_lacks_vision`, for a text-only model.
2. Tasks already in `work_dir/items.jsonl` under the same fingerprint (model identity, settings that
   change outputs, template version) are not asked again: an endpoint that fails mid-run costs
   only the items it had not answered. A different fingerprint is refused unless `fresh=True`
   (discard) or `restart_on_mismatch=True` (the stage: a retrained checkpoint keeps its name).
3. The rest run in batches of `batch_size` (longest prompts first, so a batch pads little); each
   result is scored at once and appended (flushed) to items.jsonl. An adapter exception for any item
   of a batch writes the batch's other results and stops the run with `RunInterrupted`; run again to
   resume.
4. The rows of the selected items, sorted canonically (benchmark, file order, mode), are returned
   for the report; a resumed run therefore reports exactly what a clean run reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from eval import MODES, templates
from eval.benchmarks import CLOSED_KINDS, BenchmarkSpec, Item, load, select
from eval.models import NoOutput
from eval.scoring import ItemScore, score_loglik, score_output
from tasks.common.io import iter_jsonl

ITEMS_FILE = "items.jsonl"
RUN_FILE = "run.json"


class RunInterrupted(RuntimeError):
    """The adapter failed for some items; what was answered is saved, a re-run resumes."""


class ResumeMismatch(RuntimeError):
    pass


@dataclasses.dataclass
class RunSettings:
    modes: tuple[str, ...] = MODES
    style: str = "direct"                 # direct | thinking
    max_new_tokens: int = 32              # closed and short answers
    max_new_tokens_thinking: int = 512    # style=thinking: room for the reasoning block
    max_new_tokens_longform: int = 256    # reports, captions, OCR
    batch_size: int = 8
    limit: int = 0                        # items per benchmark (seeded sample); 0 = all
    limits: dict[str, int] = dataclasses.field(default_factory=dict)   # per-benchmark override of limit
    seed: int = 1234
    continuation: str = "text"            # loglik continuations: option text | letter
    store_output_chars: int = 2000        # outputs kept in items.jsonl (head + tail beyond this)

    def __post_init__(self) -> None:
        self.modes = tuple(self.modes)
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes {list(self.modes)}: choose from {MODES}")
        if self.style not in templates.STYLES:
            raise ValueError(f"style {self.style!r}: one of {templates.STYLES}")
        if self.continuation not in templates.CONTINUATIONS:
            raise ValueError(f"continuation {self.continuation!r}: one of {templates.CONTINUATIONS}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")

    def output_affecting(self) -> dict:
        """The settings that change an item's output or score (limit and batch size do not)."""
        d = dataclasses.asdict(self)
        for k in ("batch_size", "limit", "limits", "store_output_chars"):
            d.pop(k)
        d["modes"] = sorted(d["modes"])
        return d


@dataclasses.dataclass
class EvalResult:
    rows: list[dict]
    specs: list[BenchmarkSpec]
    read: dict[str, int]
    valid: dict[str, int]
    selected: dict[str, list[Item]]
    quarantined: list[dict]
    skipped: list[dict]
    fingerprint: str
    model: dict
    timings: dict[str, float]            # wall clock: MLflow only
    adapter_stats: dict[str, Any]        # deterministic adapter counts (summary.json)
    client_stats: dict[str, Any] = dataclasses.field(default_factory=dict)   # endpoint client: MLflow only


def run_fingerprint(adapter, settings: RunSettings, judge_name: str | None) -> str:
    blob = json.dumps({"model": adapter.describe(), "settings": settings.output_affecting(),
                       "templates": templates.fingerprint(), "judge": judge_name}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _truncate(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    return text[: n // 2] + f"\n...[{len(text) - n} chars cut]...\n" + text[-n // 2:]


def _key(benchmark: str, item_id: str, mode: str) -> tuple[str, str, str]:
    return benchmark, item_id, mode


class ResultsFile:
    """items.jsonl + run.json in `work_dir`: append-as-you-go rows of one fingerprint."""

    def __init__(self, work_dir: Path, fingerprint: str, *, fresh: bool, restart_on_mismatch: bool = False):
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / ITEMS_FILE
        run_file = self.dir / RUN_FILE
        if run_file.exists() and not fresh:
            old = json.loads(run_file.read_text()).get("fingerprint")
            if old != fingerprint and self.path.exists() and self.path.stat().st_size:
                if not restart_on_mismatch:
                    raise ResumeMismatch(f"{self.path} holds results of another model/settings ({old}); "
                                         f"use a new output directory or fresh=True (--fresh) to discard them")
                fresh = True      # a retrained checkpoint under the same name: its old results are stale
        if fresh and self.path.exists():
            self.path.unlink()
        run_file.write_text(json.dumps({"fingerprint": fingerprint}, indent=2) + "\n")
        self.rows: dict[tuple[str, str, str], dict] = {}
        if self.path.exists():
            for row, torn in iter_jsonl(self.path):
                if torn is None:          # a line torn by a kill mid-write: that item is asked again
                    self.rows[_key(row["benchmark"], row["id"], row["mode"])] = row
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - append-as-you-go, closed by close()

    def append(self, row: dict) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        self.rows[_key(row["benchmark"], row["id"], row["mode"])] = row

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _row(item: Item, mode: str, sc: ItemScore, output: str | None, settings: RunSettings,
         logprobs: list[float] | None = None) -> dict:
    row = {"benchmark": item.benchmark, "id": item.id, "subset": item.subset, "kind": item.kind,
           "mode": mode, "score": sc.score, "chance": item.chance, "parsed": sc.parsed,
           "gold": list(item.answers), "failure": sc.failure, "metrics": sc.metrics}
    if output is not None:
        row["output"] = _truncate(output, settings.store_output_chars)
        row["output_chars"] = len(output)
    if logprobs is not None:
        row["logprobs"] = [round(x, 6) for x in logprobs]
    return row


def _max_new_tokens(item: Item, settings: RunSettings) -> int:
    if item.kind in ("longform", "ocr"):
        return settings.max_new_tokens_longform
    return settings.max_new_tokens_thinking if settings.style == "thinking" else settings.max_new_tokens


def plan(selected: dict[str, list[Item]], adapter, settings: RunSettings) -> tuple[list, list[dict]]:
    tasks, skipped = [], []
    for items in selected.values():
        for item in items:
            if item.images and not adapter.vision:
                skipped.append({"benchmark": item.benchmark, "id": item.id, "reason": "model_lacks_vision"})
                continue
            if "generate" in settings.modes:
                tasks.append((item, "generate"))
            if "loglik" in settings.modes and item.kind in CLOSED_KINDS and adapter.supports_loglik:
                tasks.append((item, "loglik"))
    return tasks, skipped


def _batches(pending: list[tuple[Item, str]], settings: RunSettings):
    """Batches of one benchmark, mode and token budget, longest prompt first (little padding)."""
    groups: dict[tuple, list] = {}
    for item, mode in pending:
        groups.setdefault((item.benchmark, mode, _max_new_tokens(item, settings)), []).append(item)
    for (bench, mode, budget), items in groups.items():
        def length(it: Item) -> int:
            return len(it.question) + len(it.context) + sum(len(v) for _, v in it.options)
        items = sorted(items, key=lambda it: (-length(it), it.id))
        for i in range(0, len(items), settings.batch_size):
            yield mode, budget, items[i:i + settings.batch_size]


def evaluate(adapter, specs: list[BenchmarkSpec], data_root: str | Path, work_dir: str | Path,
             settings: RunSettings, *, judge=None, progress: bool = False, fresh: bool = False,
             restart_on_mismatch: bool = False) -> EvalResult:
    from tqdm import tqdm

    from tasks.llm.client import LLMError

    read, valid, selected, quarantined = {}, {}, {}, []
    for spec in specs:
        res = load(spec, data_root)
        read[spec.name], valid[spec.name] = res.read, len(res.items)
        quarantined += res.quarantined
        selected[spec.name] = select(res.items, settings.limits.get(spec.name, settings.limit), settings.seed)
    fp = run_fingerprint(adapter, settings, getattr(judge, "name", None))
    store = ResultsFile(Path(work_dir), fp, fresh=fresh, restart_on_mismatch=restart_on_mismatch)
    tasks, skipped = plan(selected, adapter, settings)
    pending = [(it, m) for it, m in tasks if _key(it.benchmark, it.id, m) not in store.rows]
    timings: dict[str, float] = {}
    failures: list[str] = []
    bar = tqdm(total=len(pending), disable=not progress, desc=f"eval {adapter.name}", unit="item")
    try:
        for mode, budget, items in _batches(pending, settings):
            t0 = time.perf_counter()
            if mode == "generate":
                reqs = None
                prompts = [(it, templates.generation_prompt(it, settings.style)) for it in items]
                outputs = adapter.generate(prompts, budget)
            else:
                reqs = [(it, templates.loglik_request(it, settings.continuation)) for it in items]
                outputs = adapter.loglik(reqs)
            elapsed = time.perf_counter() - t0
            timings[f"{mode}_s"] = timings.get(f"{mode}_s", 0.0) + elapsed
            timings[f"{mode}_items"] = timings.get(f"{mode}_items", 0) + len(items)
            for idx, (it, out) in enumerate(zip(items, outputs)):
                if isinstance(out, BaseException):
                    failures.append(f"{it.benchmark}/{it.id}: {type(out).__name__}: {str(out)[:200]}")
                    continue
                try:
                    row = _score(it, mode, out, settings, judge, reqs[idx][1] if mode == "loglik" else None)
                except LLMError as e:   # the judge's endpoint failed: stop asking it, resume later
                    failures.append(f"{it.benchmark}/{it.id}: judge: {str(e)[:200]}")
                    break
                store.append(row)
            store.flush()
            bar.update(len(items))
            if failures:
                raise RunInterrupted(f"{len(failures)} item(s) failed, {len(store.rows)} result(s) saved in "
                                     f"{store.path}; run again to resume. First: {failures[0]}")
    finally:
        bar.close()
        store.close()
    rows = []
    for name, items in selected.items():
        for it in items:
            for mode in MODES:
                row = store.rows.get(_key(name, it.id, mode))
                if row is not None:
                    rows.append(row)
    return EvalResult(rows, list(specs), read, valid, selected, quarantined, skipped, fp,
                      adapter.describe(), timings, dict(getattr(adapter, "stats", {}) or {}),
                      dict(getattr(adapter, "client_stats", {}) or {}))


def _score(item: Item, mode: str, out: Any, settings: RunSettings, judge, req) -> dict:
    if isinstance(out, NoOutput):   # zero metrics of the item's kind, the reason as its failure
        zero = (score_output(item, None).metrics if mode == "generate" else {"acc": 0.0, "acc_norm": 0.0})
        return _row(item, mode, ItemScore(0.0, None, out.reason, zero), None, settings)
    if mode == "generate":
        return _row(item, mode, score_output(item, out, judge), out, settings)
    return _row(item, mode, score_loglik(item, req, out), None, settings, logprobs=out)


def write_items(rows: list[dict], path: Path) -> None:
    """The canonical items.jsonl of a finished run (sorted rows, one JSON object per line)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
