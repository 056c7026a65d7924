"""The ``flightdeck`` command line turns user errors into one line and exit code 2, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ("2013-13-01..2013-02-01", "'2013-13-01' is not a date in YYYY-MM-DD form"),
        ("2013-01-01,2013-01-05", "'2013-01-01,2013-01-05' must be one continuous range"),
    ],
)
def test_demo_with_a_bad_history_is_a_one_line_error(tmp_path: Path, history: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIRFLOW", "FLIGHTDECK"))}
    env["FLIGHTDECK_STATE"] = str(tmp_path / "state")  # never the state of a running demo
    done = subprocess.run(
        [sys.executable, "-m", "flightdeck.ops.cli", "demo", "--history", history],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flightdeck: error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "state").exists()  # nothing was started or created


def _cli(args: list[str], lake: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIRFLOW", "FLIGHTDECK"))}
    env["FLIGHTDECK__LAKE__ROOT"] = str(lake)
    return subprocess.run(
        [sys.executable, "-m", "flightdeck.ops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_feed_delivers_days_and_never_overwrites_a_delivered_file(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    done = _cli(["feed", "--days", "2013-02-01..2013-02-02"], lake)
    assert done.returncode == 0, done.stderr
    assert "delivered 2 day(s) 2013-02-01..2013-02-02" in done.stderr + done.stdout
    flights = lake / "landing" / "flights" / "flights_2013-02-01.csv"
    assert flights.read_text().startswith("year,month,day,")
    assert (lake / "landing" / "weather" / "weather_2013-02-02.csv").is_file()
    assert (lake / "landing" / "reference" / "planes.csv").is_file()
    flights.write_text("year,month,day\n")  # what the upstream delivered is its own
    assert _cli(["feed", "--days", "2013-02-01"], lake).returncode == 0
    assert flights.read_text() == "year,month,day\n"
    assert _cli(["feed", "--days", "2013-02-01", "--redeliver"], lake).returncode == 0
    assert flights.read_text().startswith("year,month,day,dep_time")


def test_feed_outside_the_calendar_is_a_one_line_error(tmp_path: Path) -> None:
    done = _cli(["feed", "--days", "2014-01-01"], tmp_path / "lake")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "outside the configured calendar 2013-01-01..2013-12-31 (calendar.start/end)" in done.stderr
