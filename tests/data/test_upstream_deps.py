"""Dependency-complete features: a day waits for the bronze days its windows read, or is marked degraded.

The gaps come from the lake's commit markers; past ``timeouts.upstream_wait_hours`` the features
DAG builds the day marked degraded (``monitoring/feature_status/D.json`` naming the missing
days, a ``features_degraded`` alert, the UI page); when the missing day commits, the ingest's
announce (:func:`flightdeck.data.landing.dependent_days`) names the degraded day, and its
rebuild equals a clean build and clears the mark.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest
from testkit import FLIGHT_SCHEMA, PLANES_SCHEMA, WEATHER_SCHEMA

from flightdeck.core.config import load_config
from flightdeck.core.lake import COMMIT_MARKER, Lake, read_json
from flightdeck.data import feature_run
from flightdeck.data.landing import dependent_days

STARTED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # the run's start: the wait's clock


def _days(first: str, last: str) -> list[dt.date]:
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]


def _commit(lake: Lake, day: dt.date) -> None:
    folder = Path(lake.partition("bronze", "flights", day))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMMIT_MARKER).touch()


class _NoRegistry:
    """An MLflow client whose registry is down: the page shows that part as unavailable."""

    def __getattr__(self, name: str) -> Any:
        raise ConnectionError("no MLflow in this test")


def test_needs_are_the_lookback_days_from_the_calendar_start() -> None:
    cfg = load_config()  # features.lookback_days 28, calendar.start 2013-01-01
    assert feature_run.upstream_needs("2013-07-01", cfg) == {"flights": _days("2013-06-03", "2013-06-30")}
    assert feature_run.upstream_needs("2013-01-05", cfg) == {"flights": _days("2013-01-01", "2013-01-04")}
    assert feature_run.upstream_needs("2013-01-01", cfg) == {}  # nothing before the calendar


def test_wait_then_degraded_then_complete_when_the_day_arrives(
    lake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flightdeck.ops import readmodel, ui_page

    monkeypatch.setenv("FLIGHTDECK__TIMEOUTS__UPSTREAM_WAIT_HOURS", "6")
    lake = Lake(str(lake_root))
    # The e2e's history: the second half of June, then 07-01 ingested.
    for day in _days("2013-06-17", "2013-07-01"):
        _commit(lake, day)
    early = [d.isoformat() for d in _days("2013-06-03", "2013-06-16")]
    assert feature_run.upstream_gaps(lake, "2013-07-01", load_config()) == {d: ["flights"] for d in early}

    done, status = feature_run.poke_upstream("2013-07-01", STARTED, STARTED + dt.timedelta(hours=5, minutes=59))
    assert not done and sorted(status["missing"]) == early  # still waiting
    done, status = feature_run.poke_upstream("2013-07-01", STARTED, STARTED + dt.timedelta(hours=6))
    assert done and not status["complete"] and sorted(status["missing"]) == early

    marked = feature_run.record_feature_status("2013-07-01", status, "run-1")
    stored = read_json(lake.feature_status("2013-07-01"))
    assert stored["degraded"] is True and sorted(stored["missing"]) == early and stored["run"] == "run-1"
    assert marked["degraded"] and len(stored["needed"]) == 28
    alert = json.loads(Path(lake.alerts_file("alerts.jsonl")).read_text().splitlines()[-1])
    assert alert["event"] == "features_degraded" and alert["severity"] == "warning"
    assert "2013-07-01" in alert["summary"] and "2013-06-03..2013-06-16" in alert["summary"]
    (row,) = readmodel.degraded_features(lake)
    assert row["partition"] == "2013-07-01" and row["missing_days"] == early
    page = ui_page.render_page(ui_page.collect(load_config(), lake=lake, client=_NoRegistry()))
    section = page.split("<h2>Degraded features</h2>", 1)[1].split("<h2>", 1)[0]
    assert "2013-07-01" in section and "2013-06-03, 2013-06-04" in section and "2013-06-16" in section

    # The missing days arrive: their ingest announces 07-01 among their dependants.
    for day in _days("2013-06-03", "2013-06-16"):
        _commit(lake, day)
    assert dt.date(2013, 7, 1) in dependent_days(load_config(), lake, ["2013-06-10"])
    done, status = feature_run.poke_upstream("2013-07-01", STARTED, STARTED)
    assert done and status["complete"] and status["missing"] == {}
    feature_run.record_feature_status("2013-07-01", status, "run-2")
    assert read_json(lake.feature_status("2013-07-01"))["degraded"] is False
    assert readmodel.degraded_features(lake) == []


def test_an_announce_without_new_commits_rebuilds_nothing(lake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-order backfill announces a day once per earlier day it reads: only new commits rebuild it."""
    import os

    monkeypatch.setenv("FLIGHTDECK__TIMEOUTS__UPSTREAM_WAIT_HOURS", "0")
    lake = Lake(str(lake_root))
    for day in _days("2013-06-03", "2013-07-01"):
        if day != dt.date(2013, 6, 20):
            _commit(lake, day)
    features = Path(lake.partition("features", "flights", "2013-07-01"))
    features.mkdir(parents=True)
    (features / COMMIT_MARKER).touch()
    _, status = feature_run.poke_upstream("2013-07-01", STARTED, STARTED)

    first = feature_run.record_feature_status("2013-07-01", status, "run-1")
    assert first is not None and first["degraded"] and first["inputs"]["flights/2013-06-20"] is None
    # The build of run-1 failed (never marked built): the next announce builds again.
    assert feature_run.record_feature_status("2013-07-01", status, "run-2") is not None
    feature_run.mark_built("2013-07-01", "run-1")  # a late mark from a run whose status was replaced
    assert read_json(lake.feature_status("2013-07-01"))["built"] is False
    feature_run.mark_built("2013-07-01", "run-2")
    assert read_json(lake.feature_status("2013-07-01"))["built"] is True
    # Announced again with the same commits (another day's ingest named it): nothing to rebuild.
    assert feature_run.record_feature_status("2013-07-01", status, "run-3") is None
    assert read_json(lake.feature_status("2013-07-01"))["run"] == "run-2"
    # The missing day commits: a rebuild, complete.
    _commit(lake, dt.date(2013, 6, 20))
    _, status = feature_run.poke_upstream("2013-07-01", STARTED, STARTED)
    rebuilt = feature_run.record_feature_status("2013-07-01", status, "run-4")
    assert rebuilt is not None and not rebuilt["degraded"] and rebuilt["inputs"]["flights/2013-06-20"] is not None
    feature_run.mark_built("2013-07-01", "run-4")
    assert feature_run.record_feature_status("2013-07-01", status, "run-5") is None
    # A day re-ingested (committed again, even with the same rows) is a new input: rebuild.
    marker = Path(lake.partition("bronze", "flights", "2013-06-25")) / COMMIT_MARKER
    stat = marker.stat()
    os.utime(marker, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert feature_run.record_feature_status("2013-07-01", status, "run-6") is not None
    feature_run.mark_built("2013-07-01", "run-6")
    # A features partition that is gone is built again.
    assert feature_run.record_feature_status("2013-07-01", status, "run-7") is None
    (features / COMMIT_MARKER).unlink()
    assert feature_run.record_feature_status("2013-07-01", status, "run-8") is not None


# --- the build itself: degraded without a day, rebuilt complete when it arrives (Spark) ----------

UTC_OFFSET = dt.timedelta(hours=5)  # New York in winter
FIRST = dt.date(2013, 1, 1)
N_DAYS = 8
MISSING = "2013-01-04"
DAY = "2013-01-08"


def _flights(rng: random.Random) -> list[tuple]:
    rows = []
    for i in range(N_DAYS):
        day = FIRST + dt.timedelta(days=i)
        for j in range(30):
            hour = rng.randint(6, 21)
            utc = dt.datetime(day.year, day.month, day.day, hour) + UTC_OFFSET
            rows.append((day.year, day.month, day.day, hour, 0, rng.choice(["UA", "AA"]), i * 100 + j,
                         rng.choice(["N1", "N2"]), rng.choice(["EWR", "JFK"]), "ORD", 700.0,
                         float(rng.choice([-10, 5, 40])), hour * 100, utc))  # fmt: skip
    return rows


def _weather() -> list[tuple]:
    start = dt.datetime(FIRST.year, FIRST.month, FIRST.day) + UTC_OFFSET - dt.timedelta(hours=6)
    return [
        (origin, start + dt.timedelta(hours=h), 5.0, 1.0, 60.0, 180.0, 8.0, None, 0.0, 1015.0, 10.0)
        for h in range(N_DAYS * 24 + 6)
        for origin in ("EWR", "JFK")
    ]


def _features(spark: Any, lake_root: Path) -> list[dict[str, Any]]:
    df = spark.read.parquet(str(lake_root / "features" / "flights" / f"date={DAY}"))
    return sorted((r.asDict() for r in df.collect()), key=lambda r: (str(r["event_ts"]), r["flight"]))


@pytest.mark.spark
@pytest.mark.slow  # three feature builds: over a minute on a busy 2-core machine
def test_degraded_build_is_rebuilt_like_a_clean_one(
    spark: Any, lake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyspark.sql import functions as F

    from flightdeck.core.jobargs import load_job
    from flightdeck.core.lake import reference_table
    from flightdeck.data.sparkio import write_partitions, write_table

    monkeypatch.setenv("FLIGHTDECK__TIMEOUTS__UPSTREAM_WAIT_HOURS", "0")
    lake = Lake(str(lake_root))
    flights = spark.createDataFrame(_flights(random.Random(3)), FLIGHT_SCHEMA).withColumn(
        "date", F.format_string("%04d-%02d-%02d", "year", "month", "day")
    )
    weather = spark.createDataFrame(_weather(), WEATHER_SCHEMA).withColumn(
        "date", F.date_format(F.col("time_hour") - F.expr("INTERVAL 5 HOURS"), "yyyy-MM-dd")
    )
    days = [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(N_DAYS)]
    write_partitions(flights.where(F.col("date") != MISSING).repartition(1), lake, "bronze", "flights",
                     [d for d in days if d != MISSING])  # fmt: skip
    write_partitions(weather.repartition(1), lake, "bronze", "weather", days)
    planes = spark.createDataFrame([("N1", 2003, 150, 2), ("N2", None, 50, 2)], PLANES_SCHEMA)
    write_table(planes, lake, "bronze", reference_table("planes"))
    build = load_job("build_features").main

    done, status = feature_run.poke_upstream(DAY, STARTED, STARTED)  # no wait configured: go ahead at once
    assert done and status["missing"] == {MISSING: ["flights"]}
    assert feature_run.record_feature_status(DAY, status, "run-1")["degraded"]
    build(["--partition", DAY])
    degraded = _features(spark, lake_root)

    # The missing day commits; the announce names DAY; the rebuild is complete.
    write_partitions(flights.where(F.col("date") == MISSING).repartition(1), lake, "bronze", "flights", [MISSING])
    assert dt.date.fromisoformat(DAY) in dependent_days(load_config(), lake, [MISSING])
    done, status = feature_run.poke_upstream(DAY, STARTED, STARTED)
    assert done and status["complete"]
    assert not feature_run.record_feature_status(DAY, status, "run-2")["degraded"]
    build(["--partition", DAY])
    rebuilt = _features(spark, lake_root)

    # A clean build of the whole range (every day there from the start) gives the same rows.
    build(["--partition", f"{days[0]}..{DAY}"])
    assert _features(spark, lake_root) == rebuilt
    assert len(rebuilt) == len(degraded) == 30
    # The missing day changed the rolling windows: the degraded build was not the complete one.
    assert rebuilt != degraded
