"""The reference of tests/e2e/test_backfill.py: ingest then build the features of each day, one day at a time.

    python tests/e2e/days_one_by_one.py FIRST LAST

Runs the same jobs the ingest and features DAGs submit (``jobs/ingest.py``,
``jobs/build_features.py``), in day order, in one Spark session, on the lake that
``FLIGHTDECK__LAKE__ROOT`` names (a copy of the e2e lake taken before the backfill).
"""

from __future__ import annotations

import sys

from flightdeck.core.jobargs import load_job
from flightdeck.core.lake import date_range, parse_date


def main(argv: list[str]) -> None:
    ingest, build = load_job("ingest").main, load_job("build_features").main
    for day in date_range(parse_date(argv[0]), parse_date(argv[1])):
        ingest(["--partition", day.isoformat()])
        build(["--partition", day.isoformat()])
        print(f"one by one: {day} ingested and built", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
