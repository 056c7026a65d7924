"""The end-to-end stack, shared by every e2e module: started once per test session.

Airflow's metadata and MLflow's backend store live in the machine's PostgreSQL
(127.0.0.1:5432), as in a production deployment; the tests fail loudly when it is
not there. ``demo_result`` runs the short loop once: two weeks of January train the
first champion, the second half of June is history, and one July day flows through
ingest, features, scoring and monitoring, where seasonal drift triggers retraining.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

DAY = "2013-07-01"


def _fresh_database(name: str) -> str:
    from testkit import PostgresUnavailable, fresh_database

    try:
        return fresh_database(name)
    except PostgresUnavailable as err:
        pytest.fail(str(err))


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` applied, restored afterwards (the stack's env never leaks to other tests)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# A short window needs a small model and a forgiving floor; the logic is the same.
OVERRIDES = {
    "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "60",
    "FLIGHTDECK__MODEL__SEARCH__MAX_TRIALS": "1",  # the search itself is tested in tests/model
    "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "4",
    "FLIGHTDECK__GATE__MIN_AUC": "0.55",
    "FLIGHTDECK__GATE__MAX_AUC_REGRESSION": "0.2",
    # Alerts also go to a webhook whose URL and bearer token live in an Airflow connection.
    "FLIGHTDECK__ALERTS__WEBHOOK_CONN_ID": "flightdeck_alerts",
    # The inbox watcher looks for late and re-delivered files every few seconds.
    "FLIGHTDECK__ARRIVAL__WATCH_SECONDS": "5",
    # The history has no early June: July 1's features go ahead at once, marked degraded, and
    # no decision waits for earlier days (the sensors' waits are tested in tests/data, tests/monitoring).
    "FLIGHTDECK__TIMEOUTS__UPSTREAM_WAIT_HOURS": "0",
}
# The webhook connection's password: it must reach the webhook and never a task log.
CANARY = "canary-7f3e9c1d-never-in-logs"


@pytest.fixture(scope="session")
def canary() -> str:
    return CANARY


@pytest.fixture(scope="session")
def alert_hook() -> Iterator[Any]:
    """The webhook the stack's alerts go to (through the ``flightdeck_alerts`` connection)."""
    from testkit import HttpReceiver

    receiver = HttpReceiver(path="/alerts", status=204, answer=b"")
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from testkit import free_port, pg_uri

    from flightdeck.ops.runtime import Runtime

    state = tmp_path_factory.mktemp("state")
    airflow_db = _fresh_database("flightdeck_e2e_airflow")
    mlflow_db = _fresh_database("flightdeck_e2e_mlflow")
    rt = Runtime(
        state=Path(state),
        airflow_port=free_port(),
        mlflow_port=free_port(),
        spark_connect_port=free_port(),
        airflow_db=pg_uri(airflow_db),
        mlflow_db=pg_uri(mlflow_db),
    )
    try:
        with _environ(OVERRIDES):  # the services inherit them
            rt.start()
        yield rt
    finally:
        rt.stop()


@pytest.fixture(scope="session")
def stack_env(stack: Any) -> dict[str, str]:
    """The environment the stack's tasks run with (lake, MLflow, config overrides)."""
    return {**stack.environ(), **OVERRIDES}


@pytest.fixture(autouse=True)
def _stack_environ(stack_env: dict[str, str]) -> Iterator[None]:
    """Each e2e test sees the stack's environment, and only e2e tests do."""
    with _environ(stack_env):
        yield


@pytest.fixture(scope="session")
def demo_result(stack: Any, stack_env: dict[str, str], alert_hook: Any) -> dict:
    from flightdeck.core.config import load_config
    from flightdeck.ops.airflow_api import AirflowApi
    from flightdeck.ops.demo import plan_from_config, run_demo

    api = AirflowApi(stack.airflow_url, "admin", stack.admin_password())
    plan = plan_from_config(
        load_config(),
        history=["2013-01-01..2013-01-14", "2013-06-17..2013-06-30"],
        train_start="2013-01-01",
        train_end="2013-01-14",
        days=DAY,
        timeout=1200,
    )
    # Stored through the REST API: in the metadata database, encrypted with the Fernet key.
    api.post(
        "/api/v2/connections",
        {"connection_id": "flightdeck_alerts", "conn_type": "http", "host": alert_hook.url, "password": CANARY},
    )
    try:
        with _environ(stack_env):
            result = run_demo(api, plan, lambda m: print(m, file=sys.stderr, flush=True))
    except Exception:
        for log in sorted(stack.log_dir.glob("*.log")):
            print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        raise
    return {"result": result, "api": api, "day": DAY}
