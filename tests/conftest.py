"""Shared fixtures: one SparkSession for the whole run, and a throwaway lake/config."""

from __future__ import annotations

import os
import subprocess
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


TEST_S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "flightdeck-test",
    "AWS_SECRET_ACCESS_KEY": "flightdeck-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port: the real S3 HTTP API, in memory (never ``mock_aws``)."""
    import socket
    import time
    import urllib.request

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield endpoint
    server.stop()


@pytest.fixture()
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; boto3 in this process points at it via AWS_ENDPOINT_URL."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    for key, value in TEST_S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # never a developer's real AWS profile
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    bucket = f"flightdeck-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture()
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts (append them); any still running at the end is killed
    (continued first, in case the test stopped it with SIGSTOP)."""
    import signal

    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait()
