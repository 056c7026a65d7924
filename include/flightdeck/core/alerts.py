"""Alerts: DAG failures, missed deadlines, drift-triggered retrains, promotions and rollbacks.

Every alert goes to the log and, by configuration only (``alerts`` in the YAML or
``FLIGHTDECK__ALERTS__...`` in the environment), to:

- a JSON-lines file (``alerts.file``; relative paths live under the lake's
  ``monitoring/alerts/``, on a remote lake each alert is one JSON document there);
- a webhook (``alerts.webhook_url``, or the Airflow connection ``alerts.webhook_conn_id``
  whose host is the URL and whose password, if any, is sent as a bearer token): the alert
  as a JSON ``POST`` body (Slack-style incoming webhooks accept the ``text`` field);
- SMTP (``alerts.smtp``): a plain-text mail.

Delivery never raises: an alert that cannot be delivered is logged, and the task that
raised it carries on (an unreachable webhook must not fail a promotion).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flightdeck.core.config import Alerts, PipelineConfig
from flightdeck.core.lake import Lake, write_json

log = logging.getLogger(__name__)

DAG_FAILURE = "dag_failure"
RETRAIN_REQUESTED = "retrain_requested"
PROMOTION = "promotion"
ROLLBACK = "rollback"
DEADLINE_MISSED = "deadline_missed"
EVENTS = (DAG_FAILURE, RETRAIN_REQUESTED, PROMOTION, ROLLBACK, DEADLINE_MISSED)
_SEVERITY = {
    DAG_FAILURE: "error",
    RETRAIN_REQUESTED: "warning",
    PROMOTION: "info",
    ROLLBACK: "warning",
    DEADLINE_MISSED: "error",
}


def build_alert(
    event: str, summary: str, details: Mapping[str, Any] | None = None, *, at: dt.datetime | None = None
) -> dict[str, Any]:
    """An alert document: event, severity, one-line summary (also as ``text``), details, time."""
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event!r}; expected one of {', '.join(EVENTS)}")
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return {
        "event": event,
        "severity": _SEVERITY[event],
        "summary": summary,
        "text": f"[flightdeck] {event}: {summary}",
        "details": dict(details or {}),
        "at": when.isoformat(),
    }


def alerts_file(cfg: Alerts, lake: Lake | None) -> str | None:
    """Where the JSON-lines file goes (None: disabled); absolute paths are used as they are."""
    if not cfg.file:
        return None
    if Path(cfg.file).is_absolute() or lake is None:
        return cfg.file
    return lake.alerts_file(cfg.file)


def _write_file(alert: Mapping[str, Any], cfg: Alerts, lake: Lake | None) -> str | None:
    target = alerts_file(cfg, lake)
    if target is None:
        return None
    if re.match(r"^s3a?://", target):  # objects cannot be appended to: one document per alert
        stamp = str(alert["at"]).replace(":", "").replace("+0000", "Z")
        doc = f"{target.rsplit('/', 1)[0]}/{stamp}-{alert['event']}.json"
        write_json(doc, alert)
        return doc
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:  # one short line per write: appends do not interleave
        fh.write(json.dumps(alert, sort_keys=True, default=str) + "\n")
    return str(path)


def _airflow_connection(conn_id: str) -> Any:
    """An Airflow connection by id (Airflow masks its password in task logs from then on).

    Raises:
        LookupError: Airflow is not installed here or has no such connection.
    """
    try:
        from airflow.sdk import BaseHook
    except ImportError as err:
        raise LookupError(f"alerts.webhook_conn_id={conn_id!r} needs Airflow, which is not installed here") from err
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as err:  # AirflowNotFoundException and friends
        raise LookupError(f"Airflow connection {conn_id!r} (alerts.webhook_conn_id) not found: {err}") from err


def webhook_target(cfg: Alerts) -> tuple[str, dict[str, str]] | None:
    """(URL, extra headers) of the webhook, or None when none is configured.

    A connection (``alerts.webhook_conn_id``) wins over ``alerts.webhook_url``: its host is
    the URL (``https://...``, or a host name completed with its schema, port and the
    ``endpoint`` extra) and its password becomes ``Authorization: Bearer <password>``.
    """
    if cfg.webhook_conn_id:
        conn = _airflow_connection(cfg.webhook_conn_id)
        host = str(conn.host or "")
        if "://" in host:
            url = host
        else:
            scheme = conn.schema or "https"
            port = f":{conn.port}" if conn.port else ""
            endpoint = str((conn.extra_dejson or {}).get("endpoint", "")).lstrip("/")
            url = f"{scheme}://{host}{port}/{endpoint}"
        headers = {"Authorization": f"Bearer {conn.password}"} if conn.password else {}
        return url, headers
    if cfg.webhook_url:
        return cfg.webhook_url, {}
    return None


def _post_webhook(alert: Mapping[str, Any], target: tuple[str, dict[str, str]], timeout: float) -> int:
    import urllib.request

    url, extra_headers = target
    body = json.dumps(alert, sort_keys=True, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", **extra_headers}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


def _send_mail(alert: Mapping[str, Any], cfg: Alerts) -> str:
    import smtplib
    from email.message import EmailMessage

    smtp = cfg.smtp
    assert smtp is not None
    msg = EmailMessage()
    msg["Subject"] = alert["text"][:200]
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(smtp.to)
    msg.set_content(json.dumps(alert, indent=2, sort_keys=True, default=str))
    with smtplib.SMTP(smtp.host, smtp.port, timeout=cfg.webhook_timeout_s) as client:
        if smtp.starttls:
            client.starttls()
        client.send_message(msg)
    return f"sent to {len(smtp.to)} recipient(s)"


def deliver(alert: Mapping[str, Any], cfg: Alerts, lake: Lake | None = None) -> dict[str, str]:
    """Send one alert to every configured channel; returns what happened per channel."""
    level = logging.ERROR if alert.get("severity") == "error" else logging.WARNING
    log.log(level, "ALERT %s", alert["text"])
    outcome = {"log": "ok"}
    channels: list[tuple[str, Any]] = [("file", lambda: _write_file(alert, cfg, lake) or "disabled")]
    if cfg.webhook_url or cfg.webhook_conn_id:

        def post() -> str:
            target = webhook_target(cfg)
            return f"HTTP {_post_webhook(alert, target, cfg.webhook_timeout_s)}" if target else "disabled"

        channels.append(("webhook", post))
    if cfg.smtp:
        channels.append(("smtp", lambda: _send_mail(alert, cfg)))
    for name, send in channels:
        try:
            outcome[name] = str(send())
        except Exception as err:  # delivery must never fail the caller
            log.warning("alert %s not delivered to %s: %s", alert["event"], name, err)
            outcome[name] = f"failed: {err}"
    return outcome


def notify(
    event: str,
    summary: str,
    details: Mapping[str, Any] | None = None,
    *,
    cfg: PipelineConfig | None = None,
) -> dict[str, Any]:
    """Build and deliver an alert with the configuration in force; returns the alert and outcome."""
    if cfg is None:
        from flightdeck.core.config import load_config

        cfg = load_config()
    alert = build_alert(event, summary, details)
    try:
        lake: Lake | None = Lake(cfg.lake.root)
    except Exception:  # an unusable lake root still leaves the log and the webhook
        lake = None
    return {**alert, "delivery": deliver(alert, cfg.alerts, lake)}
