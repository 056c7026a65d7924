"""Build the feature partitions of the entity from bronze, one date partition per day.

    spark-submit jobs/build_features.py --partition 2013-01-01..2013-01-31 [--config PATH] [--run-key K]

For the requested dates it reads the bronze entity partitions (all must be committed), the
committed bronze time-series partitions from the day before the first date to the last
(as-of joins look back into the previous evening), the committed bronze entity partitions
of the ``features.lookback_days`` before the first date and between the dates (inputs of the
rolling windows only; a window reaching a day that is not committed is null) and the bronze
reference tables, builds the features once over the whole range, and writes
``features/<entity>/date=D`` for every date with one Spark write (``write_partitions``: each
date replaced atomically, a date without rows committed empty). Rows are sorted within each
date on every column, so a rerun writes byte-identical Parquet files.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.core.errors import MissingPartition
from flightdeck.core.jobargs import emit_result, parser, partitions, run, setup
from flightdeck.core.lake import Lake
from flightdeck.data.features import EVENT_TS, build_features
from flightdeck.data.ingest import read_reference_tables
from flightdeck.data.sparkio import build_session, read_available_partitions, read_partitions, write_partitions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("flightdeck.jobs.build_features")


def read_history(
    spark: SparkSession, lake: Lake, table: str, dates: Sequence[dt.date], lookback_days: int
) -> tuple[DataFrame | None, list[dt.date]]:
    """Committed bronze entity partitions the rolling windows read besides ``dates``, and their dates.

    That is every day from ``lookback_days`` before the first date to the last date that is
    not itself being built. Missing days are logged; their windows are null.
    """
    if lookback_days <= 0:
        return None, []
    first = dates[0] - dt.timedelta(days=lookback_days)
    wanted = {first + dt.timedelta(days=i) for i in range((dates[-1] - first).days + 1)} - set(dates)
    found = [d for d in lake.committed_partitions("bronze", table) if d in wanted]
    absent = sorted(d.isoformat() for d in wanted - set(found))
    if absent:
        log.warning(
            "bronze/%s has no partition for %d history days (%s..%s); rolling windows over them are null",
            table,
            len(absent),
            absent[0],
            absent[-1],
        )
    if not found:
        return None, []
    return read_partitions(spark, lake, "bronze", table, found), found


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
    history, covered = read_history(spark, lake, entity.name, dates, cfg.features.lookback_days)
    timeseries = {}
    coverage: dict[str, list[str]] = {}
    first = dates[0] - dt.timedelta(days=1)
    for join in cfg.features.asof_joins:
        df, found = read_available_partitions(spark, lake, "bronze", join.source, first, dates[-1])
        if df is None:
            raise MissingPartition(
                f"no committed bronze/{join.source} partition between {first} and {dates[-1]}; ingest them first"
            )
        wanted = set(dates) | {d - dt.timedelta(days=1) for d in dates}
        timeseries[join.source] = df.drop("date")
        coverage[join.source] = [d.isoformat() for d in found if d in wanted]
        absent = sorted(d.isoformat() for d in set(dates) - set(found))
        if absent:
            log.warning("bronze/%s has no partition for %s; their as-of features will be null", join.source, absent)
    references = read_reference_tables(spark, lake, sorted({look.source for look in cfg.features.lookups}))

    features = build_features(
        entity_df, timeseries, references, cfg, carry=["date"], history=history, covered=[*dates, *covered]
    )
    slices = max(1, min(len(dates), 2 * spark.sparkContext.defaultParallelism))
    # A total order within each date (every column breaks ties): byte-identical files on rerun.
    order = ["date", EVENT_TS, *[c for c in features.columns if c not in ("date", EVENT_TS)]]
    features = features.repartition(slices, "date").sortWithinPartitions(*order)
    # One pass: the rows are built and written once (no cache); the counts come from the
    # committed files afterwards (Parquet footers, no data read).
    write_partitions(features, lake, "features", entity.name, dates)
    written = read_partitions(spark, lake, "features", entity.name, dates)
    counts = {r["date"]: int(r["n"]) for r in written.groupBy("date").agg(F.count(F.lit(1)).alias("n")).collect()}
    log.info(
        "built %d feature rows for %d dates in %.1fs", sum(counts.values()), len(dates), time.monotonic() - started
    )
    for date in dates:
        log.info("features %s: %d rows", date, counts.get(date.isoformat(), 0))
    result: dict[str, Any] = {
        "job": "build_features",
        "table": f"features/{entity.name}",
        "partitions": [d.isoformat() for d in dates],
        "rows": {d.isoformat(): counts.get(d.isoformat(), 0) for d in dates},
        "timeseries_partitions": coverage,
        "history_partitions": [d.isoformat() for d in covered],
        "seconds": round(time.monotonic() - started, 1),
    }
    emit_result(result, lake, args.run_key, "build_features")


if __name__ == "__main__":
    sys.exit(run(main, None))
