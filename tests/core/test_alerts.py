"""Alerts: JSON lines in the lake, a webhook (a real local HTTP server, through apprise), the Airflow notifier.

Every provider channel against its own receiver: tests/core/test_alert_channels.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flightdeck.core import alerts
from flightdeck.core.config import Alerts, load_config
from flightdeck.core.lake import Lake


@pytest.fixture()
def webhook() -> Iterator[dict[str, Any]]:
    """A tiny HTTP server on 127.0.0.1 that records the POSTed JSON bodies."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(
                {
                    "body": json.loads(self.rfile.read(length)),
                    "type": self.headers["Content-Type"],
                    "auth": self.headers.get("Authorization"),
                }
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/hook", "received": received}
    server.shutdown()
    server.server_close()


def test_alert_goes_to_jsonl_and_webhook(tmp_path: Path, webhook: dict[str, Any]) -> None:
    lake = Lake(str(tmp_path / "lake"))
    cfg = Alerts(webhook_url=webhook["url"])
    alert = alerts.build_alert(alerts.PROMOTION, "m champion v1 -> v2", {"version": "2"})
    outcome = alerts.deliver(alert, cfg, lake)
    assert outcome == {
        "log": "ok",
        "file": str(tmp_path / "lake/monitoring/alerts/alerts.jsonl"),
        "webhook": "sent to 1 service(s)",
    }
    alerts.deliver(alerts.build_alert(alerts.ROLLBACK, "back to v1"), cfg, lake)
    lines = (tmp_path / "lake/monitoring/alerts/alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["promotion", "rollback"]
    (first,) = [r for r in webhook["received"] if r["body"]["event"] == "promotion"]
    assert first["type"] == "application/json"
    # apprise's JSON envelope: the text as title, the alert document as JSON in message
    assert first["body"]["title"] == "[flightdeck] promotion: m champion v1 -> v2"
    sent = json.loads(first["body"]["message"])
    assert sent["details"] == {"version": "2"} and sent["severity"] == "info" == first["body"]["severity"]


def test_unreachable_webhook_never_fails_the_caller(tmp_path: Path) -> None:
    cfg = Alerts(file=str(tmp_path / "a.jsonl"), webhook_url="http://127.0.0.1:9/nothing", webhook_timeout_s=1)
    outcome = alerts.deliver(alerts.build_alert(alerts.DAG_FAILURE, "x failed"), cfg, None)
    assert outcome["webhook"].startswith("failed:")
    assert outcome["file"] == str(tmp_path / "a.jsonl")  # absolute paths are used as they are


def test_webhook_from_the_environment_without_code_changes(
    lake_root: Path, webhook: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIGHTDECK__ALERTS__WEBHOOK_URL", webhook["url"])
    result = alerts.notify(alerts.RETRAIN_REQUESTED, "retrain requested for 2013-07-01", {"partition": "2013-07-01"})
    assert result["delivery"]["webhook"] == "sent to 1 service(s)"
    assert json.loads(webhook["received"][0]["body"]["message"])["details"]["partition"] == "2013-07-01"
    assert (lake_root / "monitoring/alerts/alerts.jsonl").is_file()


def test_failure_notifier_reads_the_airflow_context(lake_root: Path) -> None:
    from flightdeck.ops.notifiers import FlightdeckNotifier, failure_details

    ti = SimpleNamespace(dag_id="flightdeck_score", task_id="score", run_id="r1", try_number=2, log_url="http://x/log")
    context = {"ti": ti, "dag_run": SimpleNamespace(partition_key="2013-07-01"), "exception": ValueError("boom")}
    summary, details = failure_details(context)
    assert summary == "flightdeck_score.score failed for partition 2013-07-01 (run r1): ValueError: boom"
    assert details["log_url"] == "http://x/log"
    FlightdeckNotifier().notify(context)
    (line,) = (lake_root / "monitoring/alerts/alerts.jsonl").read_text().splitlines()
    assert json.loads(line)["event"] == "dag_failure" and json.loads(line)["severity"] == "error"


def test_every_dag_task_alerts_on_failure() -> None:
    from flightdeck.ops.dagkit import DEFAULT_ARGS
    from flightdeck.ops.notifiers import FlightdeckNotifier

    assert isinstance(DEFAULT_ARGS["on_failure_callback"], FlightdeckNotifier)
    assert load_config().alerts.webhook_url is None  # nothing is sent anywhere unless configured


def test_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert event"):
        alerts.build_alert("promoted", "x")


def test_webhook_from_an_airflow_connection_sends_its_password_as_a_bearer_token(
    tmp_path: Path, webhook: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "http", "host": webhook["url"], "password": "hook-token-42"}
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTDECK_ALERTS", json.dumps(conn))
    cfg = Alerts(webhook_conn_id="flightdeck_alerts", webhook_url="http://127.0.0.1:9/not-this-one")
    assert alerts.webhook_target(cfg) == (webhook["url"], {"Authorization": "Bearer hook-token-42"})
    outcome = alerts.deliver(alerts.build_alert(alerts.PROMOTION, "v1 -> v2"), cfg, Lake(str(tmp_path)))
    assert outcome["webhook"] == "sent to 1 service(s)"
    assert [r["auth"] for r in webhook["received"]] == ["Bearer hook-token-42"]
    assert webhook["received"][0]["body"]["event"] == "promotion"  # routable by event (the e2e receiver)
    # A host name is completed with the connection's schema, port and endpoint.
    host = {"conn_type": "http", "host": "hooks.example", "schema": "http", "port": 8081, "extra": {"endpoint": "/a"}}
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTDECK_ALERTS", json.dumps(host))
    assert alerts.webhook_target(cfg) == ("http://hooks.example:8081/a", {})


def test_missing_webhook_connection_is_reported_not_raised(tmp_path: Path) -> None:
    cfg = Alerts(webhook_conn_id="no_such_connection_here")
    outcome = alerts.deliver(alerts.build_alert(alerts.ROLLBACK, "back"), cfg, Lake(str(tmp_path)))
    assert outcome["webhook"].startswith("failed: Airflow connection 'no_such_connection_here'")


def test_webhook_url_becomes_an_apprise_json_url() -> None:
    url = "https://user:pw-123456@hooks.example/a/b?x=1"
    assert alerts.apprise_url(url, {"Authorization": "Bearer t"}, timeout_s=2, payload={"event": "promotion"}) == (
        "jsons://user:pw-123456@hooks.example/a/b?-x=1&%2BAuthorization=Bearer%20t&%3Aevent=promotion&cto=2&rto=2"
    )
    assert alerts.apprise_url("http://h:8080") == "json://h:8080/?cto=5&rto=5"
    assert (
        alerts.apprise_url("ntfy://ntfy.example/topic") == "ntfy://ntfy.example/topic"
    )  # apprise's own URLs as they are


def test_smtp_needs_a_connection_or_a_relay() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"alerts\.smtp\.conn_id"):
        Alerts.model_validate({"smtp": {"host": "mail.example", "to": ["ops@example.org"]}})
    assert Alerts.model_validate({"smtp": {"conn_id": "smtp_default", "to": ["ops@example.org"]}}).smtp is not None
