"""``flightdeck status`` with Airflow and MLflow stopped: the real CLI, in a subprocess, over a small lake.

Both services are pointed at loopback ports nobody listens on. The command must come back within
seconds with the lake's figures and one line per stopped service naming its URL and `make up`,
without a traceback and without MLflow's retry loop.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

DEADLINE_S = 10.0


def _closed_port() -> int:
    """A loopback port that was free a moment ago; nothing is left listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def offline(tmp_path: Path) -> dict[str, Any]:
    """A lake with one ingested day, one retrain request and one champion move; both services down."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, write_json

    lake_root = tmp_path / "lake"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIRFLOW", "FLIGHTDECK"))}
    airflow_port, mlflow_port = _closed_port(), _closed_port()
    env.update(
        {
            "FLIGHTDECK_STATE": str(tmp_path / "state"),
            "FLIGHTDECK__LAKE__ROOT": str(lake_root),
            "FLIGHTDECK_AIRFLOW_PORT": str(airflow_port),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        }
    )
    name = load_config().model.name
    lake = Lake(str(lake_root))

    ledger = Path(lake.partition("monitoring", "ingest_ledger", "2013-07-01"))
    ledger.mkdir(parents=True)
    row = {"source": "flights", "rows_in": 1000, "rows_valid": 970, "rows_quarantined": 30}
    pq.write_table(pa.Table.from_pylist([row]), ledger / "part-0.parquet")
    (ledger / "_SUCCESS").touch()
    write_json(
        lake.retrain_request("2013-07-01"),
        {"partition": "2013-07-01", "reason": "3 of 18 features drifted", "monitoring_run": "asset__1"},
    )
    write_json(
        lake.promotion(f"{name}-champion-1.json"),
        {"model_name": name, "alias": "champion", "seq": 1, "action": "promote", "from": None, "to": "3",
         "at": "2013-07-02T06:00:00+00:00", "who": "test", "why": "gate passed"},
    )  # fmt: skip
    return {"env": env, "airflow": f"http://127.0.0.1:{airflow_port}", "mlflow": f"http://127.0.0.1:{mlflow_port}"}


def _status(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flightdeck.ops.cli", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a hang fails below on the deadline, with the output to look at
        check=False,
    )
    return done, time.monotonic() - started


def test_status_answers_fast_with_the_lake_when_services_are_down(offline: dict[str, Any]) -> None:
    done, seconds = _status(offline["env"])
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert seconds < DEADLINE_S, f"status took {seconds:.1f} s with the services down:\n{output}"

    assert f"Airflow not running at {offline['airflow']}: start it with `make up`" in done.stdout
    assert f"MLflow not running at {offline['mlflow']}: start it with `make up`" in done.stdout
    # the lake's figures are still there
    assert "ingested: 1000 rows in = 970 valid + 30 quarantined over 1 partitions (reconciled)" in done.stdout
    assert "retrain requests: 1" in done.stdout
    assert "2013-07-01 (open): 3 of 18 features drifted" in done.stdout
    assert "promotions: 1" in done.stdout
    assert "alias ledger: champion v3 (since 2013-07-02T06:00:00)" in done.stdout

    assert "Traceback" not in output
    assert "Retrying" not in output and "retries" not in output.lower()


def test_status_json_says_which_service_is_down(offline: dict[str, Any]) -> None:
    done, seconds = _status(offline["env"], "--json")
    assert done.returncode == 0 and seconds < DEADLINE_S, done.stdout + done.stderr
    report = json.loads(done.stdout)
    services = report["services"]
    assert services["airflow"]["up"] is False and services["airflow"]["url"] == offline["airflow"]
    assert services["mlflow"]["up"] is False and services["mlflow"]["url"] == offline["mlflow"]
    assert report["lake"]["quarantine"]["rows_quarantined"] == 30
    assert report["lake"]["retrain_requests"][0]["partition"] == "2013-07-01"
    assert report["lake"]["ledger_aliases"]["champion"]["version"] == "3"
    assert "Traceback" not in done.stderr
