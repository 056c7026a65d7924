"""Secrets out of alerts, logs and artifacts: one redaction shared by every plane.

:func:`redact` masks the values of sensitive keys (``password``, ``token``, ``webhook_url``,
...) in documents and, in free text such as an exception message, URL credentials
(``scheme://user:***@host``), webhook URL paths, bearer/basic tokens, ``key=value`` pairs with
a sensitive key, and every value registered with :func:`register` or held by a sensitive
environment variable (``MLFLOW_TRACKING_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``, ...).

Inside an Airflow process the text also goes through Airflow's own secrets masker, which
knows every connection password and variable the task fetched (the webhook connection's
bearer token, for one), and :func:`register` adds values to it, so task logs mask them too.
Airflow is never imported here when it is not already loaded: Spark jobs stay import-light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

MASK = "***"
# Shorter values are not masked as text (they would blank out ordinary words); Airflow does the same.
MIN_SECRET_LENGTH = 6

# Key names whose values are secrets (matched as substrings of the lower-cased key).
_SENSITIVE_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "fernet",
    "authorization",
    "credential",
    "webhook_url",
    "connection_string",
    "dsn",
)
_SENSITIVE_EXACT = frozenset({"key", "auth", "bearer", "cookie", "webhook"})

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/\s:@]+):(?P<pw>[^/\s@]+)@")
# A webhook URL's path is its secret (Slack, Teams, Discord): any URL with "hook" in it loses its path.
_URL = re.compile(r"(?P<base>\bhttps?://[^/\s'\"<>]+)(?P<path>/[^\s'\"<>]*)", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"\b(?P<kind>Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/=\-]{6,})")
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w.\-]*(?:password|passwd|secret|token|api_?key|access_key|private_key|signature)[\w.\-]*)"
    r"(?P<sep>[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s&,;\"'}\])]+)",
    re.IGNORECASE,
)

_registered: set[str] = set()


def is_sensitive_key(name: object) -> bool:
    """Whether a field or key of this name holds a secret (``smtp_password``, ``webhook_url``, ...)."""
    key = str(name).lower()
    return key in _SENSITIVE_EXACT or any(part in key for part in _SENSITIVE_PARTS)


def register(*values: str | None) -> None:
    """Mask these values wherever they appear from now on (and in Airflow's task logs, inside Airflow)."""
    fresh = [v for v in values if v and len(v) >= MIN_SECRET_LENGTH and v not in _registered]
    if not fresh:
        return
    _registered.update(fresh)
    masker = _airflow_module()
    if masker is None:
        return
    mask_secret = masker.mask_secret
    with contextlib.suppress(Exception):  # in a task, this one also tells the supervisor (the task log)
        from airflow.sdk.log import mask_secret
    for value in fresh:
        try:
            mask_secret(value)
        except Exception as err:  # Airflow's masker is a help, never a requirement
            log.debug("Airflow's secrets masker refused a value: %s", err)


def _env_secrets(environ: Mapping[str, str]) -> list[str]:
    return [v for k, v in environ.items() if is_sensitive_key(k) and len(v) >= MIN_SECRET_LENGTH]


def _airflow_module() -> Any:
    """Airflow's secrets masker module when Airflow is already loaded in this process, else None."""
    if "airflow" not in sys.modules:
        return None
    try:
        from airflow.sdk._shared import secrets_masker
    except Exception:  # an Airflow without the Task SDK's masker: our own patterns still apply
        return None
    return secrets_masker


def redact_text(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret this module can recognise replaced by ``***``."""
    if not text:
        return text
    values = sorted({*_registered, *_env_secrets(os.environ), *(v for v in extra if v)}, key=len, reverse=True)
    for value in values:
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _URL.sub(lambda m: f"{m['base']}/{MASK}" if "hook" in m[0].lower() else m[0], text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['kind']} {MASK}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    masker = _airflow_module()
    if masker is not None:
        try:
            masked = masker.redact(text)
            if isinstance(masked, str):
                text = masked
        except Exception as err:  # never let redaction itself fail an alert
            log.debug("Airflow's secrets masker failed: %s", err)
    return text


def redact(value: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of ``value`` (a document: mappings, lists, strings, scalars) with its secrets masked.

    The value of a sensitive key is replaced by ``***`` whole (``None`` and empty stay as they
    are, so "not configured" still reads as such); strings anywhere go through :func:`redact_text`.
    """
    extra = tuple(extra)
    if isinstance(value, str):
        return redact_text(value, extra)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if is_sensitive_key(key) and item not in (None, "", {}, []) and not isinstance(item, bool):
                out[key] = MASK
            else:
                out[key] = redact(item, extra)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item, extra) for item in value]
    return value
