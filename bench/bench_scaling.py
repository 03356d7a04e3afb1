"""Cost growth with corpus size (clean, quality at 1x / 2x / 4x the default corpus) and the Ray
workers curve (clean, quality, entity_map at workers 1, 2).

Run:   nice -n 10 .venv/bin/python bench/bench_scaling.py [--sizes 1,2,4] [--workers 1,2]
           [--profile default|tiny] [--corpus DIR] [--copies rot|plain] [--skip-sizes] [--skip-workers]

Corpus: the default `collect` output (run into a temporary dir, or --corpus DIR) replicated N
times with ids suffixed `#xR`. By default (--copies rot) copy R > 0 has every ASCII letter rotated
by R places (ROT-R): a new document to exact and near dedup and to decontamination, with the same
lengths, symbol/digit ratios, line and n-gram repetition structure, word and chunk counts, so the
clean rules judge it as they judge the original and every copy does the full work of new data.
Verbatim copies (--copies plain) are exact duplicates: clean rejects copies 2..N after the rules,
so that curve measures the cost of duplicates, not of more data. Images are shared by the copies
(only their question text is rotated), so their exact-dedup keys differ too.

Sizes: in this process, one stage after the other (clean on the Nx collect output, quality on
that clean output), with `engine.workers=1` where the stages have the engine, after one untimed
warm-up of both on the first 8,000 records (one-time imports and loads): MB (the stage's input part
files), wall and CPU seconds (time.process_time plus finished child processes: quality trains
fastText in a subprocess), MB/s and s per MB of CPU, the ratio of CPU s/MB
to the 1x run (1.00 = linear cost; above = superlinear) and the same ratio of wall s/MB; then a
least-squares fit of seconds = fixed + per-MB * MB over the sizes. quality's bootstrap rounds are
printed: its training loop has fixed sizes, so its cost is a constant plus a per-record scoring
cost, and a run that needs another round costs more at any size.

Workers: `python -m tasks.<stage> engine.workers=N` as a subprocess on the 1x data, wall seconds
and the speedup over workers=1 (CPU of Ray's worker processes is not visible from here, so no CPU
column). entity_map gets a tree built here from the DOID disease names (data_root vocab, one
category, ~9k entities; amcs off: it embeds vocabularies with MiniLM, which is not the sharded
scan). Skipped, with the reason printed, when the stages have no `engine:` section yet or Ray is
not installed. The machine's cores are the ceiling: with 2 cores, 2 workers is the whole machine.
Outputs and MLflow go to a temporary directory; data/ and mlflow.db are untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peer  # noqa: E402  (the corpus helpers)

ROOT = bench_peer.ROOT
WARMUP_RECORDS = 8000
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def rot(text: str, r: int) -> str:
    """ASCII letters rotated by r places, everything else unchanged (lengths and classes kept)."""
    r %= 26
    table = str.maketrans(_LOWER + _LOWER.upper(), _LOWER[r:] + _LOWER[:r] + (_LOWER[r:] + _LOWER[:r]).upper())
    return text.translate(table)


def replicate(collect_dir: Path, factor: int, out: Path, mode: str, limit: int = 0) -> Path:
    """`factor` copies of the collect output's kept records (the first `limit`, 0 = all) into
    `out`/kept (one part file)."""
    from tasks.common.io import shard_paths

    (out / "kept").mkdir(parents=True, exist_ok=True)
    lines = [line for p in shard_paths(collect_dir / "kept") for line in p.read_text("utf-8").splitlines() if line]
    lines = lines[:limit] if limit else lines
    with open(out / "kept" / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for r in range(factor):
            for line in lines:
                if r == 0:
                    f.write(line + "\n")
                    continue
                rec = json.loads(line)
                rec["id"] = f"{rec['id']}#x{r}"
                if mode == "rot":
                    rec["text"] = rot(rec["text"], r)
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return out


def input_mb(stage_in: Path) -> float:
    return sum(p.stat().st_size for p in (stage_in / "kept").glob("part-*.jsonl")) / 1e6


def run_in_process(stage: str, argv: list[str]) -> tuple[dict, float, float]:
    from tasks.common.stage import main as run_stage

    c0, k0, w0 = time.process_time(), children_cpu(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the stage's own summary line
        summary = run_stage(importlib.import_module(f"tasks.{stage}").STAGE, argv)
    return summary, time.process_time() - c0 + children_cpu() - k0, time.perf_counter() - w0


def children_cpu() -> float:
    """CPU seconds of this process's finished children (quality trains fastText in a subprocess)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return my - b * mx, b


def stage_argv(args, upstream: Path, out: Path) -> list[str]:
    return [f"profile={args.profile}", f"in_dir={upstream}", f"out_dir={out}", *bench_peer.engine_argv(1)]


def sizes_curve(args, collect_dir: Path, work: Path) -> None:
    # One untimed pass on a slice first: the first run in a process pays one-time imports and lazy
    # loads (seen as ~45 s of wall without CPU in quality's first run), which are no cost of size.
    warm = replicate(collect_dir, 1, work / "collect_warm", "plain", limit=WARMUP_RECORDS)
    run_in_process("clean", stage_argv(args, warm, work / "clean_warm"))
    run_in_process("quality", stage_argv(args, work / "clean_warm", work / "quality_warm"))
    print(f"\nsize curve ({args.copies} copies; one process, after an untimed warm-up on "
          f"{WARMUP_RECORDS} records; s/MB and ratio from CPU seconds, the machine is shared):")
    print(f"{'stage':<9}{'size':>5}{'records':>9}{'MB':>8}{'wall s':>8}{'cpu s':>8}{'MB/s':>8}{'s/MB':>8}"
          f"{'ratio':>7}{'wall ratio':>11}  notes")
    base: dict[str, tuple[float, float]] = {}
    points: dict[str, list[tuple[float, float, float]]] = {}  # stage -> (MB, wall, cpu)
    for factor in args.sizes:
        data = replicate(collect_dir, factor, work / f"collect_{factor}x", args.copies)
        for stage, upstream in (("clean", data), ("quality", work / f"clean_{factor}x")):
            mb = input_mb(upstream)
            summary, cpu, wall = run_in_process(stage, stage_argv(args, upstream, work / f"{stage}_{factor}x"))
            base_cpu, base_wall = base.setdefault(stage, (cpu / mb, wall / mb))
            points.setdefault(stage, []).append((mb, wall, cpu))
            notes = f"kept {summary.get('kept')}"
            if stage == "quality":
                notes += f", rounds {summary.get('rounds', summary.get('rounds_run', '?'))}"
            else:
                reasons = summary.get("rejected_by_reason", {})
                notes += f", exact dup {reasons.get('exact_duplicate', 0)}, near dup {reasons.get('near_duplicate', 0)}"
            print(f"{stage:<9}{factor:>4}x{summary['read']:>9}{mb:>8.1f}{wall:>8.1f}{cpu:>8.1f}{mb / cpu:>8.2f}"
                  f"{cpu / mb:>8.3f}{cpu / mb / base_cpu:>7.2f}{wall / mb / base_wall:>11.2f}  {notes}", flush=True)
    if len(args.sizes) > 1:
        for stage, pts in points.items():
            mbs = [p[0] for p in pts]
            (aw, bw), (ac, bc) = linear_fit(mbs, [p[1] for p in pts]), linear_fit(mbs, [p[2] for p in pts])
            print(f"{stage}: fixed + per-MB cost (least squares over the sizes): wall {aw:.1f} s + {bw:.3f} s/MB, "
                  f"cpu {ac:.1f} s + {bc:.3f} s/MB")


# ---- the workers curve -----------------------------------------------------------------------
def doid_tree(data_root: Path, out: Path) -> Path:
    """A valid entity tree: root -> "Disease" -> one entity per non-obsolete DOID name."""
    from tasks.tree.model import Node, Tree, norm_name

    names, name, obsolete = [], None, False
    for line in (data_root / "vocab" / "doid_2016-09-01.obo").read_text("utf-8").splitlines() + ["[Term]"]:
        if line.startswith("[Term]") or line.startswith("[Typedef]"):
            if name and not obsolete:
                names.append(name)
            name, obsolete = None, False
        elif line.startswith("name: "):
            name = line[6:].strip()
        elif line.startswith("is_obsolete: true"):
            obsolete = True
    tree = Tree([Node("c", "Medical Entity Tree", None, 0), Node("c1", "Disease", "c", 1)])
    seen = set()
    for n in names:
        norm = norm_name(n)
        if norm and norm not in seen:
            seen.add(norm)
            tree.add(Node(f"e:{norm}", n, "c1", 2, "entity", [norm], 1, True))
    tree.refresh()
    out.write_text(json.dumps(tree.to_json()), encoding="utf-8")
    return out


def workers_unavailable() -> str | None:
    """Why the workers curve cannot run here, or None."""
    if not bench_peer.engine_supported():
        return ("the stages have no `engine:` section yet (tasks/common/engine.py with EngineConfig.workers); "
                "rerun once `python -m tasks.clean engine.workers=2` is accepted")
    probe = subprocess.run([sys.executable, "-c", "import ray"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "Ray is not installed in this environment (import ray failed)"
    return None


def run_subprocess(stage: str, argv: list[str]) -> tuple[float, str]:
    """(wall seconds, error tail or '') of `python -m tasks.<stage> argv` from the project root."""
    w0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"tasks.{stage}", *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - w0
    return wall, "" if proc.returncode == 0 else (proc.stderr or proc.stdout)[-1500:]


def workers_curve(args, collect_dir: Path, work: Path) -> None:
    print(f"\nworkers curve (1x; subprocesses; cpus visible {os.cpu_count()}):")
    why = workers_unavailable()
    if why:
        print(f"  skipped: {why}")
        return
    from tasks.common.config import load_stage_config
    from tasks.common.config import resolve as resolve_path
    from tasks.corpus.clean.run import CleanConfig

    data_root = resolve_path(load_stage_config("clean", CleanConfig, [])[0].data_root)
    tree = doid_tree(data_root, work / "doid_tree.json")
    data = replicate(collect_dir, 1, work / "collect_w", "plain")
    print(f"{'stage':<11}{'workers':>8}{'MB':>8}{'wall s':>8}{'MB/s':>8}{'speedup':>9}")
    for stage in ("clean", "quality", "entity_map"):
        base = None
        for n in args.workers:
            out = work / f"{stage}_w{n}"
            if stage == "clean":
                upstream, argv = data, [f"in_dir={data}"]
            elif stage == "quality":
                upstream, argv = work / "clean_w1", [f"in_dir={work / 'clean_w1'}"]
            else:
                upstream = work / "quality_w1"
                argv = [f"in_dir={upstream / 'kept'}", f"tree={tree}", "amcs.enabled=false"]
            mb = input_mb(upstream)
            wall, err = run_subprocess(stage, [f"profile={args.profile}", *argv, f"out_dir={out}",
                                               f"engine.workers={n}"])
            if err:
                print(f"{stage:<11}{n:>8}  failed:\n{err}")
                break
            base = base or wall
            print(f"{stage:<11}{n:>8}{mb:>8.1f}{wall:>8.1f}{mb / wall:>8.2f}{base / wall:>9.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,2,4")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--corpus", help="an existing collect output dir (kept/ inside); default: run collect")
    ap.add_argument("--copies", choices=("rot", "plain"), default="rot")
    ap.add_argument("--skip-sizes", action="store_true")
    ap.add_argument("--skip-workers", action="store_true")
    args = ap.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.workers = [int(x) for x in args.workers.split(",")]
    if 1 not in args.workers:
        ap.error("--workers must include 1 (the baseline; quality and entity_map read its outputs)")
    args.workers = sorted(args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_peer.project_env(work)
        collect_dir = Path(args.corpus) if args.corpus else bench_peer.collect_corpus(work, args.profile)
        if not args.skip_sizes:
            sizes_curve(args, collect_dir, work)
        if not args.skip_workers:
            workers_curve(args, collect_dir, work)


if __name__ == "__main__":
    main()
