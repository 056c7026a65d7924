"""Feature validation: a good partition passes; injected nulls and out-of-range values fail by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.config import load_config
from flightdeck.data.validation import (
    bronze_spec,
    row_count_bounds,
    suite_json,
    validate_partition,
    validate_range,
    write_reports,
)

pytestmark = pytest.mark.spark

SUITE_FILE = Path(__file__).resolve().parents[2] / "include" / "great_expectations" / "features_suite.json"


def _partition(spark: Any, n: int = 60) -> Any:
    cfg = load_config()
    cols = list(dict.fromkeys([*cfg.features.numeric, *cfg.features.categorical, cfg.label.name]))
    rows = []
    for i in range(n):
        values: dict[str, Any] = {c: 1.0 for c in cfg.features.numeric}
        values.update(distance=500.0 + i, dep_hour=float(i % 24), day_of_week=float(1 + i % 7), wx_temp=30.0)
        values.update(carrier="UA", origin="EWR", dest="ORD", late_arrival=i % 2)
        rows.append(tuple(values[c] for c in cols))
    schema = ", ".join(
        f"{c} {'string' if c in cfg.features.categorical else 'int' if c == cfg.label.name else 'double'}" for c in cols
    )
    return spark.createDataFrame(rows, schema)


def test_good_partition_passes(spark: Any) -> None:
    report = validate_partition(_partition(spark), load_config(), partition="2013-01-02")
    assert report.success and report.n_rows == 60 and not report.failed
    assert report.evaluated == report.statistics["evaluated_expectations"] == 14
    assert report.summary() == "features 2013-01-02 passed 14 of 14 expectations (60 rows)"


def test_injected_nulls_and_out_of_range_fail_by_name(spark: Any) -> None:
    from pyspark.sql import functions as F

    df = _partition(spark)
    bad = (
        df.withColumn("wx_temp", F.when(F.col("distance") < 530, F.lit(None)).otherwise(F.col("wx_temp")))
        .withColumn("dep_hour", F.when(F.col("distance") == 500, F.lit(25.0)).otherwise(F.col("dep_hour")))
        .withColumn("carrier", F.when(F.col("distance") == 501, F.lit(None)).otherwise(F.col("carrier")))
    )
    report = validate_partition(bad, load_config(), partition="2013-01-02")
    assert not report.success
    messages = sorted(f.message for f in report.failed)
    assert messages == [
        "carrier has 1 null values (2%)",
        "dep_hour has 1 values outside [0.0, 23.0] (e.g. [25.0])",
        "wx_temp non-null 50% < 80% required",
    ]
    assert report.summary().startswith("features 2013-01-02 failed 3 of 14 expectations: ")


def test_missing_column_and_too_few_rows(spark: Any) -> None:
    report = validate_partition(_partition(spark, n=10).drop("plane_age"), load_config())
    messages = [f.message for f in report.failed]
    assert "row count 10 < 50 required" in messages
    assert "columns missing: ['plane_age']" in messages


def test_suite_file_matches_the_config() -> None:
    assert json.loads(SUITE_FILE.read_text()) == suite_json(load_config())


def _range(spark: Any, sizes: dict[str, int]) -> Any:
    from pyspark.sql import functions as F

    frames = [_partition(spark, n).withColumn("date", F.lit(d)) for d, n in sizes.items()]
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


@pytest.mark.parametrize("engine", ["auto", "spark"])
def test_a_passing_range_gives_one_report_per_partition(spark: Any, engine: str) -> None:
    sizes = {"2013-01-01": 60, "2013-01-02": 55, "2013-01-03": 70}
    reports = validate_range(_range(spark, sizes), load_config(), list(sizes), engine=engine)  # type: ignore[arg-type]
    assert sorted(reports) == list(sizes)
    for d, n in sizes.items():
        r = reports[d]
        assert (r.success, r.n_rows, r.evaluated, r.failed, r.partition) == (True, n, 14, [], d)
        assert r.derived_from is not None and r.derived_from.startswith("range 2013-01-01..2013-01-03")
        assert r.summary() == f"features {d} passed 14 of 14 expectations ({n} rows)"


def test_failing_partitions_of_a_range_are_named(spark: Any) -> None:
    from pyspark.sql import functions as F

    sizes = {"2013-01-01": 60, "2013-01-02": 60, "2013-01-03": 10, "2013-01-04": 60, "2013-01-05": 60}
    df = _range(spark, sizes)
    # 01-02: one null carrier (fails the range too); 01-04: wx_temp 50% filled (the range as a
    # whole is still above 80%); 01-03: 10 rows < 50; 2013-01-06 has no rows at all.
    df = df.withColumn(
        "carrier",
        F.when((F.col("date") == "2013-01-02") & (F.col("distance") == 501), None).otherwise(F.col("carrier")),
    ).withColumn(
        "wx_temp", F.when((F.col("date") == "2013-01-04") & (F.col("distance") < 530), None).otherwise(F.col("wx_temp"))
    )
    reports = validate_range(df, load_config(), [*sizes, "2013-01-06"])
    failed = {d: [f.message for f in r.failed] for d, r in reports.items() if not r.success}
    assert failed == {
        "2013-01-02": ["carrier has 1 null values (2%)"],
        "2013-01-03": ["row count 10 < 50 required"],
        "2013-01-04": ["wx_temp non-null 50% < 80% required"],
        "2013-01-06": ["row count 0 < 50 required"],
    }
    for d in ("2013-01-01", "2013-01-05"):
        assert reports[d].success and reports[d].n_rows == 60 and reports[d].derived_from
    assert reports["2013-01-02"].derived_from is None and reports["2013-01-02"].n_rows == 60


def test_one_partition_is_validated_directly(spark: Any) -> None:
    reports = validate_range(_range(spark, {"2013-01-02": 60}), load_config(), ["2013-01-02"])
    r = reports["2013-01-02"]
    assert r.success and r.n_rows == 60 and r.derived_from is None and r.evaluated == 14


def test_every_report_carries_data_docs(spark: Any) -> None:
    sizes = {"2013-01-01": 60, "2013-01-02": 60, "2013-01-03": 10}
    reports = validate_range(_range(spark, sizes), load_config(), list(sizes))
    for d, r in reports.items():
        assert r.data_docs is not None and r.data_docs.startswith("<!DOCTYPE html>"), d
        assert "expect_column_values_to_not_be_null" in r.data_docs or "values must never be null" in r.data_docs
    assert "validated as part of the batch range 2013-01-01..2013-01-03" in (reports["2013-01-01"].data_docs or "")
    assert "validated as part of the batch" not in (reports["2013-01-03"].data_docs or "")


def test_reports_and_data_docs_land_in_the_lake(spark: Any, tmp_path: Path) -> None:
    from flightdeck.core.lake import Lake

    lake = Lake(str(tmp_path / "lake"))
    reports = validate_range(
        _range(spark, {"2013-01-01": 60, "2013-01-02": 10}), load_config(), ["2013-01-01", "2013-01-02"]
    )
    failures = write_reports(lake, reports, "features/flights")
    assert failures == ["features/flights 2013-01-02 failed 1 of 14 expectations: row count 10 < 50 required"]
    for d in ("2013-01-01", "2013-01-02"):
        doc = json.loads((tmp_path / "lake" / "monitoring" / "validation" / "features" / f"{d}.json").read_text())
        assert doc["partition"] == d and doc["table"] == "features/flights" and "data_docs" not in doc
        assert (tmp_path / "lake" / "monitoring" / "data_docs" / "features" / f"{d}.html").stat().st_size > 10_000


def test_row_count_bounds_follow_recent_partitions() -> None:
    policy = load_config().validation.row_count  # 14 days, at least 7, [0.5, 1.5] x median
    assert row_count_bounds([900] * 6, policy, 50) == (50, None)  # too little history: min_rows only
    assert row_count_bounds([800, 900, 1000, 950, 990, 700, 960], policy, 50) == (475, 1425)
    assert row_count_bounds([60] * 7, policy, 50) == (50, 90)  # never below min_rows


def _bronze(spark: Any, n: int, date: str) -> Any:
    cfg = load_config()
    flight = (2013, 1, 2, 517, 515, 2.0, 830, 819, 11.0)
    rows = [
        (*flight, "UA" if i % 2 else "AA", 1000 + i, "N14228", "EWR", "IAH", 227.0, 1400.0, 5, 15) for i in range(n)
    ]
    schema = ", ".join(f"{c.name} {c.type}" for c in cfg.dataset.entity.columns if c.name != "time_hour")
    return spark.createDataFrame(rows, schema).selectExpr(
        "*", "timestamp'2013-01-02 10:00:00' AS time_hour", f"'{date}' AS date"
    )


def _where(df: Any, date: str, cond: str, column: str, value: Any) -> Any:
    from pyspark.sql import functions as F

    return df.withColumn(column, F.when((F.col("date") == date) & F.expr(cond), value).otherwise(F.col(column)))


def test_bronze_suite_checks_ranges_null_budgets_categories_and_row_counts(spark: Any) -> None:
    cfg = load_config()
    spec = bronze_spec(cfg, cfg.dataset.entity, {"carrier": ["UA", "AA"], "origin": ["EWR"], "dest": ["IAH"]})
    assert spec.name == "bronze_flights" and spec.min_filled["tailnum"] == 0.7  # null budget 0.3
    frames = [_bronze(spark, 100, d) for d in ("2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05")]
    df = frames[0].unionByName(frames[1]).unionByName(frames[2]).unionByName(frames[3])
    # 01-03: a carrier not among the reference keys (ingest would have quarantined it);
    # 01-04: tailnum emptied on 40% of rows (budget 30%); 01-05: an air time of 2000 minutes.
    bad = _where(df, "2013-01-03", "flight < 1003", "carrier", "ZZ")
    bad = _where(bad, "2013-01-04", "flight < 1040", "tailnum", None)
    bad = _where(bad, "2013-01-05", "flight = 1000", "air_time", 2000.0)
    keys = ["2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"]
    bounds = {k: (50, None) for k in keys} | {"2013-01-02": (150, 300)}  # 01-02: 100 rows, recent days had ~200
    reports = validate_range(bad, cfg, keys, spec=spec, row_bounds=bounds)
    failed = {d: [f.message for f in r.failed] for d, r in reports.items() if not r.success}
    assert failed == {
        "2013-01-02": ["row count 100 outside [150, 300] (recent partitions)"],
        "2013-01-03": ["carrier has 3 values (3%) outside its 2 allowed values (e.g. ['ZZ', 'ZZ', 'ZZ'])"],
        "2013-01-04": ["tailnum non-null 60% < 70% required"],
        "2013-01-05": ["air_time has 1 values outside [0.0, 1000.0] (e.g. [2000.0])"],
    }
