"""Validate feature partitions with Great Expectations; fail when any expectation fails.

    spark-submit jobs/validate_features.py --partition 2013-01-01..2013-01-31 [--config PATH]
                                           [--run-key K] [--engine spark|pandas]

Each date's ``features/<entity>/date=D`` is validated against the suite built from the
config (see flightdeck.validation) and its report written to
``monitoring/validation/D.json``. The job exits non-zero (2) naming every failed
partition and expectation, after writing all the reports.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from flightdeck.jobargs import emit_result, parser, partitions, run, setup
from flightdeck.lake import Lake, write_json
from flightdeck.sparkio import build_session, read_partitions
from flightdeck.validation import FeatureValidationError, validate_partition

log = logging.getLogger("flightdeck.jobs.validate_features")


def report_path(lake: Lake, date: str) -> str:
    """Where the validation report of a feature partition goes."""
    return lake.path("monitoring", "validation", f"{date}.json")


def main(argv: Sequence[str]) -> None:
    """Parse arguments, validate each requested feature partition, write reports, fail on failures."""
    from pyspark.sql import functions as F

    p = parser("validate_features", "Validate feature partitions with Great Expectations.")
    p.add_argument(
        "--engine",
        choices=["spark", "pandas"],
        default="spark",
        help="run expectations on Spark (default) or on the partition collected to pandas (faster for small days)",
    )
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-validate-features")
    table = cfg.dataset.entity.name

    # One read over the range (all partitions must be committed), cached, then one batch per date.
    features = read_partitions(spark, lake, "features", table, dates).cache()
    reports: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for date in dates:
        key = date.isoformat()
        part = features.where(F.col("date") == key).drop("date")
        report = validate_partition(part, cfg, partition=key, engine=args.engine)
        doc = report.as_dict() | {"table": f"features/{table}", "suite": "features"}
        write_json(report_path(lake, key), doc)
        reports[key] = {
            "success": report.success,
            "n_rows": report.n_rows,
            "failed": [f.message for f in report.failed],
        }
        if not report.success:
            failures.append(report.summary(table))
            log.error("%s", report.summary(table))
    features.unpersist()
    result: dict[str, Any] = {
        "job": "validate_features",
        "partitions": [d.isoformat() for d in dates],
        "success": not failures,
        "reports": reports,
        "seconds": round(time.monotonic() - started, 1),
    }
    emit_result(result)
    if args.run_key:
        write_json(lake.run_doc(args.run_key, "validate_features"), result)
    if failures:
        raise FeatureValidationError("; ".join(failures))


if __name__ == "__main__":
    sys.exit(run(main, None))
