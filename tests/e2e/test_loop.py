"""End to end: the whole loop through a real Airflow scheduler, MLflow server and Spark.

Airflow's metadata and MLflow's backend store live in the machine's PostgreSQL
(127.0.0.1:5432), as in a production deployment; the test fails loudly when it
is not there. The run is short: two weeks of January train the first champion,
the second half of June is history, and one July day flows through ingest,
features, scoring and monitoring, where seasonal drift must trigger retraining.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DAY = "2013-07-01"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_database(name: str) -> str:
    import psycopg2

    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    except psycopg2.OperationalError as err:
        pytest.fail(f"PostgreSQL is required at {PG['host']}:{PG['port']} for the end-to-end test: {err}")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from flightdeck.runtime import Runtime

    state = tmp_path_factory.mktemp("state")
    airflow_db = _fresh_database("flightdeck_e2e_airflow")
    mlflow_db = _fresh_database("flightdeck_e2e_mlflow")
    rt = Runtime(
        state=Path(state),
        airflow_port=_free_port(),
        mlflow_port=_free_port(),
        airflow_db=f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{airflow_db}",
        mlflow_db=f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{mlflow_db}",
    )
    overrides = {
        # A short window needs a small model and a forgiving floor; the logic is the same.
        "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "60",
        "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "4",
        "FLIGHTDECK__GATE__MIN_AUC": "0.55",
        "FLIGHTDECK__GATE__MAX_AUC_REGRESSION": "0.2",
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        rt.start()
        os.environ.update(rt.environ())
        yield rt
    finally:
        rt.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def demo_result(stack) -> dict:
    from flightdeck.airflow_api import AirflowApi
    from flightdeck.demo import DemoPlan, run_demo

    api = AirflowApi(stack.airflow_url, "admin", stack.admin_password())
    plan = DemoPlan(
        history=(("2013-01-01", "2013-01-14"), ("2013-06-17", "2013-06-30")),
        train_start="2013-01-01",
        train_end="2013-01-14",
        days=DAY,
        timeout=1200,
    )
    try:
        result = run_demo(api, plan, lambda m: print(m, file=sys.stderr, flush=True))
    except Exception:
        for log in sorted(stack.log_dir.glob("*.log")):
            print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        raise
    return {"result": result, "api": api}


def test_champion_alias_exists(stack, demo_result) -> None:
    from flightdeck import registry
    from flightdeck.config import load_config

    cfg = load_config()
    assert registry.champion_version(cfg.model.name) is not None


def test_predictions_carry_the_model_version(stack, demo_result) -> None:
    import pyarrow.dataset as ds

    from flightdeck.config import load_config
    from flightdeck.lake import Lake

    cfg = load_config()
    lake = Lake(cfg.lake.root)
    assert lake.is_committed("predictions", "flights", DAY)
    table = ds.dataset(lake.partition("predictions", "flights", DAY), format="parquet").to_table()
    assert table.num_rows > 500
    versions = set(table.column("model_version").to_pylist())
    assert None not in versions and len(versions) == 1, versions
    assert set(table.column("model_name").to_pylist()) == {cfg.model.name}
    probs = table.column("probability").to_pylist()
    assert all(0.0 <= p <= 1.0 for p in probs)


def test_quarantine_counts_reconcile(stack, demo_result) -> None:
    from flightdeck import status
    from flightdeck.config import load_config

    lake_state = status.lake_status(load_config())
    q = lake_state["quarantine"]
    assert q["partitions"] >= 29  # 28 days of history + the July day
    assert q["rows_in"] == q["rows_valid"] + q["rows_quarantined"]
    assert q["reconciled"] is True


def test_drift_triggered_a_training_run(stack, demo_result) -> None:
    api = demo_result["api"]
    runs = [r for r in api.runs("flightdeck_train") if r.get("run_type") == "asset_triggered"]
    assert runs, "seasonal drift on 2013-07-01 should have requested a retrain"
    assert runs[0]["partition_key"] == DAY
    assert runs[0]["state"] == "success"
    window = api.get(
        f"/api/v2/dags/flightdeck_train/dagRuns/{runs[0]['dag_run_id']}/taskInstances/plan_window/xcomEntries/return_value"
    )["value"]
    assert "drifted" in str(window), window


def test_status_reports_the_loop(stack, demo_result) -> None:
    from flightdeck import status
    from flightdeck.config import load_config

    report = status.collect(load_config(), demo_result["api"])
    assert report["airflow"]["reachable"]
    assert report["airflow"]["drift_triggered_trainings"] >= 1
    assert report["model"]["champion"]["version"]
    assert report["lake"]["scoring"]["last_partition"] == DAY
    assert report["lake"]["retrain_requests"][0]["partition"] == DAY
