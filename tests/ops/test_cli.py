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
