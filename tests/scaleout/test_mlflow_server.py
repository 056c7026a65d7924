"""The scale-out MLflow server for real: PostgreSQL backend store, artifacts on S3 (a moto
server), basic authentication, started by ``deploy/mlflow-server.sh`` as docker-compose.yaml does.

A small model is logged through the server (the server writes its artifacts to S3), registered,
made champion through :mod:`flightdeck.model.registry` (the promotion ledger goes to an S3 lake), then
loaded back as ``models:/<name>@champion`` and scored. Requests without a login are refused.
PostgreSQL must be at 127.0.0.1:5432: without it the test fails, it never skips.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from scaleout_support import PG, ROOT, S3_CREDENTIALS, free_port, pg_uri, start_group, stop_group, wait_http

pytestmark = pytest.mark.scaleout

ADMIN = ("flightdeck-admin", "s3cret%with-percent")
MODEL = "flightdeck_scaleout_test"


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=90) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.fixture(scope="module")
def mlflow_server(
    fresh_db: Callable[[str], str], module_s3_bucket: str, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    s3_bucket = module_s3_bucket
    backend = fresh_db("flightdeck_scaleout_mlflow")
    auth_db = fresh_db("flightdeck_scaleout_mlflow_auth")
    port = free_port()
    env = {
        **os.environ,
        **S3_CREDENTIALS,
        "MLFLOW_BIN": str(ROOT / ".venv" / "bin" / "mlflow"),
        "MLFLOW_BACKEND_STORE_URI": pg_uri(backend),
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{s3_bucket}/artifacts",
        "MLFLOW_S3_ENDPOINT_URL": moto_endpoint,
        "MLFLOW_AUTH_DATABASE_URI": pg_uri(auth_db),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key-not-for-production",
        # The GenAI job runner (an extra process) is not needed here; the machine is small.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path_factory.mktemp("mlflow") / "mlflow-server.log"
    cmd = [
        "bash",
        str(ROOT / "deploy" / "mlflow-server.sh"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--allowed-hosts",
        f"127.0.0.1:{port},127.0.0.1,localhost:{port}",
    ]
    proc = start_group(cmd, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/health", timeout=120, ok=lambda code: code == 200)
        except TimeoutError:
            raise AssertionError(
                f"MLflow server did not start; log:\n{log.read_text(errors='replace')[-4000:]}"
            ) from None
        yield {"url": url, "bucket": s3_bucket, "backend_db": backend}
    finally:
        stop_group(proc)


@pytest.fixture()
def tracking(mlflow_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point this process's MLflow client at the server, logged in as the admin."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    url = mlflow_server["url"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    saved = tracking_utils._tracking_uri
    import mlflow

    mlflow.set_tracking_uri(url)
    try:
        yield url
    finally:
        tracking_utils._tracking_uri = saved


def test_server_refuses_requests_without_a_login(mlflow_server: dict[str, Any]) -> None:
    api = f"{mlflow_server['url']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(api) == 401
    assert _get(api, ("admin", "wrong")) == 401
    assert _get(api, ADMIN) == 200


def test_model_round_trip_through_postgres_and_s3(mlflow_server: dict[str, Any], tracking: str) -> None:
    import mlflow
    import sklearn
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    from flightdeck.core.lake import Lake, list_docs, read_json
    from flightdeck.model import registry

    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, y)

    mlflow.set_experiment(MODEL)
    with mlflow.start_run() as run:
        mlflow.log_metric("train_accuracy", float(model.score(x, y)))
        # Explicit requirements: inferring them loads the model in a subprocess (slow, adds nothing here).
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=MODEL, pip_requirements=[f"scikit-learn=={sklearn.__version__}"]
        )
    version = str(info.registered_model_version)
    assert version == "1"

    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    lake = Lake(f"s3a://{mlflow_server['bucket']}/lake")
    challenger = registry.set_challenger(MODEL, version, lake=lake, client=client)
    move = registry.Move(MODEL, version, expected_current=None, decision_ref="scale-out test")
    record = registry.promote(move, lake=lake, client=client)
    assert registry.champion_version(MODEL, client=client) == version
    assert registry.alias_version(MODEL, registry.CHALLENGER, client=client) is None
    # Both moves are in the alias ledger on S3: the challenger set, then the champion moved to it.
    ledger = list_docs(lake.promotions())
    assert ledger == [
        f"s3a://{mlflow_server['bucket']}/lake/monitoring/promotions/{MODEL}-challenger-000001.json",
        f"s3a://{mlflow_server['bucket']}/lake/monitoring/promotions/{MODEL}-champion-000001.json",
    ]
    assert [challenger["ledger"], record["ledger"]] == ledger
    assert read_json(ledger[0])["to"] == version
    assert read_json(ledger[1])["version"] == version

    # The run's artifacts went through the server to S3, not to a local folder.
    keys = [
        obj["Key"]
        for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=mlflow_server["bucket"])
        for obj in page.get("Contents", [])
    ]
    assert any(k.startswith("artifacts/") and k.endswith("MLmodel") for k in keys), keys
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    assert not (ROOT / "mlartifacts").exists()

    # The registry lives in PostgreSQL.
    import psycopg2

    with (
        psycopg2.connect(dbname=mlflow_server["backend_db"], connect_timeout=5, **PG) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s", (MODEL,))
        assert cur.fetchall() == [("champion", 1)]

    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@{registry.CHAMPION}")
    probe = rng.normal(size=(50, 3))
    np.testing.assert_array_equal(np.asarray(champion.predict(probe)), model.predict(probe))
    assert json.dumps(champion.metadata.to_dict()["flavors"]).count("sklearn") >= 1
