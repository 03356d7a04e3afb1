"""Throughput of each corpus stage on the default corpus, against a bare baseline.

    .venv/bin/python bench/bench_stages.py [--profile default|tiny] [--stages collect,clean,quality]

For each stage: wall time, records/s and MB/s of its input, and the same figures for a bare
baseline measured in the same run on the same input: read + parse + write with no
processing (raw files read and decoded for `collect`; JSONL shards read, json-parsed and
re-serialized for the later stages). The ratio stage/baseline says how much the stage's real
work costs over moving the bytes. Outputs go to a temporary directory; MLflow logs to a
temporary store, so the project's data/ and mlflow.db are untouched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)


def input_files(stage: str, work: Path) -> list[Path]:
    if stage == "collect":
        from tasks.common.config import load_stage_config
        from tasks.corpus.connectors.collect import CollectConfig, source_path

        cfg, _ = load_stage_config("collect", CollectConfig, [])
        files = []
        for src in cfg.sources.values():
            if src.enabled:
                p = source_path(cfg, src)
                files += [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        return files
    upstream = {"clean": "collect", "quality": "clean"}[stage]
    return sorted((work / upstream / "kept").glob("part-*.jsonl"))


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its waited-for children, so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def baseline(stage: str, files: list[Path], out: Path) -> tuple[float, int, int]:
    """Read + parse + write with no processing; returns (seconds, records, bytes)."""
    t0 = time.perf_counter()
    records = nbytes = 0
    with open(out, "w", encoding="utf-8") as sink:
        for f in files:
            data = f.read_bytes()
            nbytes += len(data)
            if stage == "collect":
                text = data.decode("utf-8", "replace")
                records += text.count("\n") + 1
                sink.write(text)
            else:
                for line in data.splitlines():
                    sink.write(json.dumps(json.loads(line)) + "\n")
                    records += 1
    return time.perf_counter() - t0, records, nbytes


def main() -> None:
    from tasks.common.stage import main as run_stage

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="default")
    ap.add_argument("--stages", default="collect,clean,quality")
    # per core by default: one worker, the stage in this process (engine.workers=2 ... for the Ray curve)
    ap.add_argument("--engine", action="append", default=["engine.workers=1"],
                    help="engine overrides passed to each stage, e.g. --engine engine.workers=2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
        os.environ["MEDX_MLFLOW_ARTIFACTS"] = (work / "artifacts").as_uri()
        print(f"{'stage':<9}{'records':>9}{'MB':>8}{'s':>8}{'rec/s':>10}{'MB/s':>8}"
              f"{'base MB/s':>11}{'stage/base':>12}{'cpu s':>8}{'MB/cpu-s':>10}{'base MB/cpu-s':>15}")
        for stage in args.stages.split(","):
            argv = [f"profile={args.profile}", f"out_dir={work / stage}", *args.engine]
            if stage != "collect":
                argv.append(f"in_dir={work / {'clean': 'collect', 'quality': 'clean'}[stage]}")
            files = input_files(stage, work)
            mb = sum(f.stat().st_size for f in files) / 1e6
            c0 = cpu_seconds()
            base_s, _, _ = baseline(stage, files, work / f"{stage}.baseline")
            base_cpu = cpu_seconds() - c0
            c0, t0 = cpu_seconds(), time.perf_counter()
            summary = run_stage(importlib.import_module(f"tasks.{stage}").STAGE, argv)
            secs, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            print(f"{stage:<9}{summary['read']:>9}{mb:>8.1f}{secs:>8.1f}{summary['read'] / secs:>10.0f}"
                  f"{mb / secs:>8.2f}{mb / base_s:>11.1f}{base_s / secs:>12.3f}"
                  f"{cpu:>8.1f}{mb / cpu:>10.2f}{mb / max(base_cpu, 1e-9):>15.1f}", flush=True)


if __name__ == "__main__":
    main()
