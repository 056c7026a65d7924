"""Validate feature partitions with Great Expectations; fail when any expectation fails.

    spark-submit jobs/validate_features.py --partition 2013-01-01..2013-01-31 [--config PATH]
                                           [--run-key K] [--engine auto|spark|pandas]

Reports, Data Docs and how the range is validated: see flightdeck.data.feature_run. The job
exits non-zero (2) naming every failed partition and expectation, after writing all the reports.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from flightdeck.core.jobargs import parser, partitions, run, setup
from flightdeck.data.feature_run import validate_range_of_features
from flightdeck.data.sparkio import build_session, read_partitions
from flightdeck.data.validation import FeatureValidationError, raise_failures


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
    # One read over the range (all partitions must be committed).
    features = read_partitions(spark, lake, "features", cfg.dataset.entity.name, dates)
    result, checks = validate_range_of_features(spark, cfg, lake, features, dates, engine=args.engine)
    result.seconds = round(time.monotonic() - started, 1)  # the job's own time, its Spark session included
    result.cpu_seconds = round(time.process_time(), 1)  # this (driver) process; executors are not counted
    result.emit(lake, args.run_key)
    raise_failures([checks], FeatureValidationError)


if __name__ == "__main__":
    sys.exit(run(main, None))
