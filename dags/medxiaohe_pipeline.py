"""
### medxiaohe_pipeline

The MedXIAOHE recipe as an Airflow DAG, **derived from `dvc.yaml` at parse time**: one task
per DVC stage, wired by DVC's own dependency graph (a stage depends on the stage whose
output it reads). There is no second list of stages here.

Each stage task runs `dvc repro --single-item <stage>`, so DVC stays the authority on what
is up to date (`dvc.lock`, the cache): a re-run of an unchanged stage is a no-op.

`open_parent_run` opens the MLflow parent run for this DAG run and hands its id to every
stage task through the environment; each stage logs a child run under it, tagged with the
Airflow dag_run id. `close_parent_run` tags the children with their dvc.lock hashes and
closes the parent (it runs even when a stage failed, so the parent never stays open). When a
stage failed (its task, after its retries, or its latest MLflow attempt) the parent is closed
FAILED and the closing task fails too, so the DAG run ends failed: the closing task is the DAG's
only leaf, and Airflow judges a run by its leaves.

Retries: a stage task that dies (a killed worker, a lost machine) is retried
`MEDX_STAGE_RETRIES` times after `MEDX_STAGE_RETRY_DELAY_S` seconds; the stage writes its outputs
atomically and deterministically, so a retry ends with the outputs an uninterrupted run gives.

Parsing imports only the standard library, PyYAML and the Airflow SDK.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task
from airflow.task.trigger_rule import TriggerRule

PROJECT_ROOT = Path(os.environ.get("MEDX_PROJECT_ROOT", Path(__file__).resolve().parents[1]))
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from tasks.pipeline import read_stage_graph, task_id  # noqa: E402  (needs PROJECT_ROOT on sys.path)

# the project's virtual environment; else the interpreter running this task (a copy of the project
# without its own .venv, a container image), so `dvc` and `python` are the ones Airflow runs under
VENV_BIN = PROJECT_ROOT / ".venv" / "bin" if (PROJECT_ROOT / ".venv" / "bin").is_dir() else Path(sys.executable).parent
STAGE_RETRIES = int(os.environ.get("MEDX_STAGE_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=int(os.environ.get("MEDX_STAGE_RETRY_DELAY_S", "20")))
PARENT_XCOM = "{{ ti.xcom_pull(task_ids='open_parent_run') }}"


def stage_states(context) -> dict[str, str]:
    """This DAG run's other task states, from the scheduler (empty where the runtime cannot ask)."""
    ti = context["ti"]
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
    except Exception:  # noqa: BLE001 - an in-process test runtime without a supervisor
        return {}
    return {t: str(s) for t, s in (states.get(ti.run_id) or {}).items() if t != ti.task_id}


with DAG(
    dag_id="medxiaohe_pipeline",
    description="MedXIAOHE recipe: DVC stages scheduled by Airflow, tracked by MLflow",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # DVC holds a repository lock: one pipeline execution at a time
    doc_md=__doc__,
    tags=["medxiaohe", "dvc", "mlflow"],
    default_args={"retries": STAGE_RETRIES, "retry_delay": RETRY_DELAY},
) as dag:

    @task(retries=0)
    def open_parent_run(**context) -> str:
        """Open the MLflow parent run of this DAG run; its id goes to every stage task."""
        os.environ.setdefault("MEDX_PROJECT_ROOT", str(PROJECT_ROOT))
        os.environ["MEDX_AIRFLOW_DAG_RUN_ID"] = context["run_id"]  # tags the parent run too
        from tasks.common.config import load_params
        from tasks.common.tracking import open_parent_run as open_run

        return open_run(str(load_params().get("profile", "default")), run_name="airflow-pipeline")

    @task(retries=0, trigger_rule=TriggerRule.ALL_DONE)
    def close_parent_run(parent_run_id: str, **context) -> None:
        """Tag child runs with dvc.lock hashes and close the parent; FAILED, and this task failed, if a
        stage failed."""
        os.environ.setdefault("MEDX_PROJECT_ROOT", str(PROJECT_ROOT))
        from airflow.sdk.exceptions import AirflowFailException

        from tasks.common.tracking import child_runs_failed
        from tasks.common.tracking import close_parent_run as close_run

        failed_tasks = sorted(t for t, state in stage_states(context).items() if state in ("failed", "upstream_failed"))
        failed = child_runs_failed(parent_run_id) or bool(failed_tasks)
        close_run(parent_run_id, "FAILED" if failed else "FINISHED")
        if failed:
            raise AirflowFailException(f"stage(s) failed: {', '.join(failed_tasks) or 'see the MLflow child runs'}")

    graph = read_stage_graph(PROJECT_ROOT / "dvc.yaml")
    parent = open_parent_run()
    stage_tasks = {
        stage: BashOperator(
            task_id=task_id(stage),
            # PATH again inside the command: whatever a startup file did, `dvc` and the `python` it
            # runs are the project's
            bash_command=f"export PATH='{VENV_BIN}':\"$PATH\"; dvc repro --single-item '{stage}'",
            cwd=str(PROJECT_ROOT),
            env={
                "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "MEDX_PROJECT_ROOT": str(PROJECT_ROOT),
                "MEDX_MLFLOW_PARENT_RUN_ID": PARENT_XCOM,
                "MEDX_AIRFLOW_DAG_RUN_ID": "{{ run_id }}",
                # bash reads ~/.bashrc when it is a top-level shell whose stdin is a socket, as it is
                # under Airflow's task supervisor; a user's startup file (pyenv shims first on PATH,
                # thread settings) must not change what a stage runs. Level 1 inherited: not top-level.
                "SHLVL": "1",
            },
            append_env=True,
            doc_md=f"`dvc repro --single-item {stage}` (stage `{stage}` of dvc.yaml)",
        )
        for stage in graph
    }
    for stage, upstreams in graph.items():
        for up in upstreams:
            stage_tasks[up] >> stage_tasks[stage]
        if not upstreams:
            parent >> stage_tasks[stage]
    closing = close_parent_run(parent)
    for t in stage_tasks.values():
        t >> closing
