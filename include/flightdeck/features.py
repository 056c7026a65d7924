"""Features: bronze entity rows + as-of time-series joins + reference lookups -> model-ready rows.

Everything is driven by the config's ``features`` section. The as-of join is point-in-time
correct: an entity row gets the latest time-series row whose time is at or before its
``event_ts`` and within ``max_lag_hours`` of it; a row from after ``event_ts`` is never
joined, however close. It is computed without a range join: entity and time-series rows
are unioned, ordered by time per join key, and each entity row takes the last time-series
row seen so far (a whole row, as a struct, so columns never mix observations).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from flightdeck.config import AsofJoin, Lookup, PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

EVENT_TS = "event_ts"
_KIND = "__kind"  # 0 = time-series row, 1 = entity row: at equal times the observation comes first
_TS = "__ts"


class FeatureError(ValueError):
    """The feature configuration does not fit the data; the message names what to fix."""


def _dedupe(names: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for n in names:
        seen.setdefault(n, None)
    return list(seen)


def asof_join(entity: DataFrame, series: DataFrame, join: AsofJoin, series_time: str) -> DataFrame:
    """Add ``<prefix><column>`` from the latest ``series`` row at or before ``event_ts`` (within the lag).

    Args:
        entity: rows with ``event_ts`` and the join keys (``join.join_on`` keys).
        series: time-series rows with the join keys (``join.join_on`` values) and columns.
        join: the as-of join from the config.
        series_time: Spark SQL expression giving a series row's time (its ``event_time``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    missing = [c for c in [*join.join_on.values(), *join.columns] if c not in series.columns]
    missing += [c for c in join.join_on if c not in entity.columns]
    if missing:
        raise FeatureError(f"as-of join with {join.source!r}: columns {missing} not found; check features.asof_joins")
    outputs = [f"{join.prefix}{c}" for c in join.columns]
    clash = [c for c in outputs if c in entity.columns]
    if clash:
        raise FeatureError(f"as-of join with {join.source!r} would overwrite columns {clash}; set another prefix")
    obs = f"__asof_{join.source}"
    right = series.select(
        *[F.col(s).alias(e) for e, s in join.join_on.items()],
        F.struct(F.expr(series_time).alias(_TS), *[F.col(c) for c in join.columns]).alias(obs),
    ).where(F.col(f"{obs}.{_TS}").isNotNull())
    right = right.select(*join.join_on.keys(), F.col(f"{obs}.{_TS}").alias(_TS), F.lit(0).alias(_KIND), obs)
    left = entity.withColumn(_TS, F.col(EVENT_TS)).withColumn(_KIND, F.lit(1))
    both = left.unionByName(right, allowMissingColumns=True)
    upto = (
        Window.partitionBy(*join.join_on.keys())
        .orderBy(F.col(_TS).asc_nulls_first(), F.col(_KIND))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = F.last(F.col(obs), ignorenulls=True).over(upto)
    lag_seconds = round(join.max_lag_hours * 3600)
    fresh = F.expr(f"unix_seconds({obs}.{_TS})") > F.expr(f"unix_seconds({EVENT_TS})") - F.lit(lag_seconds)
    joined = both.withColumn(obs, latest).where(F.col(_KIND) == 1)
    return joined.select(
        *entity.columns,
        *[F.when(fresh, F.col(f"{obs}.{c}")).alias(f"{join.prefix}{c}") for c in join.columns],
    )


def lookup(entity: DataFrame, reference: DataFrame, look: Lookup) -> DataFrame:
    """Left-join static attributes from a reference table, renamed as configured (one match at most)."""
    from pyspark.sql import functions as F

    missing = [c for c in [*look.join_on.values(), *look.columns] if c not in reference.columns]
    missing += [c for c in look.join_on if c not in entity.columns]
    if missing:
        raise FeatureError(f"lookup in {look.source!r}: columns {missing} not found; check features.lookups")
    clash = [c for c in look.columns.values() if c in entity.columns]
    if clash:
        raise FeatureError(f"lookup in {look.source!r} would overwrite columns {clash}; rename them")
    keys = {e: f"__lk_{e}" for e in look.join_on}
    right = reference.select(
        *[F.col(r).alias(keys[e]) for e, r in look.join_on.items()],
        *[F.col(src).alias(dst) for src, dst in look.columns.items()],
    ).dropDuplicates(list(keys.values()))
    cond = None
    for e, k in keys.items():
        c = entity[e] == right[k]
        cond = c if cond is None else cond & c
    return entity.join(F.broadcast(right), cond, "left").drop(*keys.values())


def build_features(
    entity_df: DataFrame,
    timeseries: Mapping[str, DataFrame],
    references: Mapping[str, DataFrame],
    cfg: PipelineConfig,
    carry: Sequence[str] = (),
) -> DataFrame:
    """Model-ready rows: passthrough + numeric (double) + categorical (string) + label + ``event_ts``.

    Args:
        entity_df: typed bronze entity rows.
        timeseries: typed bronze rows per time-series name (cover the lag before the first event).
        references: bronze reference tables per name.
        cfg: the pipeline configuration.
        carry: extra input columns to keep (e.g. ``date`` for a partitioned write).
    """
    from pyspark.sql import functions as F

    feats = cfg.features
    df = entity_df.withColumn(EVENT_TS, F.expr(cfg.dataset.entity.event_time).cast("timestamp"))
    for join in feats.asof_joins:
        if join.source not in timeseries:
            raise FeatureError(f"as-of join needs time series {join.source!r}; have {sorted(timeseries)}")
        series_time = cfg.dataset.timeseries_named(join.source).event_time
        df = asof_join(df, timeseries[join.source], join, series_time)
    for look in feats.lookups:
        if look.source not in references:
            raise FeatureError(f"lookup needs reference table {look.source!r}; have {sorted(references)}")
        df = lookup(df, references[look.source], look)
    for name, expression in feats.derived.items():
        df = df.withColumn(name, F.expr(expression))
    df = df.withColumn(cfg.label.name, F.expr(cfg.label.expression))
    columns = _dedupe([*feats.passthrough, *feats.numeric, *feats.categorical, cfg.label.name, EVENT_TS, *carry])
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FeatureError(f"feature columns {missing} are neither input, joined nor derived; check features")
    numeric, categorical = set(feats.numeric), set(feats.categorical)
    return df.select(
        *[
            F.col(c).cast("double").alias(c)
            if c in numeric
            else F.col(c).cast("string").alias(c)
            if c in categorical
            else F.col(c)
            for c in columns
        ]
    )
