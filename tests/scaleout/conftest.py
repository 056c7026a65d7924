"""Fixtures for the scale-out tests: a real S3 API (moto server over HTTP on loopback), fresh
PostgreSQL databases (the machine's server at 127.0.0.1:5432; missing means fail, never skip),
and process-group helpers for the MLflow server and the Spark standalone cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _e2e_helpers() -> ModuleType:
    """The end-to-end test's helpers (free port, fresh PostgreSQL database), reused as they are."""
    spec = importlib.util.spec_from_file_location("flightdeck_e2e_helpers", ROOT / "tests" / "e2e" / "test_loop.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


E2E = _e2e_helpers()
PG: dict[str, Any] = E2E.PG


def free_port() -> int:
    return int(E2E._free_port())


def pg_uri(db: str) -> str:
    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{db}"


def drop_database(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture()
def fresh_db() -> Iterator[Callable[[str], str]]:
    """Create fresh PostgreSQL databases (fails loudly when PostgreSQL is down); dropped afterwards."""
    created: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        created.append(E2E._fresh_database(name))
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


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "flightdeck-test",
    "AWS_SECRET_ACCESS_KEY": "flightdeck-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture()
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; boto3 in this process points at it via AWS_ENDPOINT_URL."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    # Never let a developer's real AWS profile leak into the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    bucket = f"flightdeck-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    return bucket


def wait_http(url: str, timeout: float, ok: Callable[[int], bool] = lambda code: code < 500) -> None:
    """Wait until ``url`` answers with a status ``ok`` accepts."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if ok(resp.status):
                    return
                last = resp.status
        except urllib.error.HTTPError as err:
            if ok(err.code):
                return
            last = err
        except OSError as err:
            last = err
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s: {last}")


def start_group(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own process group, output to ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop a process group started by :func:`start_group`: TERM, then KILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    # Children that outlived the leader (server workers) share its group: end them too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
