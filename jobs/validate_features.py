"""Validate feature partitions with Great Expectations; fail when any expectation fails.

    spark-submit jobs/validate_features.py --partition 2013-01-01..2013-01-31 [--config PATH]
                                           [--run-key K] [--engine auto|spark|pandas]

Each date's ``features/<entity>/date=D`` is validated against the suite built from the
config (see flightdeck.validation) and its report written to
``monitoring/validation/D.json``. The range is validated as one Great Expectations batch;
a date is validated on its own only when the batch or its per-date counts call for it
(``flightdeck.validation.validate_range``), so a passing date's report is derived from the
batch. The job exits non-zero (2) naming every failed partition and expectation, after
writing all the reports.
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
from flightdeck.validation import FeatureValidationError, validate_range

log = logging.getLogger("flightdeck.jobs.validate_features")


def report_path(lake: Lake, date: str) -> str:
    """Where the validation report of a feature partition goes."""
    return lake.path("monitoring", "validation", f"{date}.json")


def main(argv: Sequence[str]) -> None:
    """Parse arguments, validate the requested feature partitions, write one report each, fail on failures."""
    p = parser("validate_features", "Validate feature partitions with Great Expectations.")
    p.add_argument(
        "--engine",
        choices=["auto", "spark", "pandas"],
        default="auto",
        help="GX engine: auto (default) uses pandas for batches up to a few hundred thousand rows, else Spark",
    )
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-validate-features")
    table = cfg.dataset.entity.name

    # One read over the range (all partitions must be committed), cached: the batch and any
    # per-date validation read it again.
    features = read_partitions(spark, lake, "features", table, dates).cache()
    keys = [d.isoformat() for d in dates]
    outcome = validate_range(features, cfg, keys, engine=args.engine)
    reports: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for key in keys:
        report = outcome[key]
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
    emit_result(result, lake, args.run_key, "validate_features")
    if failures:
        raise FeatureValidationError("; ".join(failures))


if __name__ == "__main__":
    sys.exit(run(main, None))
