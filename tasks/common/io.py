"""Atomic, deterministic I/O for stage outputs.

Why atomic: DVC caches whatever sits at an output path when a stage exits. A stage killed
half-way must never leave a half-written output behind, so every output directory is built
under a temporary sibling and renamed into place only when the stage succeeds.

Why deterministic: `dvc repro --force` twice must give identical hashes, so JSON is written
with sorted keys, no timestamps, and records in input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from tasks.common.records import RecordError, rejection, validate_record


class PathEscapeError(ValueError):
    """A path from a manifest that would resolve outside the directory it must stay in."""


def safe_join(root: str | os.PathLike, rel: str) -> Path:
    """Join a manifest-provided relative path to `root`, refusing anything that escapes it."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise PathEscapeError(f"invalid path {rel!r}")
    if os.path.isabs(rel):
        raise PathEscapeError(f"absolute path {rel!r} is not allowed under {root}")
    root_real = Path(root).resolve()
    target = (root_real / rel).resolve()
    if target != root_real and root_real not in target.parents:
        raise PathEscapeError(f"path {rel!r} escapes its root {root}")
    return target


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, UTF-8, no spaces that vary."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write pretty, sorted JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, sort_keys=True, indent=2)
        f.write("\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # a killed earlier attempt (SIGKILL, a lost worker) could not clean up after itself; one stage
    # writes one output folder at a time (DVC locks it), so its leftovers go now
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


# ---- read caps ---------------------------------------------------------------------------------
# Peak memory must not grow with the input: every reader holds at most about one cap's worth of
# input at a time. A line or record over its cap is read and dropped in blocks as it streams and
# quarantined with a reason; a file over its cap is refused before it is parsed. The collect stage
# takes its values from params.yaml `collect`; these are the defaults.
MAX_RECORD_BYTES = 64 << 20      # one JSONL line, one PubTator block, one MEDLINE citation
MAX_FILE_BYTES = 256 << 20       # a file parsed whole: JSON manifest, XML document, DICOM, image, .npz array
MAX_INFLATED_BYTES = 8 << 30     # a streamed file after decompression (bounds time; memory is per record)
_SKIP_BLOCK = 1 << 20            # an over-cap line is skipped this many bytes at a time


class InputTooLarge(Exception):
    """An input over its read cap. Not a ValueError, so `except ValueError` (bad JSON) never
    swallows it; `reason` is the quarantine reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def read_capped(path: str | os.PathLike, max_bytes: int) -> bytes:
    """A file's bytes, or InputTooLarge when it holds more than `max_bytes` (checked before reading,
    and again while reading, for files whose size the file system does not know)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise InputTooLarge("file_too_large", f"{path}: {size} bytes > {max_bytes}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputTooLarge("file_too_large", f"{path}: more than {max_bytes} bytes")
    return data


def iter_bounded_lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line, size in bytes) for each line of binary file `f`, newline included.

    `line` is None when the line is longer than `max_bytes` (newline not counted): its bytes are
    read and dropped in blocks, so a single huge line never sits in memory whole.
    """
    lineno = 0
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) <= max_bytes or raw.endswith(b"\n"):
            yield lineno, raw, len(raw)
            continue
        size = len(raw)
        while True:
            rest = f.readline(_SKIP_BLOCK)
            size += len(rest)
            if not rest or rest.endswith(b"\n"):
                break
        yield lineno, None, size


def parse_jsonl_line(raw: bytes | None, size: int, loc: str, max_line_bytes: int
                     ) -> tuple[dict | None, dict | None] | None:
    """One line from `iter_bounded_lines`: (obj, None), (None, rejection), or None for a blank line."""
    if raw is None:
        return None, rejection("line_too_large", f"{size} bytes > {max_line_bytes}", locator=loc)
    if not raw.strip():
        return None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, rejection("invalid_utf8", str(e)[:200], locator=loc)
    try:
        return json.loads(line), None
    except json.JSONDecodeError as e:
        return None, rejection("bad_json", f"{e.msg} at col {e.colno}", locator=loc)


def iter_jsonl(path: str | os.PathLike, max_line_bytes: int = MAX_RECORD_BYTES
               ) -> Iterator[tuple[dict | None, dict | None]]:
    """Yield (obj, None) for each good line, (None, rejection) for each bad one.

    Bad lines (invalid UTF-8, invalid JSON, longer than `max_line_bytes`) are quarantined with the
    file and line number; blank lines are skipped since they carry no record.
    """
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, raw, size in iter_bounded_lines(f, max_line_bytes):
            parsed = parse_jsonl_line(raw, size, f"{path}:{lineno}", max_line_bytes)
            if parsed is not None:
                yield parsed


# Wall-clock figures differ from run to run. They go to MLflow and stdout, not into DVC outputs, so a
# stage re-run on the same inputs reproduces its outputs byte for byte.
WALL_CLOCK_KEYS = frozenset({"seconds", "timings", "train_runtime", "train_runtime_s", "tokens_per_s",
                             "train_tokens_per_second", "train_samples_per_second", "train_steps_per_second"})


def without_wall_clock(obj: Any) -> Any:
    """`obj` with every WALL_CLOCK_KEYS entry removed, recursively (dicts and lists)."""
    if isinstance(obj, dict):
        return {k: without_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(obj, list):
        return [without_wall_clock(v) for v in obj]
    return obj


def path_prefixes(data_root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(absolute prefix, replacement) pairs, most specific first: the data root (params.yaml's
    unless given), then the project root."""
    from tasks.common.config import load_params, project_root, resolve

    root = str(project_root())
    if data_root is None:
        try:
            data_root = load_params().get("data_root", "../shared/data")
        except OSError:
            data_root = None
    pairs = []
    if data_root:  # as joined to the root (`/repo/../data`) and as resolved (`/data`): both reach outputs
        joined = resolve(str(data_root))
        pairs = [(str(joined), "${data_root}"), (str(joined.resolve()), "${data_root}")]
    pairs += [(root + "/", ""), (root, ".")]
    return sorted(pairs, key=lambda p: -len(p[0]))


def relative_paths(obj: Any, prefixes: list[tuple[str, str]] | None = None) -> Any:
    """`obj` with every absolute data-root or project-root path in its strings made relative
    (`${data_root}/...`, `data/...`), recursively: outputs must not depend on where the checkout lives."""
    prefixes = path_prefixes() if prefixes is None else prefixes
    if isinstance(obj, str):
        for prefix, repl in prefixes:
            if prefix in obj:
                obj = obj.replace(prefix, repl)
        return obj
    if isinstance(obj, dict):
        return {k: relative_paths(v, prefixes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [relative_paths(v, prefixes) for v in obj]
    return obj


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every object of a JSONL file the project wrote itself; a bad line is an error, not a rejection."""
    out = []
    for obj, rej in iter_jsonl(path):
        if rej is not None:
            raise ValueError(f"{rej['locator']}: {rej['reason']}: {rej['detail']}")
        out.append(obj)
    return out


def write_jsonl(path: str | os.PathLike, rows: Any) -> int:
    """Canonical JSONL (one `dumps` line per row), written atomically; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    n = 0
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def head_jsonl(path: str | os.PathLike, n: int) -> list[dict]:
    """The first `n` good objects of a JSONL file (a sample for MLflow; [] when the file is missing)."""
    if not Path(path).is_file():
        return []
    out = []
    for obj, _ in iter_jsonl(path):
        if obj is not None:
            out.append(obj)
            if len(out) == n:
                break
    return out


def validated(pairs: Iterable[tuple[dict | None, dict | None]], locator: str
              ) -> Iterator[tuple[dict | None, dict | None]]:
    """`iter_jsonl` pairs as records: (record, None) for a valid one, (None, rejection) otherwise."""
    for obj, rej in pairs:
        if rej is not None:
            yield None, rej
            continue
        try:
            yield validate_record(obj), None
        except RecordError as e:
            rec = obj if isinstance(obj, dict) else None
            yield None, rejection(e.reason, e.detail, record=rec, locator=locator)


def iter_records(paths: list[Path], max_line_bytes: int = MAX_RECORD_BYTES
                 ) -> Iterator[tuple[dict | None, dict | None]]:
    """Yield validated records from JSONL shards; invalid ones come back as rejections."""
    for path in paths:
        yield from validated(iter_jsonl(path, max_line_bytes), str(path))


def shard_paths(directory: str | os.PathLike) -> list[Path]:
    """The JSONL shards of a `kept/` directory, in name order."""
    return sorted(Path(directory).glob("part-*.jsonl"))


class ShardedJsonlWriter:
    """Write records as part-00000.jsonl, part-00001.jsonl, ... with a fixed shard size."""

    def __init__(self, directory: Path, shard_size: int = 50_000):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.count = 0
        self.bytes = 0
        self._fh = None

    def write(self, rec: dict) -> None:
        if self.count % self.shard_size == 0:
            self._roll()
        line = dumps(rec) + "\n"
        self._fh.write(line)
        self.count += 1
        self.bytes += len(line.encode("utf-8"))

    def _roll(self) -> None:
        if self._fh:
            self._fh.close()
        path = self.directory / f"part-{self.count // self.shard_size:05d}.jsonl"
        self._fh = open(path, "w", encoding="utf-8")

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


class _NoWriter:
    """The kept writer of a sink whose stage writes no per-record output (it only counts)."""
    count = 0

    def write(self, rec: dict) -> None:
        self.count += 1

    def close(self) -> None:
        pass


class StageSink:
    """Where a data stage puts every record it read: `keep` it or `reject` it with a reason.

    Layout under `out_dir`: kept/part-*.jsonl, rejected/part-*.jsonl (the one way every stage
    stores rejections). Locators and details of rejections are made relative to the project
    root or `${data_root}`. `close()` returns the accounting summary, writes summary.json and
    checks read == kept + rejected.
    """

    def __init__(self, out_dir: Path, *, shard_size: int = 50_000, sample_size: int = 20,
                 data_root: str | os.PathLike | None = None, kept: str | None = "kept"):
        self.out_dir = Path(out_dir)
        # `kept` names the folder kept records go to (e.g. `mentions`); None: the stage keeps no copies
        self.kept = ShardedJsonlWriter(self.out_dir / kept, shard_size) if kept else _NoWriter()
        self.rejected = ShardedJsonlWriter(self.out_dir / "rejected", shard_size)
        self.reasons: Counter[str] = Counter()
        self.read = 0
        self.kept_inputs = 0
        self.input_bytes = 0
        self.sample_size = sample_size
        self.kept_sample: list[dict] = []
        self.rejected_sample: dict[str, list[dict]] = {}
        self._prefixes = path_prefixes(data_root)

    def count_read(self, n: int = 1, nbytes: int = 0) -> None:
        """Count records read (call once per input record, before keep/reject)."""
        self.read += n
        self.input_bytes += nbytes

    def keep(self, rec: dict) -> None:
        self.keep_as([rec])

    def keep_as(self, outputs: list[dict]) -> None:
        """Keep one input record that becomes several output records (e.g. chunks)."""
        self.kept_inputs += 1
        for rec in outputs:
            self.kept.write(rec)
            if len(self.kept_sample) < self.sample_size:
                self.kept_sample.append(rec)

    def reject(self, entry: dict) -> None:
        """`entry` comes from records.rejection(...)."""
        for key in ("locator", "detail"):
            if isinstance(entry.get(key), str):
                entry[key] = relative_paths(entry[key], self._prefixes)
        self.rejected.write(entry)
        self.reasons[entry["reason"]] += 1
        bucket = self.rejected_sample.setdefault(entry["reason"], [])
        if len(bucket) < self.sample_size:
            bucket.append(entry)

    def close(self, **extra: Any) -> dict:
        self.kept.close()
        self.rejected.close()
        summary = {
            "read": self.read,
            "kept": self.kept_inputs,
            "rejected": self.rejected.count,
            "records_written": self.kept.count,
            "rejected_by_reason": dict(sorted(self.reasons.items())),
            **extra,
        }
        if summary["read"] != summary["kept"] + summary["rejected"]:
            raise RuntimeError(f"accounting broken: read={summary['read']} kept={summary['kept']} "
                               f"rejected={summary['rejected']}")
        write_json(self.out_dir / "summary.json", summary)
        return summary
