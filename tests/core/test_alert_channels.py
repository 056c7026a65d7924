"""Alert channels through Airflow's notifier providers, each against a real local receiver.

apprise (a JSON webhook, plain URL and apprise connection), Slack (an incoming-webhook
endpoint), SMTP (a minimal SMTP server speaking the protocol over a socket); a dead receiver
on every channel is reported, never raised. Connections come from ``AIRFLOW_CONN_<ID>``.
"""

from __future__ import annotations

import email
import html
import json
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from testkit import HttpReceiver

from flightdeck.core import alerts
from flightdeck.core.config import Alerts, Smtp

SECRET_PASSWORD = "hunter2-never-sent"
SECRET_TOKEN = "tok-abc-987654"


def _secret_alert() -> dict[str, Any]:
    """A failure alert whose caller put secrets in the summary and the details."""
    return alerts.build_alert(
        alerts.DAG_FAILURE,
        f"flightdeck_train.train failed: POST https://api.example.com/x?access_token={SECRET_TOKEN} refused",
        {"dag_id": "flightdeck_train", "password": SECRET_PASSWORD},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(path="/")
    yield receiver
    receiver.close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def _reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self._reply("220 127.0.0.1 test ESMTP")
        sender, recipients = "", []
        while line := self.rfile.readline():
            verb = line.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._reply("250 127.0.0.1")
            elif verb == "MAIL":
                sender, recipients = line.decode().split(":", 1)[1].strip().strip("<>"), []
                self._reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                self._reply("250 OK")
            elif verb == "DATA":
                self._reply("354 end with <CRLF>.<CRLF>")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                mails: list[dict[str, Any]] = self.server.mails  # type: ignore[attr-defined]
                mails.append({"from": sender, "to": recipients, "message": email.message_from_bytes(b"".join(data))})
                self._reply("250 OK queued")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                self._reply("250 OK")
            else:
                self._reply("502 not implemented")


@pytest.fixture()
def smtp_server() -> Iterator[dict[str, Any]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.daemon_threads = True
    server.mails = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"port": int(server.server_address[1]), "mails": server.mails}  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _text_of(message: Message) -> str:
    parts = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
    return html.unescape("".join(p.decode() for p in parts if isinstance(p, bytes)))  # the provider sends HTML


def test_apprise_json_webhook_gets_the_alert_and_no_secret(
    http: HttpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain URL (alerts.webhook_url) and an apprise connection (alerts.apprise_conn_id).
    url = f"http://127.0.0.1:{http.port}/hook/T0HOOKSECRET/B0HOOKSECRET"
    conn = {"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{http.port}/apprise"}}}
    monkeypatch.setenv("AIRFLOW_CONN_FD_APPRISE", json.dumps(conn))
    cfg = Alerts(file=str(tmp_path / "alerts.jsonl"), webhook_url=url, apprise_conn_id="fd_apprise")
    outcome = alerts.deliver(_secret_alert(), cfg)
    assert outcome["webhook"] == "sent to 1 service(s)" and outcome["apprise"] == "sent to 1 service(s)"
    assert sorted(r["path"] for r in http.received) == ["/apprise", "/hook/T0HOOKSECRET/B0HOOKSECRET"]
    for request in http.received:
        assert request["headers"]["Content-Type"] == "application/json"
        body = json.loads(request["body"])
        assert body["title"].startswith("[flightdeck] dag_failure: flightdeck_train.train failed")
        assert body["type"] == "failure"
        sent = json.loads(body["message"])  # the alert document itself
        assert sent["event"] == "dag_failure" and sent["details"]["dag_id"] == "flightdeck_train"
        for secret in (SECRET_PASSWORD, SECRET_TOKEN, "T0HOOKSECRET"):
            assert secret not in request["body"]
    (plain,) = [json.loads(r["body"]) for r in http.received if r["path"].startswith("/hook")]
    assert (plain["event"], plain["severity"]) == ("dag_failure", "error")  # routable without parsing message
    ledger = json.loads((tmp_path / "alerts.jsonl").read_text())
    assert ledger["event"] == "dag_failure" and SECRET_PASSWORD not in json.dumps(ledger)


def test_slack_incoming_webhook_gets_the_text(http: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Slack webhook connection: host is the endpoint, password the webhook token (its path).
    conn = {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{http.port}", "password": "T0SL/B0SL/XySlackTok1"}
    monkeypatch.setenv("AIRFLOW_CONN_FD_SLACK", json.dumps(conn))
    alert = alerts.build_alert(alerts.PROMOTION, "flights champion v3 -> v4", {"version": "4"})
    outcome = alerts.deliver(alert, Alerts(file=None, slack_conn_id="fd_slack"))
    assert outcome == {"log": "ok", "file": "disabled", "slack": "HTTP 200"}
    (request,) = http.received
    assert request["path"] == "/T0SL/B0SL/XySlackTok1"
    text = json.loads(request["body"])["text"]
    assert text.startswith("[flightdeck] promotion: flights champion v3 -> v4") and '"version": "4"' in text


def test_mail_through_the_smtp_provider(smtp_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    port = smtp_server["port"]
    extra = {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.org", "retry_limit": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_FD_SMTP", json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra})
    )
    by_connection = Alerts(file=None, smtp=Smtp(conn_id="fd_smtp", to=["ops@example.org", "ml@example.org"]))
    relay = Alerts(file=None, smtp=Smtp(host="127.0.0.1", port=port, sender="fd@example.org", to=["ops@example.org"]))
    assert alerts.deliver(_secret_alert(), by_connection)["smtp"] == "sent to 2 recipient(s)"
    assert alerts.deliver(alerts.build_alert(alerts.ROLLBACK, "back to v3"), relay)["smtp"] == "sent to 1 recipient(s)"
    first, second = smtp_server["mails"]
    assert (first["from"], first["to"]) == ("airflow@example.org", ["ops@example.org", "ml@example.org"])
    assert first["message"]["Subject"].startswith("[flightdeck] dag_failure: flightdeck_train.train failed")
    body = _text_of(first["message"])
    assert '"event": "dag_failure"' in body and SECRET_PASSWORD not in body and SECRET_TOKEN not in body
    assert (second["from"], second["to"]) == ("fd@example.org", ["ops@example.org"])
    assert second["message"]["Subject"] == "[flightdeck] rollback: back to v3"


def test_dead_receivers_are_reported_never_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = _free_port()  # nothing listens there
    monkeypatch.setenv(
        "AIRFLOW_CONN_FD_APPRISE",
        json.dumps({"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{dead}/a"}}}),
    )
    slack = {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{dead}", "password": "T0/B0/DeadSlackTok"}
    monkeypatch.setenv("AIRFLOW_CONN_FD_SLACK", json.dumps(slack))
    cfg = Alerts(
        file=str(tmp_path / "alerts.jsonl"),
        webhook_url=f"http://127.0.0.1:{dead}/hook/T0DEADSECRET",
        webhook_timeout_s=1,
        apprise_conn_id="fd_apprise",
        slack_conn_id="fd_slack",
        smtp=Smtp(host="127.0.0.1", port=dead, sender="fd@example.org", to=["ops@example.org"]),
    )
    outcome = alerts.deliver(alerts.build_alert(alerts.DAG_FAILURE, "x failed"), cfg)
    for channel in ("webhook", "apprise", "slack", "smtp"):
        assert outcome[channel].startswith("failed: "), outcome
    assert "T0DEADSECRET" not in json.dumps(outcome) and "DeadSlackTok" not in json.dumps(outcome)
    assert json.loads((tmp_path / "alerts.jsonl").read_text())["event"] == "dag_failure"  # the ledger still has it


def test_a_provider_that_cannot_be_imported_leaves_the_channel_unavailable(
    http: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "airflow.providers.slack.hooks.slack_webhook", None)  # as if not installed
    monkeypatch.setenv("AIRFLOW_CONN_FD_SLACK", json.dumps({"conn_type": "slackwebhook", "password": "T/B/C"}))
    cfg = Alerts(file=None, slack_conn_id="fd_slack", webhook_url=f"http://127.0.0.1:{http.port}/h")
    outcome = alerts.deliver(alerts.build_alert(alerts.PROMOTION, "v1 -> v2"), cfg)
    assert outcome["slack"].startswith("unavailable: alerts.slack_conn_id needs airflow.providers.slack")
    assert outcome["webhook"] == "sent to 1 service(s)" and len(http.received) == 1  # the others still go


def test_airflow_callbacks_reach_the_apprise_connection(
    http: HttpReceiver, lake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAGs' notifier and the deadline callback deliver through the provider, config from the environment."""
    import asyncio
    from types import SimpleNamespace

    from flightdeck.ops.notifiers import FlightdeckNotifier, deadline_missed

    conn = {"conn_type": "apprise", "extra": {"config": [{"path": f"json://127.0.0.1:{http.port}/ops"}]}}
    monkeypatch.setenv("AIRFLOW_CONN_FD_OPS", json.dumps(conn))
    monkeypatch.setenv("FLIGHTDECK__ALERTS__APPRISE_CONN_ID", "fd_ops")
    ti = SimpleNamespace(dag_id="flightdeck_score", task_id="score", run_id="r7", try_number=1, log_url=None)
    FlightdeckNotifier().notify({"ti": ti, "exception": ValueError(f"password={SECRET_PASSWORD}")})
    run = {"dag_id": "flightdeck_score", "run_id": "r8", "partition_key": "2013-07-02"}
    asyncio.run(deadline_missed({"dag_run": run, "deadline": {"deadline_time": "2013-07-02T06:00:00Z"}}, hours=4))
    events = [json.loads(json.loads(r["body"])["message"])["event"] for r in http.received]
    assert events == ["dag_failure", "deadline_missed"]
    assert (
        "flightdeck_score.score failed" in http.received[0]["body"] and SECRET_PASSWORD not in http.received[0]["body"]
    )
    ledger = (lake_root / "monitoring/alerts/alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in ledger] == ["dag_failure", "deadline_missed"]
