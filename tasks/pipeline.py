"""Run the pipeline under one MLflow parent run; the Airflow DAG uses the same pieces.

    python -m tasks.pipeline run [STAGE ...] [--force]   # dvc repro under a parent run
    python -m tasks.pipeline open-parent                  # prints the new parent run id
    python -m tasks.pipeline close-parent RUN_ID [--status FAILED]
    python -m tasks.pipeline stages                       # stage names and upstreams, from dvc.yaml

Why a wrapper and not only `dvc repro`: DVC decides *what* runs (cache, dvc.lock); this only
adds the parent run that ties the stage runs of one execution together, passed to each stage
in MEDX_MLFLOW_PARENT_RUN_ID. Plain `dvc repro` still works; its stage runs are standalone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.common.config import load_params, project_root
from tasks.common.tracking import (PARENT_ENV, child_runs, close_parent_run, delete_run,
                                   open_parent_run)


def read_stage_graph(dvc_yaml: Path) -> dict[str, list[str]]:
    """{stage: [upstream stages]} from dvc.yaml: a stage depends on the stage whose out is
    (or contains) one of its deps. Reads YAML only, so it is cheap enough for DAG parsing."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    outs = {}
    for name, spec in stages.items():
        for out in spec.get("outs", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            outs[str(path).rstrip("/")] = name
    graph: dict[str, list[str]] = {}
    for name, spec in stages.items():
        ups = []
        for dep in spec.get("deps", []):
            dep = str(dep).rstrip("/")
            for out, producer in outs.items():
                if producer != name and (dep == out or dep.startswith(out + "/")) and producer not in ups:
                    ups.append(producer)
        graph[name] = ups
    return graph


def profile_name() -> str:
    return str(load_params().get("profile", "default"))


def run(targets: list[str], force: bool = False) -> int:
    """`dvc repro` under a new parent run; returns DVC's exit code."""
    root = project_root()
    parent = open_parent_run(profile_name())
    env = {**os.environ, PARENT_ENV: parent,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(Path(sys.executable).parent / "dvc"), "repro", *(["--force"] if force else []), *targets]
    print(f"pipeline: MLflow parent run {parent}; running: {' '.join(cmd[1:])}", flush=True)
    rc = subprocess.call(cmd, cwd=root, env=env)
    if rc == 0 and not child_runs(parent):
        # Every stage was up to date: an empty parent run would only clutter the UI.
        delete_run(parent)
        print("pipeline: nothing ran (all stages up to date); no MLflow run kept", flush=True)
        return rc
    close_parent_run(parent, "FINISHED" if rc == 0 else "FAILED")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasks.pipeline", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("targets", nargs="*")
    r.add_argument("--force", action="store_true")
    sub.add_parser("open-parent")
    c = sub.add_parser("close-parent")
    c.add_argument("run_id")
    c.add_argument("--status", default="FINISHED", choices=["FINISHED", "FAILED", "KILLED"])
    sub.add_parser("stages")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        return run(args.targets, args.force)
    if args.cmd == "open-parent":
        print(open_parent_run(profile_name()))
    elif args.cmd == "close-parent":
        close_parent_run(args.run_id, args.status)
    elif args.cmd == "stages":
        for name, ups in read_stage_graph(project_root() / "dvc.yaml").items():
            print(f"{name}: {', '.join(ups) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
