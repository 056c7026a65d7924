"""Airflow plugin: the flightdeck page inside the Airflow UI, and a link to the MLflow UI.

- ``fastapi_apps``: :func:`flightdeck.ops.ui_page.create_app` mounted by the api-server at
  ``/flightdeck``, answering only to logged-in Airflow users (models with gate decisions,
  promotions and rollbacks, drift over time, retrain requests, quarantine per day);
- ``external_views``: "flightdeck" in the navigation, shown inside the Airflow UI, and
  "MLflow (flightdeck)" in Browse when the MLflow UI URL is known
  (``FLIGHTDECK_MLFLOW_UI_URL``, else an http(s) ``MLFLOW_TRACKING_URI``).

The page's logic lives in ``flightdeck.ops.ui_page`` (its data in ``flightdeck.ops.readmodel``,
shared with ``flightdeck status``; its HTML in ``flightdeck/ops/templates``); this file only registers it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from flightdeck.ops.ui_page import URL_PREFIX, create_app, mlflow_ui_url

_views = [
    {
        "name": "flightdeck",
        "href": URL_PREFIX.lstrip("/") + "/",  # relative: works behind a proxy prefix
        "destination": "nav",
        "url_route": "flightdeck",
    }
]
if mlflow_ui_url():
    _views.append({"name": "MLflow (flightdeck)", "href": mlflow_ui_url(), "destination": "nav", "category": "browse"})


def _login_required() -> list[object]:
    """Airflow's own check that the caller is a logged-in user (UI cookie or bearer token)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends

    return [Depends(requires_authenticated())]


class FlightdeckPlugin(AirflowPlugin):
    """The flightdeck page (FastAPI app, for logged-in users only) and the navigation entries."""

    name = "flightdeck"
    fastapi_apps = [{"app": create_app(dependencies=_login_required()), "url_prefix": URL_PREFIX, "name": "flightdeck"}]
    external_views = _views
