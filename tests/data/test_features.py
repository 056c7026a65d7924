"""Features: point-in-time as-of joins, lookups, derived columns and the label."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from testkit import FLIGHT_SCHEMA, WEATHER_SCHEMA

from flightdeck.core.config import load_config
from flightdeck.data.features import build_features

pytestmark = pytest.mark.spark


def ts(h: int, m: int = 0, day: int = 2) -> dt.datetime:
    return dt.datetime(2013, 1, day, h, m)


def flight(n: int, h: int, m: int, origin: str = "EWR", tail: str | None = "N1", arr: float | None = 5.0) -> tuple:
    # local hour/minute are arbitrary here; time_hour is the UTC scheduled hour
    return (2013, 1, 2, 9, m, "UA", n, tail, origin, "ORD", 700.0, arr, 900, ts(h))


def wx(origin: str, when: dt.datetime, temp: float, gust: float | None = None) -> tuple:
    return (origin, when, temp, 1.0, 2.0, 3.0, 4.0, gust, 0.0, 1010.0, 10.0)


@pytest.fixture()
def frames(spark: Any) -> tuple[Any, Any, Any]:
    flights = spark.createDataFrame(
        [
            flight(1, 10, 30),  # event 10:30: obs at 10:00 and 11:00 exist -> 10:00, never the closer 11:00
            flight(2, 10, 0),  # event 10:00 exactly: the 10:00 obs counts (at or before)
            flight(3, 15, 0),  # event 15:00: latest obs 11:00 is 4h old > 3h lag -> null
            flight(4, 10, 30, origin="LGA", tail="N2", arr=None),  # other origin; cancelled -> label 1
            flight(5, 0, 30, tail=None, arr=20.0),  # just after midnight: obs from the previous evening
        ],
        FLIGHT_SCHEMA,
    )
    weather = spark.createDataFrame(
        [
            wx("EWR", ts(9), 40.0, gust=25.0),
            wx("EWR", ts(10), 41.0),  # gust null: must not borrow the 9:00 gust
            wx("EWR", ts(11), 99.0),
            wx("LGA", ts(8), 30.0),
            wx("LGA", ts(10, 31), 31.0),  # one minute after flight 4's event
            wx("EWR", ts(23, 0, day=1), 20.0),
        ],
        WEATHER_SCHEMA,
    )
    planes = spark.createDataFrame(
        [("N1", 2003, 150, 2), ("N2", None, 50, 2)], "tailnum string, year int, seats int, engines int"
    )
    return flights, weather, planes


def test_asof_join_is_point_in_time_correct(frames: tuple[Any, Any, Any]) -> None:
    flights, weather, planes = frames
    out = build_features(flights, {"weather": weather}, {"planes": planes}, load_config())
    got = {r["flight"]: r for r in out.collect()}
    assert got[1]["wx_temp"] == 41.0 and got[1]["wx_wind_gust"] is None
    assert got[2]["wx_temp"] == 41.0
    assert got[3]["wx_temp"] is None and got[3]["wx_visib"] is None
    assert got[4]["wx_temp"] == 30.0  # 8:00 is 2.5h old; the 10:31 obs is in the future
    assert got[5]["wx_temp"] == 20.0
    assert got[1]["event_ts"] == dt.datetime(2013, 1, 2, 10, 30)


def test_lag_window_is_respected(spark: Any, frames: tuple[Any, Any, Any]) -> None:
    flights, weather, planes = frames
    cfg = load_config()
    joins = [j.model_copy(update={"max_lag_hours": 0.25}) for j in cfg.features.asof_joins]
    tight = cfg.model_copy(update={"features": cfg.features.model_copy(update={"asof_joins": joins})})
    got = {
        r["flight"]: r["wx_temp"]
        for r in build_features(flights, {"weather": weather}, {"planes": planes}, tight).collect()
    }
    assert got == {1: None, 2: 41.0, 3: None, 4: None, 5: None}


def test_lookup_derived_label_and_types(frames: tuple[Any, Any, Any]) -> None:
    flights, weather, planes = frames
    cfg = load_config()
    out = build_features(flights, {"weather": weather}, {"planes": planes}, cfg, carry=["year"])
    got = {r["flight"]: r for r in out.collect()}
    assert (got[1]["plane_seats"], got[1]["plane_age"], got[1]["plane_engines"]) == (150.0, 10.0, 2.0)
    assert got[4]["plane_seats"] == 50.0 and got[4]["plane_age"] is None
    assert got[5]["plane_seats"] is None  # no tailnum: no match, no row multiplication
    assert out.count() == 5
    assert {f: r["late_arrival"] for f, r in got.items()} == {1: 0, 2: 0, 3: 0, 4: 1, 5: 1}
    assert got[1]["dep_minute_of_day"] == 9 * 60 + 30 and got[1]["day_of_week"] == 4.0  # 2013-01-02: Wednesday
    types = dict(out.dtypes)
    assert all(types[c] == "double" for c in cfg.features.numeric)
    assert all(types[c] == "string" for c in cfg.features.categorical)
    assert "date" not in out.columns and out.columns[-2:] == ["event_ts", "year"]
    expected = list(dict.fromkeys([*cfg.features.passthrough, *cfg.features.numeric, *cfg.features.categorical]))
    assert out.columns[: len(expected)] == expected and cfg.label.name in out.columns
