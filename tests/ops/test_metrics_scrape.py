"""A real Prometheus (Debian's ``prometheus``) scrapes ``/flightdeck/metrics`` through Airflow's login.

The flightdeck plugin's app is served as the api-server mounts it (tests/ops/metrics_server.py:
the plugin's own login dependency, Airflow's SimpleAuthManager and its ``/auth/token``) over a
lake written by hand (tests/metrics_lake.py). The bearer token comes from
``deploy/prometheus/airflow_token.py --once`` (the compose stack's token service), and Prometheus
runs with the shipped ``flightdeck`` scrape job and alert rules (deploy/prometheus/), only the
target and the intervals changed. Its HTTP API then answers with the day's quarantine count, the
PSI of the most drifted feature, the champion version and the freshness the lake documents say,
and the open retrain request and the stale predictions fire their alerts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promkit
import pytest
from metrics_lake import DAY2, EXPECTED, build_metrics_lake
from testkit import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    """Fails, never skips, without a real Prometheus: ``make test`` installs Debian's."""
    if not Path(promkit.PROMETHEUS).is_file():
        pytest.fail("Debian's prometheus is not installed: run `make prometheus` (make test does)")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The lake, and the plugin app on a free loopback port behind Airflow's login (admin / a random password)."""
    build_metrics_lake(tmp_path / "lake")
    password = secrets.token_urlsafe(16)
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    env = {
        **os.environ,
        "FLIGHTDECK__LAKE__ROOT": str(tmp_path / "lake"),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [PYTHON, str(ROOT / "tests" / "ops" / "metrics_server.py"), str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        promkit.wait("the plugin app", lambda: promkit.get(f"{base}/flightdeck/metrics")[0] == 401, 60, server)
        yield {"base": base, "env": {**env, "AIRFLOW_ADMIN_PASSWORD": password}, "tmp": tmp_path}
    finally:
        promkit.stop(server)
        log.close()


def test_prometheus_scrapes_the_days_metrics_through_airflows_login(served: dict[str, Any]) -> None:
    base, tmp = served["base"], served["tmp"]
    # Without a token, or with a forged one, the endpoint answers as the page does: not to strangers.
    assert promkit.get(f"{base}/flightdeck/metrics")[0] == 401
    assert promkit.get(f"{base}/flightdeck/metrics", token="not-a-jwt")[0] in (401, 403)

    token_file = tmp / "token" / "airflow.jwt"
    subprocess.run(
        [PYTHON, str(DEPLOY / "airflow_token.py"), "--url", base, "--out", str(token_file), "--once"],
        env=served["env"],
        check=True,
        timeout=60,
    )
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    # The first scrape imports pyarrow in the server: slow on a busy machine, hence the long timeout.
    status, content_type, body = promkit.get(f"{base}/flightdeck/metrics", token=token_file.read_text(), timeout=60)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), (status, content_type)
    assert b"flightdeck_champion_version" in body

    with promkit.running(tmp, base.removeprefix("http://"), token_file) as prometheus:
        query = prometheus.query
        quarantined = query(f'sum(flightdeck_ingest_rows_quarantined{{partition="{DAY2}"}})')
        assert float(quarantined[0]["value"][1]) == EXPECTED["day2_quarantined_total"]
        top = query("topk(1, flightdeck_feature_psi)")
        feature, psi = EXPECTED["most_drifted"]
        assert top[0]["metric"]["feature"] == feature and top[0]["metric"]["partition"] == DAY2
        assert float(top[0]["value"][1]) == pytest.approx(psi)
        champion = query("flightdeck_champion_version")
        assert float(champion[0]["value"][1]) == EXPECTED["champion"]
        # Freshness: the age of DAY2's commit marker at the scrape, and the commit time itself.
        fresh = query("flightdeck_predictions_freshness_seconds")
        assert fresh[0]["metric"]["partition"] == DAY2
        scraped_at, age = float(fresh[0]["value"][0]), float(fresh[0]["value"][1])
        assert age == pytest.approx(scraped_at - EXPECTED["commit_ts"], abs=5.0)
        committed = query("flightdeck_predictions_last_commit_timestamp_seconds")
        assert float(committed[0]["value"][1]) == pytest.approx(EXPECTED["commit_ts"], abs=1e-3)
        # The shipped rules loaded, and the open retrain request (and the stale predictions) fire.
        expected = {"FlightdeckRetrainRequestOpen", "FlightdeckPredictionsStale"}

        def firing() -> set[str]:
            names = {r["metric"]["alertname"] for r in query('ALERTS{alertstate="firing"}')}
            return names if names >= expected else set()

        names = prometheus.wait("the alerts", firing, 15)
        assert "FlightdeckLiveAucLow" not in names  # live AUC 0.71 is above the 0.70 threshold
        assert "FlightdeckQuarantineRateHigh" not in names  # 25 of 1000 rows (2.5 %) is under 5 %
        assert "FlightdeckMetricsPartUnreadable" not in names
