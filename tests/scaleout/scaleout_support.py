"""Helpers shared by the scale-out tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from testkit import PG, drop_database, free_port, fresh_database, pg_uri, spark_home

__all__ = ["PG", "ROOT", "drop_database", "free_port", "fresh_database", "pg_uri"]

ROOT = Path(__file__).resolve().parents[2]


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "flightdeck-test",
    "AWS_SECRET_ACCESS_KEY": "flightdeck-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


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


def spark_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Spark daemons and spark-submit: this venv's Python everywhere, loopback only."""
    import sys

    env = dict(os.environ if base is None else base)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "512m",
        }
    )
    return env
