"""Ingest landing files into bronze, quarantine and the ingest ledger, one date partition at a time.

    spark-submit jobs/ingest.py --partition 2013-01-01..2013-01-31 [--config PATH] [--run-key K]
                                [--refresh-reference]

What is written where, and when the run fails (exit 2): see flightdeck.data.ingest_run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from flightdeck.core.jobargs import parser, partitions, run, setup
from flightdeck.data.ingest_run import ingest_range, raise_for_failures
from flightdeck.data.sparkio import build_session


def main(argv: Sequence[str]) -> None:
    """Parse arguments, ingest the requested dates, hand the result on, fail on bad partitions."""
    p = parser("ingest", __doc__.splitlines()[0] if __doc__ else "ingest")
    p.add_argument("--refresh-reference", action="store_true", help="re-ingest the reference tables from landing")
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-ingest")
    result = ingest_range(spark, cfg, lake, dates, refresh_reference=args.refresh_reference)
    result.seconds = round(time.monotonic() - started, 1)  # the job's own time, its Spark session included
    result.cpu_seconds = round(time.process_time(), 1)  # this (driver) process; executors are not counted
    result.emit(lake, args.run_key)
    raise_for_failures(result)


if __name__ == "__main__":
    sys.exit(run(main, None))
