"""The pipeline's services on one machine, as a team runs them: a PostgreSQL server (Airflow's
metadata database and MLflow's backend store), an MLflow tracking server with an artifact root,
and Airflow's scheduler, DAG processor and API server with a LocalExecutor.

    python -m tasks.services start [key=value ...]    # e.g. parallelism=4 airflow_port=8081
    python -m tasks.services status
    python -m tasks.services trigger [--wait]         # a medxiaohe_pipeline run through the Airflow API
    python -m tasks.services stop

Settings: the `services:` section of params.yaml (not a DVC stage; nothing here changes an
output). Everything listens on 127.0.0.1 and lives under `state_dir` (logs, pid files, the
database cluster, the artifact root, generated secrets). `docker/compose.yaml` starts the same set
with the same settings.
"""
