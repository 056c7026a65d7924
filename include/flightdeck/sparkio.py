"""Spark session and the one atomic partition writer every job uses.

A partition is written to a staging directory, then swapped into place with two
renames through Hadoop's FileSystem API (local folders and ``s3a://`` alike). A
reader only ever sees a committed partition (with ``_SUCCESS``) or none; a job
killed mid-write leaves the previous version in place and a ``_staging``
leftover that the next write of the same table cleans up.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.lake import COMMIT_MARKER, Lake, parse_date

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def build_session(app_name: str, conf: dict[str, str] | None = None) -> SparkSession:
    """The session a job runs in; the master comes from spark-submit (or the caller)."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, jvm


def write_partition(df: DataFrame, lake: Lake, zone: str, table: str, date: dt.date | str, fmt: str = "parquet") -> str:
    """Replace exactly one date partition of a table, atomically; returns its path."""
    final = lake.partition(zone, table, date)
    table_path = lake.table(zone, table)
    token = uuid.uuid4().hex[:12]
    staging = f"{table_path}/_staging/{final.rsplit('/', 1)[-1]}-{token}"
    df.write.mode("error").format(fmt).save(staging)
    fs, jvm = _fs(spark=df.sparkSession, path=table_path)
    path_cls = jvm.org.apache.hadoop.fs.Path
    if not fs.exists(path_cls(f"{staging}/{COMMIT_MARKER}")):
        raise RuntimeError(f"staged partition {staging} has no {COMMIT_MARKER}; not committing")
    trash = f"{table_path}/_trash/{final.rsplit('/', 1)[-1]}-{token}"
    moved_old = False
    if fs.exists(path_cls(final)):
        fs.mkdirs(path_cls(f"{table_path}/_trash"))
        if not fs.rename(path_cls(final), path_cls(trash)):
            raise RuntimeError(f"could not move the previous partition {final} aside")
        moved_old = True
    if not fs.rename(path_cls(staging), path_cls(final)):
        if moved_old:
            fs.rename(path_cls(trash), path_cls(final))
        raise RuntimeError(f"could not commit {staging} to {final}")
    if moved_old:
        fs.delete(path_cls(trash), True)
    log.info("committed %s", final)
    return final


def write_table(df: DataFrame, lake: Lake, zone: str, table: str, fmt: str = "parquet") -> str:
    """Replace an unpartitioned table (e.g. a reference table) atomically."""
    target = lake.table(zone, table)
    parent, name = target.rsplit("/", 1)
    token = uuid.uuid4().hex[:12]
    staging = f"{parent}/_staging/{name}-{token}"
    df.write.mode("error").format(fmt).save(staging)
    fs, jvm = _fs(spark=df.sparkSession, path=parent)
    path_cls = jvm.org.apache.hadoop.fs.Path
    trash = f"{parent}/_trash/{name}-{token}"
    moved_old = False
    if fs.exists(path_cls(target)):
        fs.mkdirs(path_cls(f"{parent}/_trash"))
        fs.rename(path_cls(target), path_cls(trash))
        moved_old = True
    if not fs.rename(path_cls(staging), path_cls(target)):
        if moved_old:
            fs.rename(path_cls(trash), path_cls(target))
        raise RuntimeError(f"could not commit {staging} to {target}")
    if moved_old:
        fs.delete(path_cls(trash), True)
    return target


def read_partitions(
    spark: SparkSession, lake: Lake, zone: str, table: str, dates: Sequence[dt.date | str], fmt: str = "parquet"
) -> DataFrame:
    """Read committed partitions of a table, with a ``date`` column (string YYYY-MM-DD).

    Raises:
        FileNotFoundError: a requested partition is not committed (names which).
    """
    wanted = sorted({parse_date(d) for d in dates})
    missing = [d.isoformat() for d in wanted if not lake.is_committed(zone, table, d)]
    if missing:
        raise FileNotFoundError(
            f"{zone}/{table}: partitions {missing} are not committed in {lake.table(zone, table)}; "
            "run the upstream stage for those dates first"
        )
    paths = [lake.partition(zone, table, d) for d in wanted]
    return spark.read.format(fmt).option("basePath", lake.table(zone, table)).load(paths)


def read_available_partitions(
    spark: SparkSession, lake: Lake, zone: str, table: str, first: dt.date, last: dt.date
) -> tuple[DataFrame | None, list[dt.date]]:
    """Read every committed partition between first and last (inclusive); None when there is none."""
    dates = [d for d in lake.committed_partitions(zone, table) if first <= d <= last]
    if not dates:
        return None, []
    return read_partitions(spark, lake, zone, table, dates), dates
