"""Build the feature partitions of the entity from bronze, one date partition per day.

    spark-submit jobs/build_features.py --partition 2013-01-01..2013-01-31 [--config PATH] [--run-key K]

Which bronze partitions are read and how the features are written: see flightdeck.data.feature_run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from flightdeck.core.jobargs import parser, partitions, run, setup
from flightdeck.data.feature_run import build_range, read_feature_inputs
from flightdeck.data.sparkio import build_session


def main(argv: Sequence[str]) -> None:
    """Parse arguments, read bronze, build features over the range, write one partition per date."""
    args = parser("build_features", "Build feature partitions from bronze.").parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-build-features")
    inputs = read_feature_inputs(spark, cfg, lake, dates)
    result = build_range(spark, cfg, lake, inputs, dates)
    result.seconds = round(time.monotonic() - started, 1)  # the job's own time, its Spark session included
    result.cpu_seconds = round(time.process_time(), 1)  # this (driver) process; executors are not counted
    result.emit(lake, args.run_key)


if __name__ == "__main__":
    sys.exit(run(main, None))
