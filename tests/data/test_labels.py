"""Delayed labels: outcomes from their own source, attached by key and counted from their arrival."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightdeck.core.config import ConfigError, PipelineConfig, load_config
from flightdeck.data import labels
from flightdeck.data.features import RollingInputs, build_features

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
ENTITY = "dteday date, hr string, temp double, date date"
OUTCOMES = "dteday date, hr string, cnt int, known_at timestamp, date date"


def _config(tmp_path: Path, edit: Any = None) -> PipelineConfig:
    raw = yaml.safe_load((ROOT / "include" / "config" / "bikes.yaml").read_text())
    entity = raw["dataset"]["entity"]
    entity["columns"] = [c for c in entity["columns"] if c["name"] not in ("casual", "registered", "cnt")]
    entity["row_rules"] = {}
    raw["dataset"]["labels"] = {
        "name": "outcomes",
        "columns": [
            {"name": "dteday", "type": "date", "required": True},
            {"name": "hr", "type": "string", "required": True},
            {"name": "cnt", "type": "int", "required": True},
            {"name": "known_at", "type": "timestamp", "required": True},
        ],
        "keys": ["dteday", "hr"],
        "partition_date": {"timestamp": "known_at", "timezone": "UTC"},
        "event_time": "known_at",
        "join_on": {"dteday": "dteday", "hr": "hr"},
    }
    raw["features"] = {
        "derived": {"hour": "CAST(regexp_extract(hr, '^([0-9]+)', 1) AS INT)"},
        "rolling": [{"name": "demand", "group_by": ["hr"], "value": "rentals", "windows_days": [3], "min_count": 1}],
        "numeric": ["temp", "hour", "demand_3d"],
        "passthrough": ["dteday", "hr"],
    }
    if edit:
        edit(raw)
    path = tmp_path / "delayed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, environ={})


def _day(d: int) -> dt.date:
    return dt.date(2011, 3, d)


def _at(d: int, hour: int = 6) -> dt.datetime:
    return dt.datetime.combine(_day(d), dt.time(hour))


def test_latest_outcome_per_key_and_known_by(spark: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rows = spark.createDataFrame(
        [
            (_day(1), "1am", 10, _at(3), _day(3)),
            (_day(1), "1am", 12, _at(4), _day(4)),  # a correction, known later: it wins
            (_day(2), "1am", 7, _at(4), _day(4)),
        ],
        OUTCOMES,
    )
    got = {(r["dteday"], r["cnt"]) for r in labels.latest_outcomes(rows, cfg).collect()}
    assert got == {(_day(1), 12), (_day(2), 7)}
    early = {(r["dteday"], r["cnt"]) for r in labels.latest_outcomes(rows, cfg, known_by=_day(3)).collect()}
    assert early == {(_day(1), 10)}


def test_outcomes_attach_by_key_and_missing_ones_stay_null(spark: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    features = spark.createDataFrame(
        [(_day(1), "1am", 1.0, None), (_day(2), "1am", 2.0, None)],
        "dteday date, hr string, temp double, rentals double",
    )
    outcomes = labels.latest_outcomes(spark.createDataFrame([(_day(1), "1am", 10, _at(3), _day(3))], OUTCOMES), cfg)
    got = {r["dteday"]: r["rentals"] for r in labels.attach_outcomes(features, outcomes, cfg).collect()}
    assert got == {_day(1): 10.0, _day(2): None}
    with pytest.raises(labels.LabelError, match=r"lack the entity keys \['hr'\]"):
        labels.attach_outcomes(features.drop("hr"), outcomes, cfg)


def test_rolling_label_windows_count_outcomes_from_their_arrival(spark: Any, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    # One row an hour "1am" a day on days 1..6; each outcome arrives two days after its event.
    entity = spark.createDataFrame([(_day(d), "1am", 5.0, _day(d)) for d in range(1, 7)], ENTITY)
    arrived = spark.createDataFrame([(_day(d), "1am", 10 * d, _at(d + 2), _day(d + 2)) for d in range(1, 5)], OUTCOMES)
    today = entity.where(entity.dteday == _day(6))
    history = entity.where(entity.dteday < _day(6))
    rolling = RollingInputs(
        history=history, covered=[_day(d) for d in range(1, 7)], outcomes=labels.latest_outcomes(arrived, cfg)
    )
    (row,) = build_features(today, {}, {}, cfg, rolling=rolling).collect()
    assert row["rentals"] is None  # unknown when the day is built
    # Day 6 sees arrivals of days 3..5: the outcomes of events 1, 2 and 3 (10, 20, 30), never
    # the outcomes of its own window's events (4, 5: not arrived).
    assert row["demand_3d"] == pytest.approx(20.0)
    nothing = RollingInputs(history=history, covered=[_day(d) for d in range(1, 7)], outcomes=None)
    (empty,) = build_features(today, {}, {}, cfg, rolling=nothing).collect()
    assert empty["demand_3d"] is None


def test_label_source_config_is_checked(tmp_path: Path) -> None:
    def shares_a_column(raw: dict[str, Any]) -> None:
        raw["dataset"]["labels"]["columns"].append({"name": "temp", "type": "double"})

    with pytest.raises(ConfigError, match=r"labels: columns \['temp'\] are also entity columns"):
        _config(tmp_path, shares_a_column)

    def keys_not_kept(raw: dict[str, Any]) -> None:
        raw["features"]["passthrough"] = ["dteday"]

    with pytest.raises(ConfigError, match=r"features\.passthrough: add \['hr'\]"):
        _config(tmp_path, keys_not_kept)
