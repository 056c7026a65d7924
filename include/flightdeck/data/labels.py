"""Delayed labels: outcomes that arrive on their own days, counted from their arrival.

With ``dataset.labels`` configured, an entity row's outcome is not in its own file: it
arrives later, from another system, as a row of the label source (partitioned by its
arrival day, ``event_time`` = when it became known). The platform then

- builds features without the label (it is unknown when a day is scored: the column is null);
- feeds rolling label windows with outcomes by their **arrival** day (:func:`label_events`),
  so a day's features see only outcomes that had arrived before it;
- attaches outcomes to feature rows for training, evaluation and live performance
  (:func:`attach_outcomes`), optionally only those known by a given day.

An outcome delivered twice for the same entity key counts once: the latest known wins.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from flightdeck.core.columns import PARTITION
from flightdeck.core.config import LabelSource, PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

KNOWN_TS = "__label_known_ts"
KNOWN_DAY = "__label_known_day"


class LabelError(FlightdeckError):
    """Delayed labels cannot be attached (no label source configured, or a join key is missing)."""


def _source(cfg: PipelineConfig) -> LabelSource:
    if cfg.dataset.labels is None:
        raise LabelError("dataset.labels is not configured: the label comes from the entity's own columns")
    return cfg.dataset.labels


def latest_outcomes(labels: DataFrame, cfg: PipelineConfig, known_by: dt.date | None = None) -> DataFrame:
    """One row per entity key: its latest outcome (known by ``known_by``'s end when given).

    ``labels`` holds bronze rows of the label source with their partition (arrival) column.
    Returns the entity key columns (under the entity's names), the label source's other
    columns, and when the outcome became known (``KNOWN_TS``) and arrived (``KNOWN_DAY``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    src = _source(cfg)
    df = labels.withColumn(KNOWN_TS, F.expr(src.event_time).cast("timestamp")).withColumn(
        KNOWN_DAY, F.to_date(F.col(PARTITION))
    )
    if known_by is not None:
        df = df.where(F.col(KNOWN_DAY) <= F.lit(known_by))
    label_keys = list(src.join_on.values())
    newest = Window.partitionBy(*label_keys).orderBy(F.col(KNOWN_TS).desc_nulls_last(), F.col(KNOWN_DAY).desc())
    others = [c for c in src.column_names if c not in label_keys]
    return (
        df.withColumn("__n", F.row_number().over(newest))
        .where(F.col("__n") == 1)
        .select(
            *[F.col(label_col).alias(entity_col) for entity_col, label_col in src.join_on.items()],
            *others,
            KNOWN_TS,
            KNOWN_DAY,
        )
    )


def attach_outcomes(rows: DataFrame, outcomes: DataFrame, cfg: PipelineConfig) -> DataFrame:
    """``rows`` with the label column computed from their outcome (null where none arrived).

    ``rows`` must hold the entity keys of ``dataset.labels.join_on`` (features keep them as
    passthrough); ``outcomes`` comes from :func:`latest_outcomes`. The label column of
    ``rows``, if any, is replaced; the outcome's arrival stays in ``KNOWN_DAY``.

    Raises:
        LabelError: ``rows`` lacks a join key.
    """
    from pyspark.sql import functions as F

    src = _source(cfg)
    keys = list(src.join_on)
    missing = [k for k in keys if k not in rows.columns]
    if missing:
        raise LabelError(
            f"rows lack the entity keys {missing} that outcomes join on; keep them in features.passthrough"
        )
    base = rows.drop(cfg.label.name) if cfg.label.name in rows.columns else rows
    extra = [c for c in outcomes.columns if c not in keys and c not in base.columns]
    joined = base.join(outcomes.select(*keys, *extra), on=keys, how="left")
    label = F.when(F.col(KNOWN_DAY).isNotNull(), F.expr(cfg.label.expression))
    dropped = [c for c in extra if c not in (KNOWN_DAY, KNOWN_TS)]
    return joined.withColumn(cfg.label.name, label).drop(*dropped)


def label_events(entity_rows: DataFrame, outcomes: DataFrame, cfg: PipelineConfig) -> DataFrame:
    """Entity rows whose outcome arrived, dated by the outcome's **arrival** day, with the label.

    The rows rolling label windows read: a window over days D-w..D-1 counts the outcomes
    that arrived on those days, whatever day their events happened on.
    """
    from pyspark.sql import functions as F

    src = _source(cfg)
    keys = list(src.join_on)
    base = entity_rows.drop(PARTITION) if PARTITION in entity_rows.columns else entity_rows
    extra = [c for c in outcomes.columns if c not in keys and c not in base.columns]
    joined = base.join(outcomes.select(*keys, *extra), on=keys, how="inner")
    return joined.withColumn(cfg.label.name, F.expr(cfg.label.expression)).withColumn(PARTITION, F.col(KNOWN_DAY))


def arrived_labels(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, rows: DataFrame, first: dt.date, known_by: dt.date
) -> tuple[DataFrame, dict[str, int]]:
    """Feature rows of days ``first``..``known_by`` labelled by the outcomes arrived by ``known_by``.

    What training, evaluation and reproduction see with ``dataset.labels``: each row's label
    comes from its latest outcome that arrived by ``known_by`` (the training cut), at most
    ``labels.max_delay_days`` after the row's own day. Rows without such an outcome are
    dropped. Returns the labelled rows (the label source's columns and arrival dropped) and
    the dropped rows per partition (``{"YYYY-MM-DD": n}``, only days that lost rows).
    """
    from pyspark.sql import functions as F

    from flightdeck.data.sparkio import read_available_partitions

    src = _source(cfg)
    arrived, _ = read_available_partitions(spark, lake, "bronze", src.name, first, known_by)
    label = cfg.label.name
    if arrived is None:
        log.warning("no outcomes of %s arrived in %s..%s: every row is unlabelled", src.name, first, known_by)
        attached = rows.withColumn(label, F.lit(None).cast("double")).withColumn(KNOWN_DAY, F.lit(None).cast("date"))
    else:
        attached = attach_outcomes(rows, latest_outcomes(arrived, cfg, known_by), cfg)
    in_time = F.col(KNOWN_DAY) <= F.date_add(F.to_date(F.col(PARTITION)), src.max_delay_days)
    attached = attached.withColumn(label, F.when(in_time, F.col(label)))
    counts = (
        attached.where(F.col(label).isNull())
        .groupBy(F.date_format(F.to_date(F.col(PARTITION)), "yyyy-MM-dd").alias("day"))
        .count()
        .collect()
    )
    unlabelled = {r["day"]: int(r["count"]) for r in sorted(counts, key=lambda r: r["day"])}
    if unlabelled:
        log.info(
            "%d rows without an outcome of %s arrived by %s left out: %s",
            sum(unlabelled.values()), src.name, known_by, unlabelled,
        )  # fmt: skip
    drop = [c for c in (KNOWN_DAY, KNOWN_TS) if c in attached.columns]
    return attached.where(F.col(label).isNotNull()).drop(*drop), unlabelled
