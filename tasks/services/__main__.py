"""python -m tasks.services start|stop|status|env|trigger [--wait] [key=value ...] (see tasks/services/__init__.py)."""

from __future__ import annotations

import argparse
import json
import sys

from tasks.services.airflow_api import AirflowAPI
from tasks.services.config import load_services_config
from tasks.services.processes import ServiceError
from tasks.services.stack import ADMIN, Stack

DAG_ID = "medxiaohe_pipeline"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasks.services", description=__doc__)
    ap.add_argument("command", choices=("start", "stop", "status", "env", "trigger"))
    ap.add_argument("--wait", action="store_true", help="trigger: wait for the run to finish")
    ap.add_argument("--timeout", type=float, default=6 * 3600)
    ap.add_argument("overrides", nargs="*", help="services settings, key=value")
    args = ap.parse_args(argv)
    stack = Stack(load_services_config(args.overrides))
    try:
        if args.command == "start":
            info = stack.start()
            print(json.dumps(info, indent=2))
            print(f"MLflow: {info['mlflow']}   Airflow: {info['airflow']} (user {ADMIN}, password in "
                  f"{stack.state / 'secrets.json'})\nexport " + " ".join(f"{k}={v}" for k, v in stack.env().items()))
        elif args.command == "stop":
            print(json.dumps(stack.stop(), indent=2))
        elif args.command == "status":
            print(json.dumps(stack.status(), indent=2))
        elif args.command == "env":
            print("\n".join(f"export {k}={v}" for k, v in stack.env().items()))
        else:
            api = AirflowAPI(stack.cfg.airflow_url, ADMIN, stack.secrets()["airflow_password"])
            api.wait_for_dag(DAG_ID)
            run_id = api.trigger(DAG_ID)
            print(run_id)
            if args.wait:
                run = api.wait(DAG_ID, run_id, args.timeout)
                print(run["state"])
                return 0 if run["state"] == "success" else 1
    except ServiceError as e:
        print(f"services: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
