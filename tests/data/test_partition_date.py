"""A row's partition from a date column, a timestamp in a declared zone, or year/month/day;
a file column named like a platform column is read under its lake name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import Column, PartitionDate, TimeSeriesSource
from flightdeck.data import ingest, landing

pytestmark = pytest.mark.spark


def _source(partition_date: dict[str, str], columns: list[Column]) -> TimeSeriesSource:
    return TimeSeriesSource(
        name="events",
        columns=[Column(name="id", type="int", required=True), *columns],
        keys=["id"],
        partition_date=PartitionDate(**partition_date),
        event_time="id",
    )


def _classify(spark: Any, tmp_path: Path, source: TimeSeriesSource, text: str, day: str) -> dict[int, str | None]:
    path = tmp_path / f"events_{day}.csv"
    path.write_text(text)
    files = [ingest.inspect_landing_file(str(path), source, day)]
    rows = ingest.classify_rows(ingest.read_landing(spark, files, source), source).collect()
    return {r["id"]: r["reason"] for r in rows}


def test_date_column(spark: Any, tmp_path: Path) -> None:
    source = _source({"column": "day"}, [Column(name="day", type="date")])
    got = _classify(spark, tmp_path, source, "id,day\n1,2024-03-09\n2,2024-03-10\n3,\n4,2024-02-30\n", "2024-03-09")
    # 3: no date at all is not a wrong partition; 4 does not parse as a date
    assert got == {1: None, 2: "wrong_partition", 3: None, 4: "unparseable:day"}


def test_timestamp_in_its_zone(spark: Any, tmp_path: Path) -> None:
    source = _source({"timestamp": "at", "timezone": "America/New_York"}, [Column(name="at", type="timestamp")])
    text = (
        "id,at\n"
        "1,2024-03-10T03:30:00Z\n"  # 23:30 on the 9th in New York (EST, UTC-5)
        "2,2024-03-10T05:30:00Z\n"  # 00:30 on the 10th in New York
        "3,2024-03-09T12:00:00-05:00\n"  # an explicit offset
        "4,2024-03-09 04:59:00\n"  # no offset: read as UTC, 23:59 on the 8th in New York
    )
    assert _classify(spark, tmp_path, source, text, "2024-03-09") == {
        1: None,
        2: "wrong_partition",
        3: None,
        4: "wrong_partition",
    }


def test_year_month_day(spark: Any, tmp_path: Path) -> None:
    cols = [Column(name=n, type="int") for n in ("y", "m", "d")]
    source = _source({"year": "y", "month": "m", "day": "d"}, cols)
    got = _classify(spark, tmp_path, source, "id,y,m,d\n1,2024,3,9\n2,2024,3,10\n3,2024,2,30\n", "2024-03-09")
    assert got == {1: None, 2: "wrong_partition", 3: "invalid_date"}


def test_file_column_named_date_is_read_under_its_lake_name(spark: Any, tmp_path: Path) -> None:
    source = _source({"column": "event_date"}, [Column(name="event_date", type="date", source="date")])
    path = tmp_path / "events_2024-03-09.csv"
    path.write_text("id,date\n1,2024-03-09\n2,2024-03-11\n")
    files = [ingest.inspect_landing_file(str(path), source, "2024-03-09")]
    rows = ingest.classify_rows(ingest.read_landing(spark, files, source), source).collect()
    got = {r["id"]: (r["event_date"], r["date"], r["reason"]) for r in rows}
    assert got == {
        1: (dt.date(2024, 3, 9), "2024-03-09", None),
        2: (dt.date(2024, 3, 11), "2024-03-09", "wrong_partition"),
    }
    # The file's header is what the contract checks: a file lacking it names the header.
    path.write_text("id,event_date\n1,2024-03-09\n")
    with pytest.raises(ingest.IngestContractError, match=r"lacks columns \['date'\]"):
        ingest.inspect_landing_file(str(path), source, "2024-03-09")


@pytest.mark.parametrize(
    ("spec", "values", "day"),
    [
        ({"year": "y", "month": "m", "day": "d"}, ["2024", "3", "9"], dt.date(2024, 3, 9)),
        ({"column": "c"}, ["2024-03-09"], dt.date(2024, 3, 9)),
        ({"timestamp": "t", "timezone": "Asia/Tokyo"}, ["2024-03-09T16:00:00Z"], dt.date(2024, 3, 10)),
        ({"timestamp": "t", "timezone": "UTC"}, ["2024-03-09 23:59:59"], dt.date(2024, 3, 9)),
    ],
)
def test_simulated_upstream_cuts_days_by_the_same_rule(spec: dict[str, str], values: list[str], day: dt.date) -> None:
    assert landing.row_date(values, PartitionDate(**spec)) == day
