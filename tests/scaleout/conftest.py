"""Fixtures for the scale-out tests: a real S3 API (moto server over HTTP on loopback), fresh
PostgreSQL databases (the machine's server at 127.0.0.1:5432; missing means fail, never skip),
and process-group helpers for the MLflow server and the Spark standalone cluster."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scaleout_support import S3_CREDENTIALS, drop_database, free_port, fresh_database, wait_http


@pytest.fixture(scope="module")
def fresh_db() -> Iterator[Callable[[str], str]]:
    """Create fresh PostgreSQL databases (fails loudly when PostgreSQL is down); dropped afterwards."""
    created: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        created.append(fresh_database(name))
        return name

    yield make
    for name in created:
        drop_database(name)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port: the real S3 HTTP API, in memory."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(f"{endpoint}/moto-api/", timeout=30)
    yield endpoint
    server.stop()


def _new_bucket(endpoint: str, mp: pytest.MonkeyPatch) -> str:
    import boto3

    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    for key, value in S3_CREDENTIALS.items():
        mp.setenv(key, value)
    # Never let a developer's real AWS profile leak into the tests.
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    bucket = f"flightdeck-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture()
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; boto3 in this process points at it via AWS_ENDPOINT_URL."""
    return _new_bucket(moto_endpoint, monkeypatch)


@pytest.fixture(scope="module")
def module_s3_bucket(moto_endpoint: str) -> Iterator[str]:
    """Like ``s3_bucket``, shared by the tests of one module (for servers started once per module)."""
    with pytest.MonkeyPatch.context() as mp:
        yield _new_bucket(moto_endpoint, mp)


MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
# Two cores on this machine, shared: one core and 1 GiB per worker.
WORKER_SIZE = ("--cores", "1", "--memory", "1g")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A Spark standalone cluster on loopback: one master and two workers (1 core, 1 GiB each),
    started from the pyspark installation with this venv's Python; stopped (process groups) after."""
    import json
    import time
    import urllib.request

    from scaleout_support import spark_env, spark_home, start_group, stop_group

    base = tmp_path_factory.mktemp("spark-cluster")
    env = spark_env()
    env["SPARK_LOG_DIR"] = str(base / "logs")
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    procs = [
        start_group(
            [spark_class, MASTER, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
            env,
            base / "master.log",
        )
    ]
    try:
        wait_http(f"http://127.0.0.1:{ui}/json/", timeout=120, ok=lambda code: code == 200)
        for n in (1, 2):
            work = base / f"worker-{n}"
            work.mkdir()
            cmd = [spark_class, WORKER, master_url, "--host", "127.0.0.1", *WORKER_SIZE]
            cmd += ["--webui-port", str(free_port()), "--work-dir", str(work)]
            procs.append(start_group(cmd, env, base / f"worker-{n}.log"))
        deadline = time.monotonic() + 120
        alive: list[Any] = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=10) as resp:
                state = json.load(resp)
            alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) == 2:
                break
            time.sleep(1)
        else:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in base.glob("*.log"))
            raise AssertionError(f"the Spark workers did not register with {master_url}: {alive}\n{logs}")
        yield {"master": master_url, "ui": f"http://127.0.0.1:{ui}", "dir": base, "workers": alive}
    finally:
        for proc in reversed(procs):
            stop_group(proc)
