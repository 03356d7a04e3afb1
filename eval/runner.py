"""Run a model over benchmarks with one protocol, writing a per-item results JSONL as it goes.

    result = evaluate(adapter, specs, data_root, work_dir, settings)

1. Load every benchmark (quarantined lines are kept with their reason: read = items + quarantined),
   take the seeded slice of each for each mode, and plan (item, mode) tasks: `generate` for every
   item, `loglik` for closed items (choice, yes/no) when the adapter can score continuations. Items
   with images are skipped, with the reason `model_lacks_vision`, for a text-only model.
   Items per (benchmark, mode): `limits[benchmark]` if set, else `mode_limits[mode]` if set, else
   `limit` (0 = all). Every slice is a prefix of one seeded draw order per benchmark (shown in file
   order), so a smaller slice is inside a larger one (the generated items are log-likelihood items
   too) and a limit that grows keeps the items already answered.
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
import random
import time
from pathlib import Path
from typing import Any

from eval import MODES, templates
from eval.benchmarks import CLOSED_KINDS, BenchmarkSpec, Item, load
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
    mode_limits: dict[str, int] = dataclasses.field(default_factory=dict)  # per-mode override of limit
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
        bad = sorted(set(self.mode_limits) - set(MODES))
        if bad:
            raise ValueError(f"mode_limits: unknown mode(s) {bad}; choose from {MODES}")
        counts = {"limit": self.limit, **{f"limits.{k}": v for k, v in self.limits.items()},
                  **{f"mode_limits.{k}": v for k, v in self.mode_limits.items()}}
        negative = [k for k, v in counts.items() if v < 0]
        if negative:
            raise ValueError(f"{negative}: item counts must be >= 0 (0 = all)")

    def limit_for(self, benchmark: str, mode: str) -> int:
        """Items of `benchmark` evaluated in `mode` (0 = all)."""
        if benchmark in self.limits:
            return self.limits[benchmark]
        return self.mode_limits.get(mode, self.limit)

    def output_affecting(self) -> dict:
        """The settings that change an item's output or score. Item counts and batch size do not: the
        items a count selects are answered the same whatever the count (see `select_prefix`)."""
        d = dataclasses.asdict(self)
        for k in ("batch_size", "limit", "limits", "mode_limits", "store_output_chars"):
            d.pop(k)
        d["modes"] = sorted(d["modes"])
        return d


@dataclasses.dataclass
class EvalResult:
    rows: list[dict]
    specs: list[BenchmarkSpec]
    read: dict[str, int]
    valid: dict[str, int]
    selected: dict[str, list[Item]]      # per benchmark, the items of any mode (the largest slice)
    quarantined: list[dict]
    skipped: list[dict]
    fingerprint: str
    model: dict
    timings: dict[str, float]            # wall clock: MLflow only
    adapter_stats: dict[str, Any]        # deterministic adapter counts (summary.json)
    client_stats: dict[str, Any] = dataclasses.field(default_factory=dict)   # endpoint client: MLflow only
    # per benchmark and mode run: {"selected": items the mode applies to in its slice, "skipped": of
    # those, skipped}; the report checks selected = scored + skipped for each
    accounting: dict[str, dict[str, dict[str, int]]] = dataclasses.field(default_factory=dict)


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
    """<items_file> + <run_file> in `work_dir`: append-as-you-go rows of one fingerprint, keyed by `key(row)`
    (the benchmark runs: (benchmark, id, mode); the instruction-following replies: (id, digest))."""

    def __init__(self, work_dir: Path, fingerprint: str, *, fresh: bool, restart_on_mismatch: bool = False,
                 items_file: str = ITEMS_FILE, run_file: str = RUN_FILE, key=None, what: str = "results"):
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / items_file
        self.key = key or (lambda row: _key(row["benchmark"], row["id"], row["mode"]))
        run_path = self.dir / run_file
        if run_path.exists() and not fresh:
            old = json.loads(run_path.read_text()).get("fingerprint")
            if old != fingerprint and self.path.exists() and self.path.stat().st_size:
                if not restart_on_mismatch:
                    raise ResumeMismatch(f"{self.path} holds {what} of another model/settings ({old}); "
                                         f"use a new output directory or fresh=True (--fresh) to discard them")
                fresh = True      # a retrained checkpoint under the same name: its old results are stale
        if fresh and self.path.exists():
            self.path.unlink()
        run_path.write_text(json.dumps({"fingerprint": fingerprint}, indent=2) + "\n")
        self.rows: dict[tuple, dict] = {}
        if self.path.exists():
            for row, torn in iter_jsonl(self.path):
                if torn is None:          # a line torn by a kill mid-write: that item is asked again
                    self.rows[self.key(row)] = row
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - append-as-you-go, closed by close()

    def append(self, row: dict) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        self.rows[self.key(row)] = row

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


def draw_order(n: int, count: int, seed: int, name: str) -> list[int]:
    """The first `count` indices of benchmark `name`'s seeded draw order over `n` items.

    The draws of random.sample's set method (a uniform index, redrawn when already taken), kept going:
    the first k indices are what random.sample(range(n), k) returns whenever it uses that method
    (n > 21 + 4 ** ceil(log4(3k)), e.g. any benchmark of over 85 items for k = 20), so the slices of
    earlier runs are kept, and unlike random.sample the k-slice is a prefix of every larger slice."""
    rng = random.Random(f"{seed}:{name}")
    order: list[int] = []
    taken: set[int] = set()
    while len(order) < min(count, n):
        j = rng.randrange(n)
        if j not in taken:
            taken.add(j)
            order.append(j)
    return order


def select_prefix(items: list[Item], counts: dict[str, int], seed: int) -> dict[str, list[Item]]:
    """{key: the seeded slice of `counts[key]` items (0 = all)}, each in file order, each a prefix of
    the same draw order: a smaller slice is always inside a larger one."""
    n = len(items)
    sizes = {k: n if c <= 0 else min(c, n) for k, c in counts.items()}
    if not items:
        return {k: [] for k in counts}
    partial = [size for size in sizes.values() if size < n]      # the slices that need the draw order
    order = draw_order(n, max(partial), seed, items[0].benchmark) if partial else []
    out = {}
    for k, size in sizes.items():
        out[k] = list(items) if size >= n else [items[i] for i in sorted(order[:size])]
    return out


def mode_applies(item: Item, mode: str, adapter) -> bool:
    return mode == "generate" or (item.kind in CLOSED_KINDS and adapter.supports_loglik)


def plan(by_mode: dict[str, dict[str, list[Item]]], adapter, settings: RunSettings
         ) -> tuple[list, list[dict], dict[str, dict[str, dict[str, int]]]]:
    """(item, mode) tasks, skipped items (once per item, whatever its modes), and per benchmark and
    mode the items the mode applies to in its slice and how many of them were skipped.

    by_mode: {benchmark: {mode: items selected for the mode}}."""
    tasks, skipped, accounting = [], [], {}
    for name, modes in by_mode.items():
        acc = accounting.setdefault(name, {})
        in_mode = {m: {it.id for it in modes.get(m, [])} for m in settings.modes}
        union = max(modes.values(), key=len) if modes else []    # slices are prefixes: the largest holds all
        for m in settings.modes:
            acc[m] = {"selected": 0, "skipped": 0}
        for item in union:
            applies = [m for m in settings.modes if item.id in in_mode[m] and mode_applies(item, m, adapter)]
            for m in applies:
                acc[m]["selected"] += 1
            if item.images and not adapter.vision:
                skipped.append({"benchmark": item.benchmark, "id": item.id, "reason": "model_lacks_vision"})
                for m in applies:
                    acc[m]["skipped"] += 1
                continue
            tasks += [(item, m) for m in applies]
    return tasks, skipped, accounting


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

    read, valid, selected, by_mode, quarantined = {}, {}, {}, {}, []
    for spec in specs:
        res = load(spec, data_root)
        read[spec.name], valid[spec.name] = res.read, len(res.items)
        quarantined += res.quarantined
        by_mode[spec.name] = select_prefix(res.items, {m: settings.limit_for(spec.name, m) for m in settings.modes},
                                           settings.seed)
        selected[spec.name] = max(by_mode[spec.name].values(), key=len)
    fp = run_fingerprint(adapter, settings, getattr(judge, "name", None))
    store = ResultsFile(Path(work_dir), fp, fresh=fresh, restart_on_mismatch=restart_on_mismatch)
    tasks, skipped, accounting = plan(by_mode, adapter, settings)
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
    # this run's tasks only: the store may hold rows of items a larger limit selected before
    planned = {_key(it.benchmark, it.id, m) for it, m in tasks}
    rows = []
    for name, items in selected.items():
        for it in items:
            for mode in MODES:
                row = store.rows.get(_key(name, it.id, mode))
                if row is not None and _key(name, it.id, mode) in planned:
                    rows.append(row)
    return EvalResult(rows, list(specs), read, valid, selected, quarantined, skipped, fp,
                      adapter.describe(), timings, dict(getattr(adapter, "stats", {}) or {}),
                      dict(getattr(adapter, "client_stats", {}) or {}), accounting)


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
