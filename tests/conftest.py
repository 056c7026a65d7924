"""Shared fixtures: one SparkSession for the whole run, and a throwaway lake/config."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """End-to-end tests run last, so their session-scoped stack (Airflow's scheduler, MLflow)
    is up only while they run, never beside the rest of the suite on a 2-core machine."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session", autouse=True)
def _default_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that names no lake writes to a throwaway one, never to the repository's ``.flightdeck``."""
    key = "FLIGHTDECK__LAKE__ROOT"
    if os.environ.get(key):
        yield
        return
    os.environ[key] = str(tmp_path_factory.mktemp("default-lake"))
    yield
    os.environ.pop(key, None)


@pytest.fixture(autouse=True)
def _mlflow_isolation() -> Iterator[None]:
    """Each test starts with the MLflow tracking target its own environment names.

    ``mlflow.set_tracking_uri`` keeps the URI in a module global (which wins over the
    environment) and writes it into ``os.environ``; without this reset one test's store
    would receive the next test's runs.
    """
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {k: os.environ.get(k) for k in keys}
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        from mlflow.tracking import fluent
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        while mlflow.active_run() is not None:
            mlflow.end_run()
        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None
        fluent._active_experiment_id = None
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local SparkSession, configured like the jobs' (ANSI on, UTC)."""
    from flightdeck.data.sparkio import build_session

    session = build_session(
        "flightdeck-tests",
        {
            "spark.master": "local[2]",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.ui.enabled": "false",
        },
    )
    yield session
    session.stop()


@pytest.fixture()
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh lake folder; the config's lake root points at it."""
    root = tmp_path / "lake"
    root.mkdir()
    monkeypatch.setenv("FLIGHTDECK__LAKE__ROOT", str(root))
    return root
