"""The data stages' execution engine: input split into shards, shards mapped by Ray workers.

    cfg = EngineConfig(workers=4)                       # params.yaml `engine:`, or engine.workers=4
    shards = plan_jsonl_shards(paths, cfg.shard_records)
    for result in map_shards(process_shard, shards, cfg=cfg, shared=index):
        ...                                             # in shard order, whatever finished first

What runs where: a map function (`fn(shard, shared)`, a top-level function so it pickles by
reference) does the per-record work of one shard and returns what the driver needs; the driver
walks the results in shard order and does everything global or order-dependent (dedup, the
kept/rejected decision, samples, the sink). So the outputs depend on the input and the stage
config only, never on how many workers ran or which finished first.

Ray: `workers == 1`, or a single shard, runs in this process without starting Ray (same results,
no start-up cost). Otherwise a local Ray instance with `workers` CPUs is started (or the cluster
at `address` joined) and shut down afterwards; `shared` (a decontamination index, a model's
bytes) is put in the object store once and deserialized once per worker process. At most
`2 * workers` shards are in flight, so results waiting for the driver stay bounded. Workers
import the project through PYTHONPATH in the job's runtime_env; with `address`, every node must
see the checkout and `data_root` at the same paths (a shared filesystem), while shard results
travel back through the object store.

Shards of JSONL input are byte ranges of the upstream stage's part files, cut at line starts
every `shard_records` non-blank lines (a shard may span files); `iter_shard_records` yields
exactly what `io.iter_records` yields for those lines, locators (file:line) included (lines are
read with `io.iter_bounded_lines`, so an over-cap line is dropped in blocks, as there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from tasks.common.io import MAX_RECORD_BYTES, iter_bounded_lines, parse_jsonl_line, validated

S = TypeVar("S")
R = TypeVar("R")


@dataclasses.dataclass
class EngineConfig:
    """How shards are executed (never what they compute: outputs do not depend on it, except the
    per-shard counts in summary.json, which follow `shard_records`)."""
    workers: int = 2                 # Ray worker processes; 1 = in this process, no Ray
    address: str | None = None       # an existing Ray cluster (`ray://host:10001`, `auto`); None = local
    object_store_mb: int = 512       # local Ray's object store
    shard_records: int = 5000        # input records (non-blank lines) per shard

    def in_process(self, n_shards: int) -> bool:
        """True when `map_shards` runs the shards here, without Ray: one worker, or one shard."""
        return self.workers <= 1 or n_shards <= 1

    def __post_init__(self) -> None:
        if self.workers < 1 or self.shard_records < 1 or self.object_store_mb < 80:
            raise ValueError(f"engine: workers and shard_records must be >= 1 and object_store_mb >= 80, "
                             f"got {self.workers}, {self.shard_records}, {self.object_store_mb}")


# --------------------------------------------------------------------------- shards of JSONL input

@dataclasses.dataclass(frozen=True)
class JsonlSlice:
    """Lines of one file: bytes [start, stop), the first of them being line `first_line` (1-based)."""
    path: str
    start: int
    stop: int
    first_line: int
    items: int                       # non-blank lines: the records (or rejections) it yields


@dataclasses.dataclass(frozen=True)
class Shard:
    index: int
    slices: tuple[JsonlSlice, ...]

    @property
    def items(self) -> int:
        return sum(s.items for s in self.slices)


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    shards: list[Shard]
    truncated: bool                  # `limit` stopped the plan before the end of the input


def _is_item(raw: bytes | None) -> bool:
    """A line iter_jsonl yields something for: an over-cap line (None) or a non-blank one."""
    return raw is None or bool(raw.strip())


def plan_jsonl_shards(paths: Iterable[str | os.PathLike], shard_records: int, limit: int = 0,
                      max_line_bytes: int = MAX_RECORD_BYTES) -> ShardPlan:
    """Cut `paths` (read in order) into shards of `shard_records` items (non-blank lines); with
    `limit`, only the first `limit` items are planned. One bounded pass over the bytes, no parsing."""
    shards: list[Shard] = []
    pending: list[JsonlSlice] = []
    in_shard = total = 0

    def close_shard() -> None:
        nonlocal in_shard
        if pending:
            shards.append(Shard(len(shards), tuple(pending)))
            pending.clear()
        in_shard = 0

    for path in paths:
        path = str(Path(path))
        with open(path, "rb") as f:
            start = offset = items = 0
            first = 1
            for lineno, raw, size in iter_bounded_lines(f, max_line_bytes):
                item = _is_item(raw)
                if item and limit and total >= limit:
                    if items:
                        pending.append(JsonlSlice(path, start, offset, first, items))
                    close_shard()
                    return ShardPlan(shards, True)
                offset += size
                if item:
                    items += 1
                    in_shard += 1
                    total += 1
                    if in_shard >= shard_records:
                        pending.append(JsonlSlice(path, start, offset, first, items))
                        close_shard()
                        start, first, items = offset, lineno + 1, 0
            if items:
                pending.append(JsonlSlice(path, start, offset, first, items))
    close_shard()
    return ShardPlan(shards, False)


def iter_slice_jsonl(piece: JsonlSlice, max_line_bytes: int = MAX_RECORD_BYTES
                     ) -> Iterator[tuple[dict | None, dict | None]]:
    """`io.iter_jsonl` over one slice: (obj, None) per good line, (None, rejection) per bad one,
    with the file's own line numbers in the locators."""
    with open(piece.path, "rb") as f:
        f.seek(piece.start)
        offset = piece.start
        for n, raw, size in iter_bounded_lines(f, max_line_bytes):
            if offset >= piece.stop:
                break
            offset += size
            parsed = parse_jsonl_line(raw, size, f"{piece.path}:{piece.first_line + n - 1}", max_line_bytes)
            if parsed is not None:
                yield parsed


def iter_shard_records(shard: Shard, max_line_bytes: int = MAX_RECORD_BYTES
                       ) -> Iterator[tuple[dict | None, dict | None]]:
    """`io.iter_records` over a shard's lines: validated records, invalid ones as rejections."""
    for piece in shard.slices:
        yield from validated(iter_slice_jsonl(piece, max_line_bytes), piece.path)


# --------------------------------------------------------------------------- per-shard accounting

class ShardLedger:
    """Per-shard read/kept/rejected, taken from a StageSink's counters around each shard's replay.

        ledger = ShardLedger(sink)
        with ledger.shard(i):           # or ledger.shard(i, source="medquad")
            ...  # count_read / keep / reject for that shard's inputs
        summary["shards"] = ledger.rows()   # raises unless every row and the totals add up
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._rows: list[dict] = []

    def _counts(self) -> tuple[int, int, int]:
        return self.sink.read, self.sink.kept_inputs, self.sink.rejected.count

    @contextlib.contextmanager
    def shard(self, index: int, **labels: Any) -> Iterator[None]:
        r0, k0, j0 = self._counts()
        yield
        r1, k1, j1 = self._counts()
        self._rows.append({"shard": index, **labels, "read": r1 - r0, "kept": k1 - k0, "rejected": j1 - j0})

    def rows(self) -> list[dict]:
        check_shard_accounting(self._rows, *self._counts())
        return list(self._rows)


def check_shard_accounting(rows: Sequence[dict], read: int, kept: int, rejected: int) -> None:
    """read == kept + rejected in every shard, and the shards sum to the stage's totals."""
    for r in rows:
        if r["read"] != r["kept"] + r["rejected"]:
            raise RuntimeError(f"accounting broken in shard {r['shard']}: {r}")
    sums = tuple(sum(r[k] for r in rows) for k in ("read", "kept", "rejected"))
    if sums != (read, kept, rejected):
        raise RuntimeError(f"shard counts {sums} do not sum to the totals {(read, kept, rejected)}")


# --------------------------------------------------------------------------- map

def map_shards(fn: Callable[[S, Any], R], shards: Sequence[S], *, cfg: EngineConfig,
               shared: Any = None) -> Iterator[R]:
    """`fn(shard, shared)` for every shard, results yielded in shard order (a generator: Ray is
    started on the first `next` and shut down when it is exhausted or closed)."""
    shards = list(shards)
    if cfg.in_process(len(shards)):
        for shard in shards:
            yield fn(shard, shared)
        return
    import ray

    started = _connect(ray, cfg)
    try:
        shared_ref = [ray.put(shared)]     # wrapped in a list: Ray hands it over unresolved
        task = ray.remote(num_cpus=1, max_retries=0)(_run_shard)
        window = 2 * cfg.workers
        todo = iter(shards)
        in_flight: deque = deque(task.remote(fn, s, shared_ref) for s in itertools.islice(todo, window))
        while in_flight:
            result = ray.get(in_flight.popleft())
            nxt = next(todo, None)
            if nxt is not None:
                in_flight.append(task.remote(fn, nxt, shared_ref))
            yield result
    finally:
        if started:
            ray.shutdown()


_SHARED: dict[str, Any] = {}       # per worker process: object id -> the deserialized shared value


def _run_shard(fn: Callable, shard: Any, shared_ref: list) -> Any:
    import ray

    ref = shared_ref[0]
    key = ref.hex()
    if key not in _SHARED:
        _SHARED.clear()            # one stage's shared value at a time
        _SHARED[key] = ray.get(ref)
    return fn(shard, _SHARED[key])


def runtime_env() -> dict:
    """Workers import the project from the checkout and resolve paths against it."""
    from tasks.common.config import project_root

    root = str(project_root())
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "MEDX_PROJECT_ROOT": root}
    for key in ("HF_HUB_OFFLINE", "MEDX_DATA_ROOT"):
        if key in os.environ:
            env[key] = os.environ[key]
    return {"env_vars": env}


def _connect(ray: Any, cfg: EngineConfig) -> bool:
    """Join the running Ray (a caller's), the cluster at `address`, or start a local one; True
    when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    if cfg.address:
        ray.init(address=cfg.address, runtime_env=runtime_env(), log_to_driver=False)
    else:
        ray.init(num_cpus=cfg.workers, include_dashboard=False, log_to_driver=False,
                 object_store_memory=cfg.object_store_mb * 1024 * 1024, runtime_env=runtime_env())
    return True


__all__ = ["EngineConfig", "JsonlSlice", "Shard", "ShardPlan", "ShardLedger", "plan_jsonl_shards",
           "iter_slice_jsonl", "iter_shard_records", "check_shard_accounting", "map_shards", "runtime_env"]
