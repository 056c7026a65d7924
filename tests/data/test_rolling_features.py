"""Rolling aggregates and schedule counts: hand-computed values, no leakage, reproducible partitions."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
from pyspark.testing import assertDataFrameEqual
from testkit import FLIGHT_SCHEMA, PLANES_SCHEMA, WEATHER_SCHEMA

from flightdeck.core.config import Rolling, ScheduleCount, load_config
from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import Lake, reference_table
from flightdeck.data.features import build_features, rolling_features, schedule_counts
from flightdeck.data.sparkio import write_partitions, write_table

pytestmark = pytest.mark.spark

ROWS_SCHEMA = "y int, m int, d int, g string, v double"


def _day(d: int) -> tuple[int, int, int]:
    return (2013, 1, d)


def _dated(df: Any) -> Any:
    """Rows with their local date in the partition column, as bronze holds them."""
    from pyspark.sql import functions as F

    return df.withColumn("date", F.make_date("y", "m", "d"))


@pytest.fixture()
def events(spark: Any) -> Any:
    return _dated(
        spark.createDataFrame(
            [
                (*_day(1), "A", 1.0),
                (*_day(1), "A", 0.0),
                (*_day(2), "A", 1.0),
                (*_day(3), "A", None),  # a null value is not counted
                (*_day(4), "A", 0.0),
                (*_day(2), "B", 1.0),
                (*_day(4), "B", 1.0),
                (*_day(4), "C", 0.0),  # a group without history
                (*_day(4), None, 1.0),  # a null key belongs to no group
            ],
            ROWS_SCHEMA,
        )
    )


def _by_day_group(df: Any, *cols: str) -> dict[tuple[int, str | None], tuple[Any, ...]]:
    return {(r["d"], r["g"]): tuple(r[c] for c in cols) for r in df.collect()}


def test_rolling_mean_sees_only_days_before(events: Any) -> None:
    roll = Rolling(name="r", group_by=["g"], value="v", agg="mean", windows_days=[2, 3], count_column=True)
    out = rolling_features(events, events, [roll])
    got = _by_day_group(out.where("d <> 1 OR v = 1.0"), "r_2d", "r_2d_n", "r_3d", "r_3d_n")
    # day 4 of A: 2-day window = days 2..3 -> [1] (day 3 is null); 3-day = days 1..3 -> [1, 0, 1]
    assert got[(4, "A")] == (1.0, 1.0, pytest.approx(2 / 3), 3.0)
    # day 3 of A: 2-day = days 1..2 -> [1, 0, 1]; 3-day reaches day 0, before the data -> null
    assert got[(3, "A")] == (pytest.approx(2 / 3), 3.0, None, None)
    assert got[(2, "A")] == (None, None, None, None)
    assert got[(1, "A")] == (None, None, None, None)
    assert got[(4, "B")] == (1.0, 1.0, 1.0, 1.0)
    assert got[(2, "B")] == (None, None, None, None)
    assert got[(4, "C")] == (None, 0.0, None, 0.0)  # covered window, no values: mean null, count 0
    assert got[(4, None)] == (None, None, None, None)
    assert out.count() == events.count()


def test_rolling_sum_count_known_after_and_min_count(events: Any) -> None:
    rolls = [
        Rolling(name="s", group_by=["g"], value="v", agg="sum", windows_days=[1, 2], known_after_days=2, min_count=2),
        Rolling(name="c", group_by=["g"], value="v", agg="count", windows_days=[3]),
    ]
    out = rolling_features(events, events, rolls).dropDuplicates(["d", "g"])
    got = _by_day_group(out, "s_1d", "s_2d", "c_3d")
    # known after 2 days: day 4 sees day 2 (1 day) / days 1..2 (2 days)
    assert got[(4, "A")] == (None, 2.0, 3.0)  # day 2 holds one value < min_count 2; days 1..2: 1+0+1
    assert got[(3, "A")] == (1.0, None, None)  # day 1: 1+0; days 0..1 reach before the data
    assert got[(4, "B")] == (None, None, 1.0)
    assert got[(4, "C")] == (None, None, 0.0)


def test_rolling_window_over_a_missing_day_is_null(events: Any) -> None:
    roll = Rolling(name="r", group_by=["g"], value="v", windows_days=[1, 3])
    covered = [dt.date(2013, 1, d) for d in (1, 2, 4)]  # day 3 not committed
    got = _by_day_group(rolling_features(events, events, [roll], covered=covered).where("v = 0.0"), "r_1d", "r_3d")
    assert got[(4, "A")] == (None, None)


def test_rolling_multi_key_and_history_only_rows(spark: Any) -> None:
    history = [(*_day(d), k, "X", float(d % 2)) for d in (1, 2, 3) for k in ("P", "Q")]
    rows = [(*_day(4), "P", "X", 9.0), (*_day(4), "P", "Y", 9.0)]
    schema = "y int, m int, d int, g string, h string, v double"
    events = _dated(spark.createDataFrame(rows + history, schema))
    roll = Rolling(name="r", group_by=["g", "h"], value="v", agg="sum", windows_days=[3])
    out = rolling_features(_dated(spark.createDataFrame(rows, schema)), events, [roll])
    assert {r["h"]: r["r_3d"] for r in out.collect()} == {"X": 1.0 + 0.0 + 1.0, "Y": None}


def test_schedule_counts_same_local_day_and_keys(spark: Any) -> None:
    rows = _dated(
        spark.createDataFrame(
            [
                (*_day(1), "EWR", 5),
                (*_day(1), "EWR", 5),
                (*_day(1), "EWR", 6),
                (*_day(1), "JFK", 5),
                (*_day(2), "EWR", 5),
            ],
            "y int, m int, d int, origin string, hour int",
        )
    )
    out = schedule_counts(rows, [ScheduleCount(name="n", group_by=["origin", "hour"])])
    got = sorted((r["d"], r["origin"], r["hour"], r["n"]) for r in out.collect())
    assert got == [(1, "EWR", 5, 2.0), (1, "EWR", 5, 2.0), (1, "EWR", 6, 1.0), (1, "JFK", 5, 1.0), (2, "EWR", 5, 1.0)]


def test_config_rejects_bad_rolling(tmp_path: Path) -> None:
    import yaml

    from flightdeck.core.config import ConfigError

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "include/config/flights.yaml").read_text())
    raw["features"]["rolling"][0]["known_after_days"] = 0
    raw["features"]["rolling"][1]["agg"] = "median"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "features.rolling.0.known_after_days" in str(err.value)
    assert "features.rolling.1.agg" in str(err.value)


# --- a synthetic month of flights and weather through the real flights declaration ----------

UTC_OFFSET = dt.timedelta(hours=5)  # New York in winter: time_hour is UTC, year/month/day/hour local
FIRST = dt.date(2013, 1, 1)
N_DAYS = 33


def _flight(rng: random.Random, n: int, day: dt.date, hour: int | None = None) -> tuple:
    hour = rng.randint(5, 22) if hour is None else hour
    origin, dest = rng.choice(["EWR", "JFK", "LGA"]), rng.choice(["ORD", "ATL", "BOS"])
    arr = None if rng.random() < 0.05 else float(rng.randint(-20, 60))
    utc = dt.datetime(day.year, day.month, day.day, hour) + UTC_OFFSET
    tail = rng.choice(["N1", "N2", "N3", None])
    carrier = rng.choice(["UA", "AA", "DL"])
    return (day.year, day.month, day.day, hour, rng.choice([0, 15, 30, 45]), carrier, n, tail, origin, dest,
            700.0 + rng.randint(0, 300), arr, hour * 100, utc)  # fmt: skip


def _flights(seed: int = 7, per_day: int = 40) -> list[tuple]:
    rng = random.Random(seed)
    return [
        _flight(rng, i * 1000 + j, FIRST + dt.timedelta(days=i), None) for i in range(N_DAYS) for j in range(per_day)
    ]


def _weather(seed: int = 11) -> list[tuple]:
    rng = random.Random(seed)
    start = dt.datetime(FIRST.year, FIRST.month, FIRST.day) + UTC_OFFSET - dt.timedelta(hours=6)
    rows = []
    for h in range(N_DAYS * 24 + 6):
        for origin in ("EWR", "JFK", "LGA"):
            if rng.random() < 0.1:
                continue  # missing hours: the previous hour fills in (within 3 h)
            t = rng.uniform(-5, 15)
            rows.append((origin, start + dt.timedelta(hours=h), t, t - 3, 60.0, 180.0, 8.0, None, 0.0, 1015.0, 10.0))
    return rows


PLANES = [("N1", 2003, 150, 2), ("N2", None, 50, 2), ("N3", 1999, 200, 2)]


def _event(row: tuple) -> dt.datetime:
    return row[13] + dt.timedelta(minutes=row[4])


def _perturb(flights: list[tuple], weather: list[tuple], cutoff: dt.datetime, schedule_too: bool) -> tuple:
    """Change every row at or after ``cutoff``; with ``schedule_too`` also its schedule (and add/drop rows)."""
    rng = random.Random(99)
    cut_hour = (cutoff - UTC_OFFSET).hour
    out = []
    for i, r in enumerate(flights):
        if _event(r) < cutoff:
            out.append(r)
            continue
        if schedule_too and i % 5 == 0:
            continue  # dropped
        new = list(r)
        new[5], new[7], new[9] = "DL" if r[5] != "DL" else "UA", "N9", "ORD" if r[9] != "ORD" else "BOS"
        new[10], new[11], new[12] = r[10] * 2, None if r[11] is not None else 500.0, 2359
        if schedule_too:
            new[8] = "LGA" if r[8] != "LGA" else "JFK"
        out.append(tuple(new))
    local = (cutoff - UTC_OFFSET).date()
    for i in range(60):  # new flights after the cutoff
        day = local + dt.timedelta(days=i % 3)
        hour = rng.randint(5, 22) if schedule_too else rng.randint(cut_hour + 1, 22)
        out.append(_flight(rng, 900_000 + i, day, hour))
    wx = [w if w[1] < cutoff else (w[0], w[1], 99.0, *w[3:]) for w in weather]
    wx += [(o, cutoff + dt.timedelta(minutes=m), -40.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 990.0, 0.5)
           for o in ("EWR", "JFK", "LGA") for m in (0, 1, 61)]  # fmt: skip
    return out, wx


def _build(spark: Any, flights: list[tuple], weather: list[tuple]) -> Any:
    cfg = load_config()
    refs = {"planes": spark.createDataFrame(PLANES, PLANES_SCHEMA)}
    wx = spark.createDataFrame(weather, WEATHER_SCHEMA)
    return build_features(spark.createDataFrame(flights, FLIGHT_SCHEMA), {"weather": wx}, refs, cfg)


@pytest.mark.parametrize(
    ("cutoff", "schedule_too"),
    [
        (dt.datetime(2013, 1, 30) + UTC_OFFSET, True),  # local midnight: everything after may change
        (dt.datetime(2013, 1, 31, 12, 20) + UTC_OFFSET, False),  # mid-day: the day's schedule is fixed
    ],
)
def test_no_leakage_changing_every_row_after_a_cutoff(spark: Any, cutoff: dt.datetime, schedule_too: bool) -> None:
    flights, weather = _flights(), _weather()
    before = _build(spark, flights, weather).cache()
    changed = _build(spark, *_perturb(flights, weather, cutoff, schedule_too)).cache()
    is_before = f"event_ts < timestamp'{cutoff.isoformat(sep=' ')}'"
    assertDataFrameEqual(changed.where(is_before), before.where(is_before))
    # not vacuous: rows before the cutoff have every rolling feature, and rows after it changed
    rolling = [c for r in load_config().features.rolling for c in r.outputs]
    last_day = before.where(is_before).orderBy("event_ts", ascending=False).limit(20)
    assert all(r[c] is not None for r in last_day.collect() for c in rolling if c.startswith("carrier"))
    after = f"NOT ({is_before}) AND flight < 900000"
    assert changed.where(after).exceptAll(before.where(after)).count() > 0
    before.unpersist()
    changed.unpersist()


# --- the job: history read from the lake, byte-identical reruns ------------------------------


def _parquet_bytes(root: Path, day: str) -> list[bytes]:
    files = sorted((root / "features" / "flights" / f"date={day}").glob("*.parquet"))
    assert files
    return [f.read_bytes() for f in files]


def test_job_reads_history_and_reruns_byte_identical(spark: Any, lake_root: Path) -> None:
    from pyspark.sql import functions as F

    lake = Lake(str(lake_root))
    flights = spark.createDataFrame(_flights(), FLIGHT_SCHEMA).withColumn(
        "date", F.format_string("%04d-%02d-%02d", "year", "month", "day")
    )
    weather = spark.createDataFrame(_weather(), WEATHER_SCHEMA).withColumn(
        "date", F.date_format(F.col("time_hour") - F.expr("INTERVAL 5 HOURS"), "yyyy-MM-dd")
    )
    days = [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(N_DAYS)]
    write_partitions(flights.repartition(1), lake, "bronze", "flights", days)
    write_partitions(weather.repartition(1), lake, "bronze", "weather", days)
    write_table(spark.createDataFrame(PLANES, PLANES_SCHEMA), lake, "bronze", reference_table("planes"))

    day = days[-1]
    build = load_job("build_features").main
    build(["--partition", day])
    first = _parquet_bytes(lake_root, day)
    build(["--partition", day])
    assert _parquet_bytes(lake_root, day) == first  # byte-identical rerun

    # the day built alone (history from the lake) equals the day built inside the whole range
    alone = spark.read.parquet(str(lake_root / "features" / "flights" / f"date={day}")).cache()
    assert alone.where("carrier_late_rate_28d IS NULL").count() == 0
    build(["--partition", f"{days[0]}..{day}"])
    together = spark.read.parquet(str(lake_root / "features" / "flights" / f"date={day}"))
    assertDataFrameEqual(together, alone)
    assert _parquet_bytes(lake_root, day) == first
    alone.unpersist()
