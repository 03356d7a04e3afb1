"""Run the pipeline under one MLflow parent run; the Airflow DAG uses the same pieces.

    python -m tasks.pipeline run [STAGE ...] [--force]   # dvc repro under a parent run
    python -m tasks.pipeline open-parent                  # prints the new parent run id
    python -m tasks.pipeline close-parent RUN_ID [--status FAILED]
    python -m tasks.pipeline stages                       # stage names and upstreams, from dvc.yaml
    python -m tasks.pipeline outs                         # every stage's output paths (make clean-outputs)

Why a wrapper and not only `dvc repro`: DVC decides *what* runs (cache, dvc.lock); this only
adds the parent run that ties the stage runs of one execution together, passed to each stage
in MEDX_MLFLOW_PARENT_RUN_ID. Plain `dvc repro` still works; its stage runs are standalone.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.common.config import load_params, project_root
from tasks.common.tracking import PARENT_ENV, child_runs, close_parent_run, delete_run, open_parent_run

_VAR = re.compile(r"\$\{\s*([\w.]+)\s*\}")


def interpolate(value, context: dict):
    """DVC-style `${a.b}` substitution in a str/list/dict (unknown names are left as they are)."""
    if isinstance(value, dict):
        return {interpolate(k, context): interpolate(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, context) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(name: str):
        node = context
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(name)
            node = node[part]
        return node

    whole = _VAR.fullmatch(value)
    if whole:
        try:
            return lookup(whole.group(1))
        except KeyError:
            return value

    def sub(m):
        try:
            return str(lookup(m.group(1)))
        except KeyError:
            return m.group(0)
    return _VAR.sub(sub, value)


def expand_stages(dvc_yaml: Path) -> dict[str, dict]:
    """dvc.yaml's stages with `foreach` stages expanded as DVC names them (`eval@base`), variables
    taken from params.yaml beside it (DVC's default `vars`)."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    params_file = dvc_yaml.parent / "params.yaml"
    context = (yaml.safe_load(params_file.read_text()) or {}) if params_file.exists() else {}
    out: dict[str, dict] = {}
    for name, spec in stages.items():
        if "foreach" not in spec:
            out[name] = interpolate(spec, context)
            continue
        items = interpolate(spec["foreach"], context)
        pairs = (items.items() if isinstance(items, dict)
                 else ((str(i) if isinstance(i, (str, int)) else str(n), i) for n, i in enumerate(items)))
        for key, item in pairs:
            out[f"{name}@{key}"] = interpolate(spec["do"], {**context, "key": key, "item": item})
    return out


def read_stage_graph(dvc_yaml: Path) -> dict[str, list[str]]:
    """{stage: [upstream stages]} from dvc.yaml: a stage depends on the stage whose out is
    (or contains) one of its deps, or lies inside one of them (a stage reading data/eval depends
    on every eval@<checkpoint>). Reads YAML only, so it is cheap enough for DAG parsing."""
    stages = expand_stages(dvc_yaml)
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
                related = dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")
                if producer != name and related and producer not in ups:
                    ups.append(producer)
        graph[name] = ups
    return graph


def task_id(stage: str) -> str:
    """An Airflow task id for a DVC stage name (`eval@base` -> `eval.base`: `@` is not allowed)."""
    return stage.replace("@", ".")


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
    sub.add_parser("outs")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        return run(args.targets, args.force)
    if args.cmd == "open-parent":
        print(open_parent_run(profile_name()))
    elif args.cmd == "close-parent":
        close_parent_run(args.run_id, args.status)
    elif args.cmd == "outs":
        for spec in expand_stages(project_root() / "dvc.yaml").values():
            for out in spec.get("outs", []):
                print(next(iter(out)) if isinstance(out, dict) else out)
    elif args.cmd == "stages":
        for name, ups in read_stage_graph(project_root() / "dvc.yaml").items():
            print(f"{name}: {', '.join(ups) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
