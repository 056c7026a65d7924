"""Nobody in who should not be: the e2e stack (Airflow on PostgreSQL) after the short loop.

- the Airflow REST API, the UI's own API and the flightdeck page refuse requests without
  credentials and with a token signed by another secret;
- the JWT secret and the Fernet key are set (generated per state folder), only in a 0600
  airflow.cfg, never in the environment the services, tasks and Spark jobs inherit;
- every socket the running stack listens on (services and their children) is on loopback;
- the MLflow server refuses requests without a login;
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
    import configparser
    import stat

    import psutil
    from cryptography.fernet import Fernet

    from flightdeck.ops.runtime import Runtime

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(stack.airflow_cfg)
    jwt_secret, fernet_key = cfg["api_auth"]["jwt_secret"], cfg["core"]["fernet_key"]
    assert len(jwt_secret) >= 32
    Fernet(fernet_key.encode())  # a valid key, or this raises
    assert stat.S_IMODE(stack.airflow_cfg.stat().st_mode) == 0o600
    # Not in the environment of any running service (tasks and Spark jobs inherit the scheduler's).
    for service in ("scheduler", "api-server", "triggerer", "dag-processor", "mlflow"):
        environ = "\n".join(f"{k}={v}" for k, v in psutil.Process(stack.pid_of(service)).environ().items())
        assert jwt_secret not in environ and fernet_key not in environ, f"{service} has an Airflow secret in its env"
        if service != "api-server":  # its setproctitle overwrites what /proc shows of its environment
            assert "AIRFLOW__CORE__UNIT_TEST_MODE=False" in environ, f"{service} would ignore airflow.cfg"
    other = Runtime(state=tmp_path).secrets()  # another deployment gets its own
    assert other["jwt_secret"] != jwt_secret
    assert other["fernet_key"] != fernet_key


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_every_listening_socket_of_the_stack_is_on_loopback(stack: Any, demo_result: Any) -> None:
    """A psutil sweep of every service and its children (LocalExecutor workers, gunicorn/uvicorn
    workers, serve-logs if it were started): only loopback LISTEN sockets."""
    import psutil

    listening: dict[tuple[str, int], str] = {}
    for service in ("mlflow", "api-server", "scheduler", "dag-processor", "triggerer"):
        pid = stack.pid_of(service)
        assert pid is not None, f"{service} is not running"
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                conns = proc.net_connections(kind="inet")
                name = " ".join(proc.cmdline()[:3])
            except psutil.NoSuchProcess:
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN:
                    listening[(c.laddr.ip, c.laddr.port)] = f"{service}: {name}"
    assert ("127.0.0.1", stack.airflow_port) in listening and ("127.0.0.1", stack.mlflow_port) in listening
    exposed = {addr: who for addr, who in listening.items() if addr[0] not in LOOPBACK}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert not {port for _, port in listening} & {8793, 8794}, f"serve-logs is listening: {listening}"


def test_mlflow_refuses_requests_without_a_login(stack: Any) -> None:
    import base64

    url = f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/search?max_results=1"
    assert _status(url) == 401
    user, password = stack.mlflow_credentials()
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200


def test_connection_secret_is_encrypted_used_and_never_logged(
    stack: Any, demo_result: Any, alert_hook: Any, canary: str
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
    events = {r["event"] for r in alert_hook.events() if r["auth"] == f"Bearer {canary}"}
    assert {"promotion", "retrain_requested"} <= events, alert_hook.events()

    logs = [p for p in (stack.airflow_home / "logs").rglob("*") if p.is_file()]
    logs += [p for p in stack.log_dir.glob("*.log") if p.is_file()]
    assert any("dag_id=flightdeck_train" in str(p) for p in logs), "no task logs found"
    leaked = [str(p) for p in logs if canary.encode() in p.read_bytes()]
    assert not leaked, f"the connection's password appears in {leaked}"
