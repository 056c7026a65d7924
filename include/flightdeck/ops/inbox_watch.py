"""Watching the landing inbox from the triggerer: a day's files complete, late and re-delivered files.

Both triggers run in the triggerer's event loop (no worker slot, no process per look) and look
at the inbox every ``arrival.watch_seconds``, in a thread so a slow object store never blocks
the loop:

- :class:`DayFilesTrigger` is what the ingest DAG's ``wait_for_files`` sensor defers to: it
  fires once the day's files are complete under ``arrival``
  (:func:`flightdeck.data.landing.day_status`), so a day is picked up seconds after its last
  file lands instead of at the next poke of a rescheduled sensor.
- :class:`InboxTrigger` looks for days that were ingested already and have a new file since (a
  late source or a re-delivery, see :func:`flightdeck.data.landing.redelivered_days`) and fires
  once per new set of files. An :class:`~airflow.sdk.AssetWatcher` turns each event into an
  event of the ``landing_inbox`` asset, which schedules ``flightdeck_inbox``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


def pending_files(config: str | None) -> dict[str, list[str]]:
    """Late or re-delivered inbox files by day: {day: [fingerprint of each new file]}."""
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.data import landing

    cfg = load_config(config)
    lake = Lake(cfg.lake.root)
    days = set(landing.redelivered_days(cfg, lake))
    out: dict[str, list[str]] = {}
    for f in landing.new_files(cfg, lake):
        if f.date in days:
            out.setdefault(f.date.isoformat(), []).append(f"{f.source}:{f.file.fingerprint}")
    return {day: sorted(fps) for day, fps in sorted(out.items())}


def day_files(partition: str, config: str | None) -> dict[str, Any]:
    """The day's completeness under ``arrival`` (:meth:`DayStatus.to_dict`), logged like a poke."""
    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.data import landing

    cfg = load_config(config)
    status = landing.day_status(cfg, Lake(cfg.lake.root), partition)
    return status.to_dict()


class DayFilesTrigger(BaseTrigger):
    """Fires once a day's landing files are complete (``{"status": ...}``), or on a contract error.

    A lake that cannot be listed is logged and looked at again; a day the contract refuses
    (outside the calendar) ends the wait with ``{"error": message}`` for the sensor to fail on.
    """

    def __init__(self, partition: str, poll_seconds: float = 5.0, config: str | None = None) -> None:
        super().__init__()
        self.partition = partition
        self.poll_seconds = poll_seconds
        self.config = config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"partition": self.partition, "poll_seconds": self.poll_seconds, "config": self.config},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from flightdeck.core.errors import FlightdeckError

        last_why = None
        while True:
            try:
                status = await asyncio.to_thread(day_files, self.partition, self.config)
            except FlightdeckError as exc:
                yield TriggerEvent({"error": str(exc)})
                return
            except Exception:  # a lake hiccup must not end the wait: log it, look again next time
                log.exception("%s: could not look at the inbox; again in %ss", self.partition, self.poll_seconds)
                status = None
            if status is not None:
                if status["complete"]:
                    log.info("%s: %s (present %s)", self.partition, status["why"], status["present"])
                    yield TriggerEvent({"status": status})
                    return
                if status["why"] != last_why:
                    log.info("%s: %s (present %s)", self.partition, status["why"], status["present"])
                    last_why = status["why"]
            await asyncio.sleep(self.poll_seconds)


class InboxTrigger(BaseEventTrigger):
    """Fires when days already ingested have new files in the landing inbox (once per new set)."""

    def __init__(self, poll_seconds: float = 30.0, config: str | None = None) -> None:
        super().__init__()
        self.poll_seconds = poll_seconds
        self.config = config

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"poll_seconds": self.poll_seconds, "config": self.config},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        fired: dict[str, list[str]] = {}
        while True:
            try:
                pending = await asyncio.to_thread(pending_files, self.config)
            except Exception:  # a lake hiccup must not kill the watcher: log it, look again next time
                log.exception("inbox watcher: could not list the landing inbox; retrying in %ss", self.poll_seconds)
                pending = {}
            fresh = {day: fps for day, fps in pending.items() if fired.get(day) != fps}
            if fresh:
                log.info("inbox watcher: late or re-delivered files for %s", sorted(fresh))
                fired.update(fresh)
                yield TriggerEvent({"days": sorted(fresh)})
            await asyncio.sleep(self.poll_seconds)
