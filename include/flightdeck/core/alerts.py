"""Alerts: DAG failures, missed deadlines, drift-triggered retrains, promotions and rollbacks.

Every alert goes to the log and, by configuration only (``alerts`` in the YAML or
``FLIGHTDECK__ALERTS__...`` in the environment), to:

- a JSON-lines file (``alerts.file``; relative paths live under the lake's
  ``monitoring/alerts/``, on a remote lake each alert is one JSON document there): the ledger;
- a webhook (``alerts.webhook_url``, or the Airflow connection ``alerts.webhook_conn_id``
  whose host is the URL and whose password, if any, is sent as a bearer token), delivered by
  apprise (the library of Airflow's apprise provider): an ``http(s)://`` URL becomes apprise's
  ``json://``/``jsons://`` URL, which POSTs ``{"title", "message", "type", "event",
  "severity", ...}`` with the alert document as JSON in ``message``; any other apprise URL
  (``slack://``, ``mailto://``, ``ntfy://``, ...) is used as it is;
- the services of an Airflow apprise connection (``alerts.apprise_conn_id``, read by the
  provider's ``AppriseHook``);
- a Slack incoming webhook (``alerts.slack_conn_id``, the provider's ``SlackWebhookHook``);
- mail (``alerts.smtp``), sent by the SMTP provider's ``SmtpHook`` through the Airflow
  connection ``alerts.smtp.conn_id`` or a plain relay (``host``/``port``/``sender``).

Providers are imported inside the delivery functions: Spark jobs and the CLI import this
module without Airflow. A channel whose provider cannot be imported here is reported as
``unavailable: ...``, one that fails as ``failed: ...``; delivery never raises: an alert
that cannot be delivered is logged, and the task that raised it carries on (an unreachable
webhook must not fail a promotion).

Every alert is redacted (:mod:`flightdeck.core.redact`) before it leaves: no URL credentials,
tokens, webhook URLs or values of secret keys in its summary or details, whatever exception
text a caller put there; delivery errors are redacted too (they can name the webhook URL).
"""

from __future__ import annotations

import datetime as dt
import html
import importlib
import json
import logging
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flightdeck.core.config import Alerts, PipelineConfig
from flightdeck.core.lake import Lake, write_json
from flightdeck.core.redact import redact, redact_text, register

log = logging.getLogger(__name__)

DAG_FAILURE = "dag_failure"
RETRAIN_REQUESTED = "retrain_requested"
PROMOTION = "promotion"
ROLLBACK = "rollback"
DEADLINE_MISSED = "deadline_missed"
FEATURES_DEGRADED = "features_degraded"
EVENTS = (DAG_FAILURE, RETRAIN_REQUESTED, PROMOTION, ROLLBACK, DEADLINE_MISSED, FEATURES_DEGRADED)
_SEVERITY = {
    DAG_FAILURE: "error",
    RETRAIN_REQUESTED: "warning",
    PROMOTION: "info",
    ROLLBACK: "warning",
    DEADLINE_MISSED: "error",
    FEATURES_DEGRADED: "warning",
}


def build_alert(
    event: str, summary: str, details: Mapping[str, Any] | None = None, *, at: dt.datetime | None = None
) -> dict[str, Any]:
    """An alert document: event, severity, one-line summary (also as ``text``), details, time."""
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event!r}; expected one of {', '.join(EVENTS)}")
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    summary = redact_text(summary)
    return {
        "event": event,
        "severity": _SEVERITY[event],
        "summary": summary,
        "text": f"[flightdeck] {event}: {summary}",
        "details": redact(dict(details or {})),
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


# Apprise's notification types, by alert severity.
_NOTIFY_TYPE = {"error": "failure", "warning": "warning", "info": "info"}


class ChannelUnavailable(RuntimeError):
    """A channel's provider (or Airflow, or apprise) cannot be imported in this environment."""


def _import(module: str, name: str, channel: str) -> Any:
    """``module.name``, imported only now (core stays free of Airflow at import time).

    Raises:
        ChannelUnavailable: the module is not installed here or fails to import.
    """
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as err:  # ImportError, or a provider that is broken in this environment
        raise ChannelUnavailable(
            f"{channel} needs {module} (pip install the Airflow provider), which cannot be imported here: "
            f"{type(err).__name__}: {err}"
        ) from err


def _airflow_connection(conn_id: str, key: str = "alerts.webhook_conn_id") -> Any:
    """An Airflow connection by id (Airflow masks its password in task logs from then on).

    Raises:
        ChannelUnavailable: Airflow is not installed here.
        LookupError: Airflow has no such connection.
    """
    try:
        from airflow.sdk import BaseHook
    except ImportError as err:
        raise ChannelUnavailable(f"{key}={conn_id!r} needs Airflow, which is not installed here") from err
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as err:  # AirflowNotFoundException and friends
        raise LookupError(f"Airflow connection {conn_id!r} ({key}) not found: {err}") from err
    register(conn.password)  # masked in this process's logs and in Airflow's
    return conn


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
        register(url, conn.password)  # masked in this process's logs and in Airflow's
        return url, headers
    if cfg.webhook_url:
        register(cfg.webhook_url)
        return cfg.webhook_url, {}
    return None


def apprise_url(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    timeout_s: float = 5.0,
    payload: Mapping[str, str] | None = None,
) -> str:
    """The apprise URL that POSTs JSON to this ``http(s)://`` URL; any other URL is apprise's own.

    Apprise's JSON notifier (``json://`` plain, ``jsons://`` TLS) takes the URL's query as
    ``-name`` (passed on as a query parameter), extra headers as ``+Name`` and extra top-level
    payload fields as ``:name``; ``cto``/``rto`` are its connect and read timeouts.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return url
    params = [(f"-{k}", v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    params += [(f"+{k}", v) for k, v in (headers or {}).items()]
    params += [(f":{k}", v) for k, v in (payload or {}).items()]
    params += [("cto", f"{timeout_s:g}"), ("rto", f"{timeout_s:g}")]
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")
    scheme = "jsons" if parts.scheme.lower() == "https" else "json"
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path or "/", query, ""))


def _alert_json(alert: Mapping[str, Any]) -> str:
    return json.dumps(alert, indent=2, sort_keys=True, default=str)


def _apprise_send(alert: Mapping[str, Any], add_services: Callable[[Any], None]) -> str:
    """Notify the services ``add_services`` puts on an ``apprise.Apprise``; raises when any fails.

    Apprise only answers True/False (the provider's ``AppriseHook.notify`` drops even that), so
    its own warnings are captured to say why.
    """
    try:
        import apprise
    except ImportError as err:
        raise ChannelUnavailable("apprise (Airflow's apprise provider) is not installed here") from err
    notifier = apprise.Apprise()
    add_services(notifier)
    if len(notifier) == 0:
        raise ValueError("no apprise service configured")
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = notifier.notify(
            body=_alert_json(alert),
            title=str(alert["text"]),
            notify_type=apprise.NotifyType(_NOTIFY_TYPE.get(str(alert.get("severity")), "info")),
            body_format=apprise.NotifyFormat.TEXT,
        )
    if not ok:
        said = [line.split(" - ", 2)[-1] for line in captured.getvalue().splitlines() if line.strip()]
        raise RuntimeError("apprise could not deliver: " + ("; ".join(said) or "no reason given"))
    return f"sent to {len(notifier)} service(s)"


def _send_webhook(alert: Mapping[str, Any], cfg: Alerts) -> str:
    target = webhook_target(cfg)
    if target is None:
        return "disabled"
    url, headers = target
    # event and severity also top-level in the JSON body, so a receiver can route without parsing `message`
    payload = {"event": str(alert["event"]), "severity": str(alert["severity"])}
    service = apprise_url(url, headers, timeout_s=cfg.webhook_timeout_s, payload=payload)

    def add(notifier: Any) -> None:
        if not notifier.add(service):
            raise ValueError("the webhook URL (alerts.webhook_url or the connection's host) is not a URL apprise knows")

    return _apprise_send(alert, add)


def _send_apprise(alert: Mapping[str, Any], conn_id: str) -> str:
    hook_cls = _import("airflow.providers.apprise.hooks.apprise", "AppriseHook", "alerts.apprise_conn_id")
    conn = _airflow_connection(conn_id, "alerts.apprise_conn_id")
    hook = hook_cls(apprise_conn_id=conn_id)
    config = hook.get_config_from_conn(conn=conn)
    for entry in config if isinstance(config, list) else [config]:
        if isinstance(entry, Mapping):
            register(str(entry.get("path") or ""))  # apprise URLs carry their tokens
    return _apprise_send(alert, lambda notifier: hook.set_config_from_conn(conn=conn, apprise_obj=notifier))


def _slack_text(alert: Mapping[str, Any]) -> str:
    details = alert.get("details") or {}
    if not details:
        return str(alert["text"])
    return f"{alert['text']}\n```{json.dumps(details, indent=2, sort_keys=True, default=str)}```"


def _send_slack(alert: Mapping[str, Any], conn_id: str, timeout_s: float) -> str:
    hook_cls = _import("airflow.providers.slack.hooks.slack_webhook", "SlackWebhookHook", "alerts.slack_conn_id")
    _airflow_connection(conn_id, "alerts.slack_conn_id")  # a clear error, and its token registered
    hook = hook_cls(slack_webhook_conn_id=conn_id, timeout=max(1, math.ceil(timeout_s)))
    response = hook.send(text=_slack_text(alert))  # raises unless Slack answers 200
    return f"HTTP {response.status_code}"


def _send_mail(alert: Mapping[str, Any], cfg: Alerts) -> str:
    smtp = cfg.smtp
    assert smtp is not None
    hook_cls = _import("airflow.providers.smtp.hooks.smtp", "SmtpHook", "alerts.smtp")
    if smtp.conn_id:
        _airflow_connection(smtp.conn_id, "alerts.smtp.conn_id")
        hook = hook_cls(smtp_conn_id=smtp.conn_id)
    else:  # a plain relay from the YAML: an in-memory connection, no login, STARTTLS if asked
        connection_cls = _import("airflow.sdk", "Connection", "alerts.smtp")
        extra = {
            "disable_ssl": True,
            "disable_tls": not smtp.starttls,
            "timeout": max(1, math.ceil(cfg.webhook_timeout_s)),
            "retry_limit": 0,
        }
        relay = connection_cls(
            conn_id="flightdeck_alerts_smtp", conn_type="smtp", host=smtp.host, port=smtp.port, extra=json.dumps(extra)
        )

        class _RelayHook(hook_cls):  # type: ignore[misc,valid-type]
            def get_connection(self, conn_id: str) -> Any:
                return relay

        hook = _RelayHook(smtp_conn_id=relay.conn_id)
    with hook:
        hook.send_email_smtp(
            to=list(smtp.to),
            subject=str(alert["text"])[:200],
            html_content=f"<pre>{html.escape(_alert_json(alert))}</pre>",
            from_email=smtp.sender,
        )
    return f"sent to {len(smtp.to)} recipient(s)"


def deliver(alert: Mapping[str, Any], cfg: Alerts, lake: Lake | None = None) -> dict[str, str]:
    """Send one alert to every configured channel; returns what happened per channel.

    Each channel's outcome is what it did (``HTTP 200``, ``sent to 1 service(s)``, the file),
    ``failed: <why>`` or ``unavailable: <why>`` (its provider is not installed here); never raises.
    """
    level = logging.ERROR if alert.get("severity") == "error" else logging.WARNING
    log.log(level, "ALERT %s", alert["text"])
    outcome = {"log": "ok"}
    channels: list[tuple[str, Callable[[], object]]] = [("file", lambda: _write_file(alert, cfg, lake) or "disabled")]
    if cfg.webhook_url or cfg.webhook_conn_id:
        channels.append(("webhook", lambda: _send_webhook(alert, cfg)))
    if cfg.apprise_conn_id:
        apprise_conn = cfg.apprise_conn_id
        channels.append(("apprise", lambda: _send_apprise(alert, apprise_conn)))
    if cfg.slack_conn_id:
        slack_conn = cfg.slack_conn_id
        channels.append(("slack", lambda: _send_slack(alert, slack_conn, cfg.webhook_timeout_s)))
    if cfg.smtp:
        channels.append(("smtp", lambda: _send_mail(alert, cfg)))
    for name, send in channels:
        try:
            outcome[name] = str(send())
        except ChannelUnavailable as err:
            reason = redact_text(str(err))
            log.warning("alert %s not delivered to %s: channel unavailable: %s", alert["event"], name, reason)
            outcome[name] = f"unavailable: {reason}"
        except Exception as err:  # delivery must never fail the caller
            reason = redact_text(f"{err}" or type(err).__name__)
            log.warning("alert %s not delivered to %s: %s", alert["event"], name, reason)
            outcome[name] = f"failed: {reason}"
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
