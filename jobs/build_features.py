"""Build the feature partitions of the entity from bronze, one date partition per day.

    spark-submit jobs/build_features.py --partition 2013-01-01..2013-01-31 [--config PATH] [--run-key K]

For the requested dates it reads the bronze entity partitions (all must be committed), the
committed bronze time-series partitions from the day before the first date to the last
(as-of joins look back into the previous evening) and the bronze reference tables, builds
the features once over the whole range, and writes ``features/<entity>/date=D`` for every
date with one Spark write (``write_partitions``: each date replaced atomically, a date
without rows committed empty; a rerun gives the same result).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from flightdeck.features import EVENT_TS, build_features
from flightdeck.ingest import read_reference_tables
from flightdeck.jobargs import emit_result, parser, partitions, run, setup
from flightdeck.sparkio import build_session, read_available_partitions, read_partitions, write_partitions

log = logging.getLogger("flightdeck.jobs.build_features")


def main(argv: Sequence[str]) -> None:
    """Parse arguments, read bronze, build features over the range, write one partition per date."""
    from pyspark.sql import functions as F

    args = parser("build_features", "Build feature partitions from bronze.").parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    started = time.monotonic()
    spark = build_session("flightdeck-build-features")
    entity = cfg.dataset.entity

    entity_df = read_partitions(spark, lake, "bronze", entity.name, dates)
    timeseries = {}
    coverage: dict[str, list[str]] = {}
    first = dates[0] - dt.timedelta(days=1)
    for join in cfg.features.asof_joins:
        df, found = read_available_partitions(spark, lake, "bronze", join.source, first, dates[-1])
        if df is None:
            raise FileNotFoundError(
                f"no committed bronze/{join.source} partition between {first} and {dates[-1]}; ingest them first"
            )
        wanted = set(dates) | {d - dt.timedelta(days=1) for d in dates}
        timeseries[join.source] = df.drop("date")
        coverage[join.source] = [d.isoformat() for d in found if d in wanted]
        absent = sorted(d.isoformat() for d in set(dates) - set(found))
        if absent:
            log.warning("bronze/%s has no partition for %s; their as-of features will be null", join.source, absent)
    references = read_reference_tables(spark, lake, sorted({look.source for look in cfg.features.lookups}))

    features = build_features(entity_df, timeseries, references, cfg, carry=["date"])
    slices = max(1, min(len(dates), 2 * spark.sparkContext.defaultParallelism))
    features = features.repartition(slices, "date").sortWithinPartitions("date", EVENT_TS).cache()
    counts = {r["date"]: int(r["n"]) for r in features.groupBy("date").agg(F.count(F.lit(1)).alias("n")).collect()}
    log.info(
        "built %d feature rows for %d dates in %.1fs", sum(counts.values()), len(dates), time.monotonic() - started
    )

    write_partitions(features, lake, "features", entity.name, dates)
    for date in dates:
        log.info("features %s: %d rows", date, counts.get(date.isoformat(), 0))
    features.unpersist()
    result: dict[str, Any] = {
        "job": "build_features",
        "table": f"features/{entity.name}",
        "partitions": [d.isoformat() for d in dates],
        "rows": {d.isoformat(): counts.get(d.isoformat(), 0) for d in dates},
        "timeseries_partitions": coverage,
        "seconds": round(time.monotonic() - started, 1),
    }
    emit_result(result, lake, args.run_key, "build_features")


if __name__ == "__main__":
    sys.exit(run(main, None))
