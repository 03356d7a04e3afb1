"""The Airflow DAG is derived from dvc.yaml and runs the real pipeline with `dag.test()`."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from project_copy import PROJECT, make_project_copy, project_env, run_in
from tasks.pipeline import read_stage_graph

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
    stages = proc.stdout.split()
    stage_tasks = [t for t in dag.task_ids if t not in ("open_parent_run", "close_parent_run")]
    assert sorted(stage_tasks) == sorted(stages)
    # dependencies follow DVC's graph: collect -> clean -> quality
    assert dag.get_task("clean").upstream_task_ids == {"collect"}
    assert dag.get_task("quality").upstream_task_ids == {"clean"}
    assert dag.get_task("collect").upstream_task_ids == {"open_parent_run"}
    assert set(dag.get_task("close_parent_run").upstream_task_ids) >= set(stages)
    assert all(dag.get_task(s).retries >= 1 for s in stages)  # stage tasks retry


RUNNER = textwrap.dedent("""
    import json, importlib.util, sys
    spec = importlib.util.spec_from_file_location("dag_mod", sys.argv[1])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    dr = mod.dag.test()
    print("RESULT " + json.dumps({"state": str(dr.state), "run_id": dr.run_id,
          "tasks": {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}}))
""")


@pytest.mark.e2e
def test_dag_runs_the_pipeline_for_real(tmp_path: Path):
    root = make_project_copy(tmp_path / "project")
    home = tmp_path / "airflow"
    env = airflow_env(root, home)
    run_in(root, "airflow", "db", "migrate", env=env)
    proc = run_in(root, "python", "-c", RUNNER, str(root / "dags" / "medxiaohe_pipeline.py"), env=env,
                  timeout=1500)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["state"].endswith("success"), result
    assert all(s.endswith("success") for s in result["tasks"].values()), result["tasks"]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("medxiaohe-pipeline")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["stage"] for r in children) == sorted(read_stage_graph(root / "dvc.yaml"))
    assert all(r.data.tags["airflow_dag_run_id"] == result["run_id"] for r in [*children, parents[0]])
    assert all(r.data.tags.get("dvc_lock_hash") for r in children)
    assert (root / "dvc.lock").exists()  # DVC stayed authoritative: it wrote the lock
