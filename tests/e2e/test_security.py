"""Nobody in who should not be: the e2e stack (Airflow on PostgreSQL) after the short loop.

- the Airflow REST API, the UI's own API and the flightdeck page refuse requests without
  credentials and with a token signed by another secret;
- the JWT secret and the Fernet key are set (generated per state folder);
- a connection's password is stored encrypted, reaches the webhook it is for, and never
  appears in a task log or a service log.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

PROTECTED = ["/api/v2/dags", "/api/v2/connections", "/ui/dags", "/flightdeck/", "/flightdeck/api/state"]


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.mark.parametrize("path", PROTECTED)
def test_requests_without_valid_credentials_are_refused(stack: Any, demo_result: Any, path: str) -> None:
    import jwt

    url = f"{stack.airflow_url}{path}"
    assert _status(url) in {401, 403}, f"{path} answered without credentials"
    now = dt.datetime.now(dt.UTC)
    forged = jwt.encode(
        {"sub": "admin", "role": "admin", "iat": now, "nbf": now, "exp": now + dt.timedelta(hours=1)},
        "not-the-deployment-secret-0123456789abcdef",
        algorithm="HS512",
    )
    assert _status(url, forged) in {401, 403}, f"{path} accepted a token signed with another secret"
    assert _status(url, demo_result["api"].token()) == 200, f"{path} refused the admin's token"


def test_jwt_secret_and_fernet_key_are_set(stack: Any, tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from flightdeck.ops.runtime import Runtime

    env = stack.environ()
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    Fernet(env["AIRFLOW__CORE__FERNET_KEY"].encode())  # a valid key, or this raises
    other = Runtime(state=tmp_path).secrets()  # another deployment gets its own
    assert other["jwt_secret"] != env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert other["fernet_key"] != env["AIRFLOW__CORE__FERNET_KEY"]


def test_connection_secret_is_encrypted_used_and_never_logged(
    stack: Any, demo_result: Any, alert_hook: dict[str, Any], canary: str
) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(stack.airflow_db)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT password, is_encrypted FROM connection WHERE conn_id = 'flightdeck_alerts'")
            stored, encrypted = cur.fetchone()
    finally:
        conn.close()
    assert encrypted is True and canary not in stored

    # The tasks used it: promotions and retrain requests reached the webhook with the token.
    events = {r["event"] for r in alert_hook["received"] if r["auth"] == f"Bearer {canary}"}
    assert {"promotion", "retrain_requested"} <= events, alert_hook["received"]

    logs = [p for p in (stack.airflow_home / "logs").rglob("*") if p.is_file()]
    logs += [p for p in stack.log_dir.glob("*.log") if p.is_file()]
    assert any("dag_id=flightdeck_train" in str(p) for p in logs), "no task logs found"
    leaked = [str(p) for p in logs if canary.encode() in p.read_bytes()]
    assert not leaked, f"the connection's password appears in {leaked}"
