"""Airflow plugin: links the MLflow UI (models, runs, drift charts) into Airflow's navigation.

The URL is the MLflow UI as a browser reaches it: ``FLIGHTDECK_MLFLOW_UI_URL``,
else ``MLFLOW_TRACKING_URI`` when that is an http(s) address.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin


def _mlflow_ui_url() -> str | None:
    url = os.environ.get("FLIGHTDECK_MLFLOW_UI_URL") or os.environ.get("MLFLOW_TRACKING_URI", "")
    return url if url.startswith(("http://", "https://")) else None


class FlightdeckPlugin(AirflowPlugin):
    """Adds 'MLflow (flightdeck)' to the Browse menu."""

    name = "flightdeck"
    external_views = (
        [{"name": "MLflow (flightdeck)", "href": _mlflow_ui_url(), "destination": "nav", "category": "browse"}]
        if _mlflow_ui_url()
        else []
    )
