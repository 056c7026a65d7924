"""A small client for the Airflow 3 REST API (``/api/v2``), used by the CLI and the demo."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TERMINAL = {"success", "failed"}


class AirflowApiError(RuntimeError):
    """The Airflow API refused a call or could not be reached."""


@dataclass
class AirflowApi:
    """Token-authenticated calls against one Airflow api-server."""

    base_url: str
    username: str
    password: str
    _token: str | None = field(default=None, repr=False)

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise AirflowApiError(f"{method} {path} -> HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError) as err:
            raise AirflowApiError(
                f"Airflow API at {self.base_url} is not reachable ({err}); is it up? (make up)"
            ) from err
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            answer = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = str(answer["access_token"])
        return self._token

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", path, body)

    # --- convenience ------------------------------------------------------------------------

    def dags(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v2/dags?limit=100")["dags"])

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v2/importErrors")["import_errors"])

    def unpause(self, dag_id: str) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}))

    def backfill(self, dag_id: str, first: str, last: str, max_active_runs: int | None = 1) -> dict[str, Any]:
        """Create a backfill of ``first..last``; ``max_active_runs=None`` keeps Airflow's default (10)."""
        body: dict[str, Any] = {
            "dag_id": dag_id,
            "from_date": f"{first}T00:00:00Z",
            "to_date": f"{last}T00:00:00Z",
            "reprocess_behavior": "completed",
        }
        if max_active_runs is not None:
            body["max_active_runs"] = max_active_runs
        return dict(self.post("/api/v2/backfills", body))

    def runs(self, dag_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit={limit}&order_by=-run_after")["dag_runs"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return list(self.get(path)["task_instances"])

    def dag_tasks(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's tasks, each with its ``downstream_task_ids`` and operator."""
        return list(self.get(f"/api/v2/dags/{dag_id}/tasks")["tasks"])

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task instance (earlier tries from the history table), oldest first."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/tries"
        return sorted(self.get(path)["task_instances"], key=lambda t: int(t["try_number"]))

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[dict[str, Any]]:
        """One try's whole task log as structured events (each with ``timestamp`` and ``event``)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/logs/{try_number}?full_content=true"
        )
        content = self.get(path)["content"]
        # A log the reader could not parse comes back as plain lines.
        return [e if isinstance(e, dict) else {"timestamp": None, "event": str(e)} for e in content]

    def asset_events(self, since: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Asset events, oldest first; ``since`` (ISO time) keeps those at or after it."""
        query = f"limit={limit}&order_by=timestamp"
        if since:
            query += f"&timestamp_gte={urllib.parse.quote(since)}"
        return list(self.get(f"/api/v2/assets/events?{query}")["asset_events"])

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed every DAG (and fail on import errors)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            errors = self.import_errors()
            if errors:
                lines = "; ".join(f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}" for e in errors)
                raise AirflowApiError(f"DAG import errors: {lines}")
            known = {d["dag_id"] for d in self.dags()}
            if set(dag_ids) <= known:
                return
            time.sleep(2)
        raise AirflowApiError(f"DAGs {dag_ids} not parsed within {timeout:.0f}s; see the dag-processor log")

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a DAG run until it ends; report task state changes through ``progress``."""
        deadline = time.monotonic() + timeout
        seen: set[tuple[str, str]] = set()
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if progress is not None:
                for ti in self.task_instances(dag_id, run_id):
                    state = str(ti.get("state"))
                    if (ti["task_id"], state) not in seen and state not in {"None", "scheduled", "queued"}:
                        seen.add((ti["task_id"], state))
                        progress(f"{dag_id} [{run.get('partition_key') or run_id}] {ti['task_id']}: {state}")
            if run["state"] in TERMINAL:
                return run
            time.sleep(3)
        raise AirflowApiError(f"{dag_id} run {run_id} did not finish within {timeout:.0f}s")
