"""Live performance with a delayed label source: day D is judged on the outcomes that ARRIVED on D.

The bikes config (counts delivered days after their hour). Predictions of Mar 5, 6 and 7 are
in the lake; outcomes arrived on Mar 7 (for Mar 5) and on Mar 8 (for Mar 6 and 7, plus one
hour never scored). Day Mar 8 must use exactly the Mar 8 arrivals. The expected RMSE is
worked out by hand below.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import load_config
from flightdeck.core.lake import Lake
from flightdeck.data.sparkio import write_partitions
from flightdeck.monitoring.drift import regression_performance_report
from flightdeck.monitoring.drift_run import arrived_on

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
D5, D6, D7, D8 = (dt.date(2011, 3, d) for d in (5, 6, 7, 8))
# (event day, hour) -> prediction of the champion
PREDICTED = {
    (D5, "1am"): 50.0,
    (D6, "1am"): 10.0,
    (D6, "2am"): 20.0,
    (D7, "1am"): 30.0,
    (D7, "2am"): 40.0,
}


def _lake(spark: Any, root: Path) -> Lake:
    lake = Lake(str(root))
    keys = "dteday date, hr string, season string, weathersit string, event_ts timestamp"
    rows = [
        (d, hr, "Spring", "Clear", dt.datetime.combine(d, dt.time(int(hr[0]))), p, "3", d)
        for (d, hr), p in PREDICTED.items()
    ]
    preds = spark.createDataFrame(rows, f"{keys}, prediction double, model_version string, date date")
    write_partitions(preds, lake, "predictions", "rentals", [D5, D6, D7])
    from pyspark.sql import functions as F

    feats = preds.drop("prediction", "model_version").withColumn("rentals", F.lit(None).cast("double"))
    write_partitions(feats, lake, "features", "rentals", [D5, D6, D7])
    outcomes = [
        (D5, "1am", 999, D7),  # arrived on Mar 7: not Mar 8's business
        (D6, "1am", 13, D8),  # error 10 - 13 = -3
        (D7, "1am", 30, D8),  # error 0
        (D7, "2am", 44, D8),  # error -4
        (D5, "9am", 70, D8),  # an hour never scored: no prediction to judge
    ]
    rows = [(d, hr, 0, n, n, dt.datetime.combine(a, dt.time(6)), a) for d, hr, n, a in outcomes]
    schema = "dteday date, hr string, casual int, registered int, cnt int, known_at timestamp, date date"
    write_partitions(spark.createDataFrame(rows, schema), lake, "bronze", "rental_counts", [D7, D8])
    return lake


def test_day_d_is_judged_on_the_labels_that_arrived_on_d(spark: Any, tmp_path: Path) -> None:
    cfg = load_config(str(ROOT / "include" / "config" / "bikes.yaml"), environ={})
    lake = _lake(spark, tmp_path / "lake")

    got = arrived_on(spark, lake, cfg, D8)
    assert got is not None
    rows, extra = got
    pairs = sorted((r["label"], r["prediction"]) for r in rows)
    # Mar 6 2am was scored but its count has not arrived: it is not judged.
    assert pairs == [(13.0, 10.0), (30.0, 30.0), (44.0, 40.0)]
    assert extra == {
        "labels_arrived_on": "2011-03-08",
        "event_days": {"2011-03-06": 1, "2011-03-07": 2},
        "outcomes_arrived": 4,
        "outcomes_without_prediction": 1,
    }
    report = regression_performance_report(
        [r["label"] for r in rows], [r["prediction"] for r in rows], {"rmse": 2.0}, cfg.drift, data_date=D8
    )
    # By hand: errors -3, 0, -4 -> RMSE sqrt((9 + 0 + 16) / 3) = sqrt(25/3); MAE 7/3.
    assert report["rmse"] == pytest.approx((25 / 3) ** 0.5)
    assert report["mae"] == pytest.approx(7 / 3)
    assert report["date"] == "2011-03-08"

    # Mar 7's arrivals are the Mar 5 hour alone (label 999 against 50).
    rows7, extra7 = arrived_on(spark, lake, cfg, D7) or ([], {})
    assert [(r["label"], r["prediction"]) for r in rows7] == [(999.0, 50.0)]
    assert extra7["event_days"] == {"2011-03-05": 1}
    # A day with no arrivals is not judged.
    assert arrived_on(spark, lake, cfg, dt.date(2011, 3, 9)) is None
