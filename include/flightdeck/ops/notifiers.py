"""Airflow notifiers over :mod:`flightdeck.core.alerts` (``on_failure_callback`` and friends).

Imports only the Airflow SDK at module level, so ``flightdeck.ops.dagkit`` can put a notifier
in every DAG's ``default_args`` without slowing DAG parsing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

# airflow.sdk.BaseNotifier, imported from its module: the lazy `airflow.sdk` attribute drags in the
# task runner at DAG-parse time
from airflow.sdk.bases.notifier import BaseNotifier

from flightdeck.core import alerts
from flightdeck.core.redact import redact_text

log = logging.getLogger(__name__)


def failure_details(context: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A one-line summary and the details of a failed task from an Airflow context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or "?"
    task_id = getattr(ti, "task_id", None)
    run_id = getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None)
    partition = getattr(dag_run, "partition_key", None)
    exception = context.get("exception")
    details = {
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "partition": partition,
        "try_number": getattr(ti, "try_number", None),
        "log_url": getattr(ti, "log_url", None),
        # Redacted before truncation, so a cut cannot leave half a secret unrecognised.
        "exception": None if exception is None else redact_text(f"{type(exception).__name__}: {exception}")[:2000],
    }
    where = f"{dag_id}.{task_id}" if task_id else dag_id
    summary = f"{where} failed" + (f" for partition {partition}" if partition else "") + f" (run {run_id})"
    if details["exception"]:
        summary += f": {details['exception'][:300]}"
    return summary, details


class FlightdeckNotifier(BaseNotifier):
    """Sends a flightdeck alert for a callback: to the log and the JSON-lines ledger, then through
    the notifier providers configured in ``alerts`` (apprise webhook/connection, Slack, SMTP).

    ``FlightdeckNotifier()`` reports a failure (the default, for ``on_failure_callback``);
    other events take a ``summary`` template rendered with the Airflow context.
    """

    template_fields = ("summary",)

    def __init__(self, event: str = alerts.DAG_FAILURE, summary: str = "") -> None:
        super().__init__()
        if event not in alerts.EVENTS:
            raise ValueError(f"unknown alert event {event!r}; expected one of {', '.join(alerts.EVENTS)}")
        self.event = event
        self.summary = summary

    def notify(self, context: Any) -> None:
        summary, details = failure_details(context)
        if self.event != alerts.DAG_FAILURE and self.summary:
            summary = self.summary
        try:
            alerts.notify(self.event, summary, details)
        except Exception as err:  # a broken alert channel must not mask the task's own outcome
            log.warning("could not send %s alert: %s", self.event, redact_text(str(err)))


async def deadline_missed(context: Mapping[str, Any] | None = None, hours: float = 0.0) -> None:
    """Airflow deadline-alert callback (runs in the triggerer): a run is late; send the alert.

    ``context`` is what Airflow passes to deadline callbacks: the DAG run and the deadline.
    """
    import asyncio

    run = dict((context or {}).get("dag_run") or {})
    deadline = dict((context or {}).get("deadline") or {})
    dag_id, run_id = run.get("dag_id", "?"), run.get("dag_run_id") or run.get("run_id")
    partition = run.get("partition_key")
    summary = (
        f"{dag_id} run {run_id}"
        + (f" for partition {partition}" if partition else "")
        + f" has not finished {hours:g} h after it was queued (deadline {deadline.get('deadline_time')})"
    )
    details = {"dag_id": dag_id, "run_id": run_id, "partition": partition, "state": run.get("state"), **deadline}
    try:
        await asyncio.to_thread(alerts.notify, alerts.DEADLINE_MISSED, summary, details)
    except Exception as err:  # a broken alert channel must not break the triggerer
        log.warning("could not send %s alert: %s", alerts.DEADLINE_MISSED, redact_text(str(err)))


def on_failure() -> FlightdeckNotifier:
    """The failure notifier every flightdeck DAG uses (``dagkit.DEFAULT_ARGS``)."""
    return FlightdeckNotifier(alerts.DAG_FAILURE)
