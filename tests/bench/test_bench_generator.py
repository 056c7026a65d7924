"""The benchmark's scale generator (bench/generator.py): new keys per replica, same distributions."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

# bench/ sits at the repository root, beside tests/: importable also when pytest is not run as `python -m pytest`
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.generator import FLIGHT_OFFSET, MAX_JITTER, scale_flights, scale_planes

pytestmark = pytest.mark.spark

KEYS = ["carrier", "flight", "origin", "time_hour", "minute"]


def _flights(spark: Any) -> Any:
    """Sixty hand-written bronze-like rows: three carriers, two origins, delays from -10 to 110, two cancelled."""
    rows = []
    for i in range(60):
        cancelled = i in (7, 41)
        delay = None if cancelled else float((i * 37) % 121 - 10)
        rows.append(
            (
                2013,
                1,
                1 + i % 2,
                None if cancelled else 600 + (i % 50),
                600 + (i % 50),
                delay,
                None if cancelled else 2359 if i == 5 else 900 + (i % 50),
                900 + (i % 50),
                None if cancelled else (delay or 0.0) + 3.0,
                ["UA", "AA", "B6"][i % 3],
                100 + i,
                None if i == 9 else f"N{i:03d}UA",
                ["EWR", "JFK"][i % 2],
                dt.datetime(2013, 1, 1 + i % 2, 6),
                i % 50,
                f"2013-01-0{1 + i % 2}",
            )
        )
    schema = (
        "year int, month int, day int, dep_time int, sched_dep_time int, dep_delay double, arr_time int, "
        "sched_arr_time int, arr_delay double, carrier string, flight int, tailnum string, origin string, "
        "time_hour timestamp, minute int, date string"
    )
    return spark.createDataFrame(rows, schema)


def test_scaled_rows_have_unique_keys_and_close_distributions(spark: Any) -> None:
    base = _flights(spark)
    factor = 4
    scaled = scale_flights(base, factor)
    assert scaled.columns == base.columns
    assert dict(scaled.dtypes) == dict(base.dtypes)
    pdf = scaled.toPandas()
    real = base.toPandas()

    assert len(pdf) == factor * len(real)
    assert not pdf.duplicated(subset=KEYS).any()
    assert pdf["flight"].max() < factor * FLIGHT_OFFSET
    # replica 0 is the real data untouched
    first = pdf[pdf["flight"] < FLIGHT_OFFSET].sort_values("flight").reset_index(drop=True)
    assert first.equals(real.sort_values("flight").reset_index(drop=True))
    # tail numbers are new per replica (the null one stays null), each replica's planes exist
    tails = pdf["tailnum"].dropna()
    assert tails.is_unique and pdf["tailnum"].isna().sum() == factor
    planes = spark.createDataFrame([(f"N{i:03d}UA", 150) for i in range(60)], "tailnum string, seats int")
    assert set(tails) <= {r["tailnum"] for r in scale_planes(planes, factor).collect()}

    # delays moved by at most MAX_JITTER minutes, cancelled stay cancelled, clock times stay valid
    merged = pdf.assign(key=pdf["flight"] % FLIGHT_OFFSET).merge(
        real.rename(columns={"arr_delay": "real_arr"})[["flight", "real_arr"]], left_on="key", right_on="flight"
    )
    shift = (merged["arr_delay"] - merged["real_arr"]).dropna()
    assert shift.abs().max() <= MAX_JITTER and shift.abs().max() > 0
    assert pdf["arr_delay"].isna().sum() == factor * real["arr_delay"].isna().sum()
    for col in ("dep_time", "arr_time"):
        t = pdf[col].dropna()
        assert ((t % 100) < 60).all() and (t < 2400).all()
    # the same distributions: the late share (>= 15 min) and the mean delay barely move
    assert abs(pdf["arr_delay"].mean() - real["arr_delay"].mean()) <= 1.0
    assert abs((pdf["arr_delay"] >= 15).mean() - (real["arr_delay"] >= 15).mean()) <= 0.05
    assert (pdf.groupby("carrier").size() == factor * real.groupby("carrier").size()).all()
