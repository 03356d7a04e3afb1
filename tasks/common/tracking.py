"""MLflow tracking: one parent run per pipeline execution, one child run per stage.

The parent run is opened by whoever drives the pipeline (`python -m tasks.pipeline run`, or
the Airflow DAG's first task) and its id reaches each stage through the environment
variable MEDX_MLFLOW_PARENT_RUN_ID. Environment variables are not DVC params, so tracking
never changes a stage's cache key. A stage run by hand with plain `dvc repro` and no parent
logs a top-level run tagged `standalone=true`.

The dvc.lock hash of a stage is only known after DVC has written dvc.lock, i.e. after the
stage process has exited; `tag_lock_hashes` adds it to the child runs when the driver
closes the parent run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from tasks.common.config import project_root

EXPERIMENT = "medxiaohe-pipeline"
PARENT_ENV = "MEDX_MLFLOW_PARENT_RUN_ID"
DAG_RUN_ENV = "MEDX_AIRFLOW_DAG_RUN_ID"
DATA_LICENSES = ("MedQuAD CC BY 4.0; BC5CDR/NCBI-disease NCBI public domain; MEDLINE NLM terms; "
                 "IU-Xray Open-i terms; VQA-RAD CC0; PneumoniaMNIST CC BY 4.0; pydicom test files MIT")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _mlflow():
    import mlflow  # imported lazily: the DAG file and config parsing must stay fast

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        if tracking_uri().startswith(("http://", "https://")):
            # a tracking server decides where artifacts live (its artifact root, proxied over HTTP)
            mlflow.create_experiment(EXPERIMENT)
        else:
            artifacts = os.environ.get("MEDX_MLFLOW_ARTIFACTS") or (project_root() / "mlartifacts").as_uri()
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def base_tags(profile: str) -> dict[str, str]:
    tags = {"git_commit": git_commit(), "profile": profile, "data_licenses": DATA_LICENSES}
    if os.environ.get(DAG_RUN_ENV):
        tags["airflow_dag_run_id"] = os.environ[DAG_RUN_ENV]
    return tags


def open_parent_run(profile: str, run_name: str | None = None) -> str:
    mlflow = _mlflow()
    run = mlflow.MlflowClient().create_run(
        mlflow.get_experiment_by_name(EXPERIMENT).experiment_id,
        run_name=run_name or f"pipeline-{profile}",
        tags={**base_tags(profile), "kind": "pipeline"},
    )
    return run.info.run_id


def close_parent_run(run_id: str, status: str = "FINISHED") -> None:
    mlflow = _mlflow()
    tag_lock_hashes(run_id)
    mlflow.MlflowClient().set_terminated(run_id, status=status)


def delete_run(run_id: str) -> None:
    _mlflow().MlflowClient().delete_run(run_id)


def lock_hashes(lock_path: Path | None = None) -> dict[str, str]:
    """sha256 of each stage's canonical dvc.lock entry (deps, params, outs with their hashes)."""
    lock_path = lock_path or project_root() / "dvc.lock"
    if not lock_path.exists():
        return {}
    stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
    return {name: hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
            for name, entry in stages.items()}


def child_runs(parent_run_id: str) -> list:
    mlflow = _mlflow()
    return mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(EXPERIMENT).experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def _stage_of(run) -> str:
    return run.data.tags.get("stage", run.info.run_id)


def latest_attempts(runs: list) -> dict[str, Any]:
    """Per stage, its latest child run: a stage task retried by the scheduler leaves one run per attempt."""
    return {_stage_of(r): r for r in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))}


def child_runs_failed(parent_run_id: str) -> bool:
    """True when a stage's latest attempt did not finish. Earlier attempts of a retried stage that were
    killed (still RUNNING: a killed process cannot close its run) are marked KILLED here."""
    runs = child_runs(parent_run_id)
    latest = latest_attempts(runs)
    client = _mlflow().MlflowClient()
    for r in runs:
        if r.info.status == "RUNNING" and latest[_stage_of(r)] is not r:
            client.set_terminated(r.info.run_id, status="KILLED")
    return any(r.info.status != "FINISHED" for r in latest.values())


def tag_lock_hashes(parent_run_id: str) -> int:
    """Tag every child run of the parent with its stage's dvc.lock hash; returns how many."""
    client = _mlflow().MlflowClient()
    hashes = lock_hashes()
    n = 0
    for r in child_runs(parent_run_id):
        stage = r.data.tags.get("stage")
        if stage in hashes:
            client.set_tag(r.info.run_id, "dvc_lock_hash", hashes[stage])
            n += 1
    return n


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def rejection_chart(summary: dict, path: Path, title: str) -> None:
    """A horizontal bar chart of rejections by reason (and the kept count for scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reasons = summary.get("rejected_by_reason", {})
    labels = ["kept", *reasons.keys()]
    values = [summary.get("kept", 0), *reasons.values()]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.2))
    bars = ax.barh(labels, values, color=["#4c956c"] + ["#d1495b"] * len(reasons))
    ax.bar_label(bars, padding=3)
    ax.set_xscale("symlog")
    ax.invert_yaxis()
    ax.set_title(f"{title}: read={summary.get('read', 0)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class StageTracker:
    """What a stage logs: params, counts, throughput, summary, samples, chart."""

    def __init__(self, mlflow, stage: str):
        self.mlflow = mlflow
        self.stage = stage
        self.started = time.perf_counter()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_shards(self, rows: list[dict]) -> None:
        """Per-shard read/kept/rejected of a sharded stage: shards.json and the shard count."""
        self.log_metrics({"shards": len(rows)})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "shards.json"
            path.write_text(json.dumps(rows, indent=2, sort_keys=True))
            self.mlflow.log_artifact(str(path))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path)

    def log_summary(self, summary: dict, *, kept_sample: list | None = None,
                    rejected_sample: dict | None = None, input_bytes: int = 0,
                    numeric: dict[str, float] | None = None) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        metrics = {"seconds": elapsed}
        if "read" in summary:
            metrics.update(read=summary["read"], kept=summary["kept"], rejected=summary["rejected"],
                           records_per_s=summary["read"] / elapsed)
        if input_bytes:
            metrics["mb_per_s"] = input_bytes / 1e6 / elapsed
            metrics["input_mb"] = input_bytes / 1e6
        for reason, n in summary.get("rejected_by_reason", {}).items():
            metrics[f"rejected.{reason}"] = n
        if numeric is None:  # the top-level numbers; the stage runner passes every numeric leaf
            numeric = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for k, v in numeric.items():
            metrics.setdefault(k, v)
        items = list(metrics.items())
        for i in range(0, len(items), 500):  # MLflow caps metrics per batch
            self.log_metrics(dict(items[i:i + 500]))
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
            if kept_sample is not None:
                with open(tmp / "kept_sample.jsonl", "w") as f:
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept_sample)
            if rejected_sample is not None:
                with open(tmp / "rejected_sample.jsonl", "w") as f:
                    for entries in rejected_sample.values():
                        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in entries)
            if "read" in summary:
                rejection_chart(summary, tmp / "rejections.png", self.stage)
            self.mlflow.log_artifacts(str(tmp))

    def log_sink(self, sink, summary: dict) -> None:
        """Log a StageSink's summary, samples and throughput in one call."""
        self.log_summary(summary, kept_sample=sink.kept_sample, rejected_sample=sink.rejected_sample,
                         input_bytes=sink.input_bytes)


@contextlib.contextmanager
def stage_run(stage: str, cfg: Any, profile: str) -> Iterator[StageTracker]:
    """A child run for `stage` under the parent named by MEDX_MLFLOW_PARENT_RUN_ID (if any)."""
    mlflow = _mlflow()
    parent = os.environ.get(PARENT_ENV)
    tags = {**base_tags(profile), "stage": stage, "kind": "stage"}
    if not parent:
        tags["standalone"] = "true"
    with mlflow.start_run(run_name=stage, parent_run_id=parent or None, tags=tags):
        params = {k: str(v)[:6000] for k, v in flatten(cfg).items()}
        for i in range(0, len(params), 100):  # MLflow caps params per batch
            mlflow.log_params(dict(list(params.items())[i:i + 100]))
        yield StageTracker(mlflow, stage)
