"""A small client of Airflow 3's public REST API (`/api/v2`), as a scheduler's user drives it:
a JWT from the simple auth manager, then trigger a DAG run, read its state and its task instances.

    api = AirflowAPI("http://127.0.0.1:8080", "admin", password)
    run_id = api.trigger("medxiaohe_pipeline")
    run = api.wait(dag_id, run_id, timeout_s=3600)      # {"state": "success", ...}
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

FINAL = ("success", "failed")


class AirflowAPIError(RuntimeError):
    pass


class AirflowAPI:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url, self.username, self.password = base_url.rstrip("/"), username, password
        self._token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            if e.code == 401 and auth and self._token:      # the token expired: one fresh try
                self._token = None
                return self._request(method, path, body, auth)
            raise AirflowAPIError(f"{method} {path}: HTTP {e.code}: {e.read()[:500].decode('utf-8', 'replace')}") from None
        return json.loads(raw) if raw else {}

    def token(self) -> str:
        if self._token is None:
            reply = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                                  auth=False)
            self._token = reply["access_token"]
        return self._token

    def health(self) -> dict:
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    def wait_for_dag(self, dag_id: str, timeout_s: float = 300) -> dict:
        """Wait until the DAG processor has parsed `dag_id` and the scheduler is healthy."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                health = self.health()
                dag = self._request("GET", f"/api/v2/dags/{dag_id}")
                if health.get("scheduler", {}).get("status") == "healthy":
                    return dag
                last = f"scheduler: {health.get('scheduler')}"
            except AirflowAPIError as e:
                last = str(e)
            time.sleep(2)
        raise AirflowAPIError(f"{dag_id} not ready within {timeout_s:.0f} s ({last})")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        reply = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return reply["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances?limit=1000"
        return self._request("GET", path)["task_instances"]

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                f"{urllib.parse.quote(task_id, safe='')}/tries")
        return self._request("GET", path)["task_instances"]

    def wait(self, dag_id: str, run_id: str, timeout_s: float, poll_s: float = 5) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in FINAL:
                return run
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"{dag_id}/{run_id} still {run['state']} after {timeout_s:.0f} s")
            time.sleep(poll_s)
