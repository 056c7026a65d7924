"""Arrival: when a day's inbox files are complete, what is refused, what came late, what depends on it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from flightdeck.core.config import PipelineConfig, load_config
from flightdeck.core.lake import COMMIT_MARKER, Lake
from flightdeck.data import landing
from flightdeck.ops.inbox_watch import DayFilesTrigger, InboxTrigger

DAY = dt.date(2013, 3, 5)


@pytest.fixture()
def lake(lake_root: Path) -> Lake:
    return Lake(str(lake_root))


def _deliver(lake: Lake, cfg: PipelineConfig, source: str, day: dt.date, body: str = "x\n1\n") -> Path:
    src = cfg.dataset.entity if source == cfg.dataset.entity.name else cfg.dataset.timeseries_named(source)
    path = Path(landing.inbox_file(lake, src, day))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def _commit_bronze(lake: Lake, day: dt.date) -> None:
    folder = Path(lake.partition("bronze", "flights", day))
    folder.mkdir(parents=True)
    (folder / COMMIT_MARKER).write_text("{}")


def test_day_is_complete_when_every_required_source_arrived(lake: Lake) -> None:
    cfg = load_config()
    _deliver(lake, cfg, "flights", DAY)
    waiting = landing.day_status(cfg, lake, DAY)
    assert not waiting.complete and waiting.missing == ["weather"]
    assert waiting.why == "waiting for sources ['weather']"
    _deliver(lake, cfg, "weather", DAY)
    assert landing.day_status(cfg, lake, DAY).complete


def test_ready_marker_and_cutoff(lake: Lake) -> None:
    marker = load_config(environ={"FLIGHTDECK__ARRIVAL__READY_MARKER": "true"})
    _deliver(lake, marker, "flights", DAY)
    _deliver(lake, marker, "weather", DAY)
    status = landing.day_status(marker, lake, DAY)
    assert not status.complete and "ready marker" in status.why
    Path(landing.ready_file(marker, lake, DAY)).write_text("")
    assert landing.day_status(marker, lake, DAY).complete

    cutoff = load_config(environ={"FLIGHTDECK__ARRIVAL__CUTOFF_HOURS": "6"})
    other = DAY + dt.timedelta(days=1)
    _deliver(lake, cutoff, "flights", other)  # weather never comes
    day_end = dt.datetime.combine(other + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    assert not landing.day_status(cutoff, lake, other, now=day_end + dt.timedelta(hours=5)).complete
    late = landing.day_status(cutoff, lake, other, now=day_end + dt.timedelta(hours=6))
    assert late.complete and late.missing == ["weather"] and "cutoff of 6 h" in late.why


def test_required_sources_are_configurable_and_checked() -> None:
    cfg = load_config(environ={"FLIGHTDECK__ARRIVAL__REQUIRED": "[flights]"})
    assert cfg.required_sources() == ["flights"]
    from flightdeck.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"arrival\.required: \['wether'\] are not sources"):
        load_config(environ={"FLIGHTDECK__ARRIVAL__REQUIRED": "[flights, wether]"})


def test_files_matching_no_source_or_outside_the_calendar_are_refused_and_left(lake: Lake) -> None:
    cfg = load_config()
    good = _deliver(lake, cfg, "flights", DAY)
    inbox = good.parent
    strays = {
        "flights_2013-13-01.csv": "matches no source",
        "flights-2013-03-05.csv": "matches no source",
        "notes.txt": "matches no source",
        "flights_2014-01-05.csv": "outside the configured calendar 2013-01-01..2013-12-31",
    }
    for name in strays:
        (inbox / name).write_text("x\n")
    found, refused = landing.scan_inbox(cfg, lake)
    assert [(f.source, f.date) for f in found] == [("flights", DAY)]
    reasons = {Path(r.path).name: r.reason for r in refused}
    assert set(reasons) == set(strays)
    for name, why in strays.items():
        assert why in reasons[name]
        assert (inbox / name).is_file()  # left in place
    with pytest.raises(landing.LandingError, match="outside the configured calendar"):
        landing.day_status(cfg, lake, "2014-01-05")


def test_late_and_redelivered_files_name_their_day(lake: Lake) -> None:
    cfg = load_config()
    flights = _deliver(lake, cfg, "flights", DAY)
    assert landing.redelivered_days(cfg, lake) == []  # never ingested: the daily run takes it
    landing.mark_day(cfg, lake, DAY, run_key="run-1")
    assert landing.redelivered_days(cfg, lake) == []
    _deliver(lake, cfg, "weather", DAY)  # a source arriving after the day was ingested
    assert landing.redelivered_days(cfg, lake) == [DAY]
    landing.mark_day(cfg, lake, DAY, run_key="run-2")
    assert landing.redelivered_days(cfg, lake) == []
    flights.write_text("x\n2\n")  # a re-delivery with other bytes
    assert landing.redelivered_days(cfg, lake) == [DAY]
    _deliver(lake, cfg, "flights", DAY + dt.timedelta(days=1))  # a new day is not a re-delivery
    assert landing.redelivered_days(cfg, lake) == [DAY]


def test_dependent_days_are_the_ingested_days_whose_windows_read_it(lake: Lake) -> None:
    cfg = load_config()
    assert cfg.features.lookback_days == 28
    for k in (0, 1, 2, 28, 29):
        _commit_bronze(lake, DAY + dt.timedelta(days=k))
    got = landing.dependent_days(cfg, lake, [DAY])
    assert got == [DAY + dt.timedelta(days=k) for k in (0, 1, 2, 28)]  # day 29 is out of every window


def test_simulated_upstream_never_overwrites_a_delivered_file(lake: Lake) -> None:
    cfg = load_config()
    mine = _deliver(lake, cfg, "flights", DAY, body="mine\n")
    landing.land_range(cfg, lake, DAY, DAY)
    assert mine.read_text() == "mine\n"
    assert Path(landing.inbox_file(lake, cfg.dataset.entity, DAY)) == mine
    landing.land_range(cfg, lake, DAY, DAY, redeliver=True)
    assert mine.read_text().startswith("year,month,day,")


def test_history_check_names_the_incomplete_days(lake: Lake) -> None:
    cfg = load_config()
    _deliver(lake, cfg, "flights", DAY)
    _deliver(lake, cfg, "weather", DAY)
    _deliver(lake, cfg, "flights", DAY + dt.timedelta(days=1))
    assert landing.check_history(str(DAY), str(DAY)) == [DAY.isoformat()]
    with pytest.raises(landing.LandingError, match=r"1 of 2 history days are incomplete.*2013-03-06: waiting for"):
        landing.check_history(str(DAY), str(DAY + dt.timedelta(days=1)))


def test_inbox_trigger_fires_once_per_new_set_of_files(lake: Lake) -> None:
    cfg = load_config()
    flights = _deliver(lake, cfg, "flights", DAY)
    landing.mark_day(cfg, lake, DAY)
    trigger = InboxTrigger(poll_seconds=0.05)
    path, kwargs = trigger.serialize()
    assert path == "flightdeck.ops.inbox_watch.InboxTrigger" and kwargs == {"poll_seconds": 0.05, "config": None}

    async def watch() -> list[list[str]]:
        events: list[list[str]] = []

        async def consume() -> None:
            async for event in trigger.run():
                events.append(event.payload["days"])

        async def settle(count: int) -> None:
            for _ in range(200):
                if len(events) >= count:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # several more polls: nothing else may fire

        task = asyncio.create_task(consume())
        await settle(1)
        assert events == []  # nothing late yet
        flights.write_text("x\n3\n")  # a re-delivery
        await settle(1)
        assert len(events) == 1  # the same files do not fire again
        _deliver(lake, cfg, "weather", DAY)  # another file for the day: a new set
        await settle(2)
        task.cancel()
        return events

    assert asyncio.run(watch()) == [[DAY.isoformat()], [DAY.isoformat()]]


async def _events(trigger: DayFilesTrigger, act: Callable[[], object] | None = None) -> list[dict]:
    """The trigger's events: looks a few times, then runs ``act`` (a delivery) and waits for it to end."""
    events: list[dict] = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)  # several polls
    if act is not None:
        assert events == []  # nothing fires while the day is incomplete
        act()
    await asyncio.wait_for(task, timeout=10)  # the trigger ends after its one event
    return events


def test_day_files_trigger_fires_once_the_day_is_complete(lake: Lake) -> None:
    cfg = load_config()
    _deliver(lake, cfg, "flights", DAY)
    trigger = DayFilesTrigger(DAY.isoformat(), poll_seconds=0.05)
    path, kwargs = trigger.serialize()
    assert path == "flightdeck.ops.inbox_watch.DayFilesTrigger"
    assert kwargs == {"partition": DAY.isoformat(), "poll_seconds": 0.05, "config": None}

    events = asyncio.run(_events(trigger, lambda: _deliver(lake, cfg, "weather", DAY)))

    assert len(events) == 1
    status = events[0]["status"]
    assert status["complete"] and status["present"] == ["flights", "weather"]
    assert status["why"] == "every required source has arrived"


def test_day_files_trigger_ends_the_wait_on_a_day_outside_the_calendar(lake: Lake) -> None:
    events = asyncio.run(_events(DayFilesTrigger("1999-01-01", poll_seconds=0.05)))
    assert len(events) == 1 and "1999-01-01" in events[0]["error"]


def test_ingest_sensor_goes_on_at_once_or_defers_to_the_triggerer(lake: Lake) -> None:
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from flightdeck.ops.dagkit import DayFilesSensor

    cfg = load_config()
    sensor = DayFilesSensor(task_id="wait_for_files", partition=DAY.isoformat())
    assert sensor.poke_interval == cfg.arrival.watch_seconds
    assert sensor.execution_timeout == dt.timedelta(hours=cfg.arrival.timeout_hours)
    _deliver(lake, cfg, "flights", DAY)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DayFilesTrigger) and trigger.partition == DAY.isoformat()
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == dt.timedelta(hours=cfg.arrival.timeout_hours)

    _deliver(lake, cfg, "weather", DAY)
    assert sensor.execute({})["complete"]  # complete at the first look: no deferral
    assert sensor.execute_complete({}, {"status": {"complete": True}}) == {"complete": True}
    with pytest.raises(AirflowFailException, match="outside"):
        sensor.execute_complete({}, {"error": "2099-01-01 lies outside the calendar"})
