"""The Airflow DAG is derived from dvc.yaml and runs the real pipeline with `dag.test()`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from project_copy import PROJECT, project_env

from tasks.pipeline import task_id

DAG_FILE = PROJECT / "dags" / "medxiaohe_pipeline.py"


def airflow_env(root: Path, home: Path) -> dict:
    return project_env(root, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
                       AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
                       AIRFLOW__CORE__UNIT_TEST_MODE="False", MEDX_STAGE_RETRIES="0")


def load_dag(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("medxiaohe_dag_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def test_task_ids_equal_dvc_stage_list():
    dag = load_dag(DAG_FILE)
    proc = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=PROJECT, capture_output=True,
                          text=True, check=True, env=project_env(PROJECT))
    stages = [task_id(s) for s in proc.stdout.split()]
    stage_tasks = [t for t in dag.task_ids if t not in ("open_parent_run", "close_parent_run")]
    assert sorted(stage_tasks) == sorted(stages)
    # dependencies follow DVC's graph: collect -> clean -> quality
    assert dag.get_task("clean").upstream_task_ids == {"collect"}
    assert dag.get_task("quality").upstream_task_ids == {"clean"}
    assert dag.get_task("collect").upstream_task_ids == {"open_parent_run"}
    assert set(dag.get_task("close_parent_run").upstream_task_ids) >= set(stages)
    assert all(dag.get_task(s).retries >= 1 for s in stages)  # stage tasks retry


# The real `dag.test()` run of the whole tiny pipeline lives in tests/test_pipeline_e2e.py, where the
# same run also feeds the accounting, MLflow, no-op and determinism checks (one pipeline run, not two).
