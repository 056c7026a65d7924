"""The landing inbox watcher: an Airflow event trigger for late and re-delivered files.

:class:`InboxTrigger` runs in the triggerer (no worker slot): every ``arrival.watch_seconds``
it looks for days that were ingested already and have a new file since (a late source or
a re-delivery, see :func:`flightdeck.data.landing.redelivered_days`) and fires once per new
set of files. An :class:`~airflow.sdk.AssetWatcher` turns each event into an event of the
``landing_inbox`` asset, which schedules ``flightdeck_inbox``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

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
