"""flightdeck's processes do not phone home: MLflow telemetry and GX analytics are off unless the
user turned them on. Checked in a fresh interpreter without the CI and pytest markers, where
MLflow 3 would otherwise send telemetry (and wait on the network at exit)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import flightdeck, os\n"
    "from mlflow.telemetry.utils import is_telemetry_disabled\n"
    "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['GX_ANALYTICS_ENABLED'], is_telemetry_disabled())\n"
)
MARKERS = (
    "CI",
    "PYTEST_CURRENT_TEST",
    "GITHUB_ACTIONS",
    "MLFLOW_DISABLE_TELEMETRY",
    "GX_ANALYTICS_ENABLED",
    "DO_NOT_TRACK",
)


def _probe(**extra: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in MARKERS} | extra
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.split()


def test_importing_flightdeck_turns_mlflow_telemetry_and_gx_analytics_off() -> None:
    assert _probe() == ["true", "false", "True"]


def test_a_value_the_user_set_wins() -> None:
    assert _probe(MLFLOW_DISABLE_TELEMETRY="false", GX_ANALYTICS_ENABLED="true")[:2] == ["false", "true"]
