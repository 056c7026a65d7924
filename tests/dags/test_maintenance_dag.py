"""The maintenance DAG's retention task, called as Airflow would call it, on a real MLflow store (SQLite):
a dry run changes nothing, then the configured policy deprecates and, after its grace, deletes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
NAME = "flightdeck-maintenance-test"


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key, value in {
        "MLFLOW_TRACKING_URI": uri,
        "FLIGHTDECK__MODEL__NAME": NAME,
        "FLIGHTDECK__LAKE__ROOT": str(tmp_path / "lake"),
        "FLIGHTDECK__RETENTION__KEEP_LAST": "1",
        "FLIGHTDECK__RETENTION__GRACE_DAYS": "0",
    }.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for v in (1, 2, 3):
        source = tmp_path / "models" / f"v{v}"
        source.mkdir(parents=True)
        (source / "MLmodel").write_text("flavors: {}\n")
        client.create_model_version(NAME, source=str(source))
    client.set_registered_model_alias(NAME, "champion", "1")
    return client


def test_the_retention_task_applies_the_configured_policy(store: Any, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from flightdeck.core.lake import Lake
    from flightdeck.model.retention import DEPRECATED_TAG, retention_records

    dag = DagBag(dag_folder=str(DAGS_DIR / "flightdeck_maintenance.py")).dags["flightdeck_maintenance"]
    apply = dag.get_task("apply_retention").python_callable
    run = SimpleNamespace(
        run_after=dt.datetime(2026, 12, 6, tzinfo=dt.UTC), triggering_user_name="alice", run_type="manual", run_id="r"
    )

    dry = apply(params={"dry_run": True}, dag_run=run, data_interval_end=None)
    assert dry["dry_run"] is True and dry["who"] == "airflow:alice" and dry["day"] == "2026-12-06"
    assert {s["version"]: s["action"] for s in dry["steps"]} == {"3": "keep", "2": "deprecate", "1": "keep"}
    assert DEPRECATED_TAG not in store.get_model_version(NAME, "2").tags

    applied = apply(params={"dry_run": False}, dag_run=run, data_interval_end=None)
    assert [(s["version"], s["done"]) for s in applied["steps"] if s["action"] == "deprecate"] == [("2", True)]
    assert store.get_model_version(NAME, "2").tags[DEPRECATED_TAG] == "2026-12-06"

    later = apply(params={"dry_run": False}, dag_run=run, data_interval_end=dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
    assert [(s["version"], s["done"]) for s in later["steps"] if s["action"] == "delete"] == [("2", True)]
    assert sorted(str(mv.version) for mv in store.search_model_versions(f"name='{NAME}'")) == ["1", "3"]
    assert not (tmp_path / "models" / "v2").exists() and (tmp_path / "models" / "v3").exists()
    assert [r.seq for r in retention_records(NAME, lake=Lake(str(tmp_path / "lake")))] == [1, 2, 3]
