"""Is a service answering? One short HTTP probe per service, no retry, before any client is used.

``flightdeck status`` asks this first so that a stopped Airflow or MLflow costs two seconds, not
the minutes of a client's retry loop, and so that it can say which one to start.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from pydantic import BaseModel

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
AIRFLOW_HEALTH = "/api/v2/monitor/health"
MLFLOW_HEALTH = "/health"


class ServiceState(BaseModel):
    """What a probe found: the service's URL, whether it answered, and if not, why."""

    name: str
    url: str
    up: bool
    detail: str = ""

    def not_running(self) -> str:
        """The line a user reads when the service is down: where it was expected and how to start it."""
        return f"{self.name} not running at {self.url}: start it with `make up`"


def probe(name: str, base_url: str, health_path: str, timeout: float = PROBE_TIMEOUT_S) -> ServiceState:
    """GET ``base_url + health_path`` once; any HTTP answer (even an error status) means the server runs."""
    url = base_url.rstrip("/") + health_path
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return ServiceState(name=name, url=base_url, up=True, detail=f"HTTP {resp.status}")
    except urllib.error.HTTPError as err:
        return ServiceState(name=name, url=base_url, up=True, detail=f"HTTP {err.code}")
    except (urllib.error.URLError, OSError) as err:  # refused, unresolvable, timed out
        reason = getattr(err, "reason", err)
        log.debug("%s does not answer at %s: %s", name, url, reason)
        return ServiceState(name=name, url=base_url, up=False, detail=str(reason))


def probe_airflow(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> ServiceState:
    """Probe the Airflow api-server's health endpoint."""
    return probe("Airflow", base_url, AIRFLOW_HEALTH, timeout)


def probe_mlflow(tracking_uri: str, timeout: float = PROBE_TIMEOUT_S) -> ServiceState:
    """Probe the MLflow tracking server; a local store (``sqlite:``, a folder) has no server and is up."""
    if not tracking_uri.startswith(("http://", "https://")):
        return ServiceState(name="MLflow", url=tracking_uri, up=True, detail="local store, no server")
    return probe("MLflow", tracking_uri, MLFLOW_HEALTH, timeout)
