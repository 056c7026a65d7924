"""Serve the flightdeck plugin's app as Airflow's api-server mounts it, for tests/ops/test_metrics_scrape.py.

    python tests/ops/metrics_server.py PORT

The plugin (``plugins/flightdeck_plugin.py``) is loaded as Airflow loads it, its FastAPI app is
mounted under its ``url_prefix`` next to the configured auth manager's app (``/auth``, whose
``/auth/token`` issues the JWTs), exactly as ``airflow.api_fastapi.app`` does; so every request
to ``/flightdeck/...`` passes the plugin's own login dependency (Airflow's
``requires_authenticated``: a bearer JWT or the UI cookie). Airflow's configuration comes from
the environment the test sets (SimpleAuthManager, a JWT secret, a SQLite metadata database).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "flightdeck_plugin.py"


def main(port: int) -> None:
    """Build the app and serve it on 127.0.0.1:PORT until killed."""
    import uvicorn
    from airflow import settings
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI

    settings.configure_orm()
    # The only metadata table a token check reads (revoked JWTs); the full schema is not needed.
    RevokedToken.metadata.create_all(settings.engine, tables=[RevokedToken.__table__])
    spec = importlib.util.spec_from_file_location("flightdeck_plugin", PLUGIN)
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    root = FastAPI()
    init_auth_manager(root)
    for entry in plugin.FlightdeckPlugin.fastapi_apps:
        root.mount(entry["url_prefix"], entry["app"])
    uvicorn.run(root, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
