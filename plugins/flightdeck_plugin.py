"""Airflow plugin: the flightdeck page inside the Airflow UI, and a link to the MLflow UI.

- ``fastapi_apps``: :func:`flightdeck.ops.ui_page.create_app` mounted by the api-server at
  ``/flightdeck``, answering only to logged-in Airflow users (models with gate decisions,
  promotions and rollbacks, drift over time, retrain requests, quarantine per day), and its
  ``/flightdeck/metrics`` endpoint (Prometheus format, :mod:`flightdeck.monitoring.metrics`)
  behind the same login: Prometheus authenticates with an Airflow JWT sent as a bearer token
  (``authorization: {type: Bearer, credentials_file: ...}``; the token from ``POST /auth/token``
  with the admin login, kept fresh by ``deploy/prometheus/airflow_token.py``);
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
    """Airflow's own check that the caller is a logged-in user (UI cookie or bearer token).

    The bearer token is a JWT issued by the api-server's ``/auth/token``; a missing token is
    refused with 401, an invalid one with 403 (Airflow's ``get_user``), for the page and the
    metrics alike.
    """
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends

    return [Depends(requires_authenticated())]


class FlightdeckPlugin(AirflowPlugin):
    """The flightdeck page (FastAPI app, for logged-in users only) and the navigation entries."""

    name = "flightdeck"
    fastapi_apps = [{"app": create_app(dependencies=_login_required()), "url_prefix": URL_PREFIX, "name": "flightdeck"}]
    external_views = _views
