"""Features: bronze entity rows + as-of time-series joins + reference lookups -> model-ready rows.

Everything is driven by the config's ``features`` section. The as-of join is point-in-time
correct: an entity row gets the latest time-series row whose time is at or before its
``event_ts`` and within ``max_lag_hours`` of it; a row from after ``event_ts`` is never
joined, however close. It is computed without a range join: entity and time-series rows
are unioned, ordered by time per join key, and each entity row takes the last time-series
row seen so far (a whole row, as a struct, so columns never mix observations).

Rolling aggregates are point in time by day: the value of an event on local date E is
known from day E + ``known_after_days``, so a row on day D with a window of w days sees
the days [D - known_after_days - w + 1, D - known_after_days] and never its own day. They
are computed without a row-level self-join: entity rows are summed per (group, day), a
range window over the day number adds up the days of each window, and each row joins its
(group, day). A window that reaches a day with no entity data (before the first bronze
partition, or a gap) is null, as is a mean or sum over fewer than ``min_count`` values.
Schedule counts (e.g. departures per origin and hour) cover the row's whole local day:
they count only what the schedule fixes in advance.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flightdeck.core.columns import EVENT_TS, PARTITION
from flightdeck.core.config import AsofJoin, Lookup, PipelineConfig, Rolling, ScheduleCount
from flightdeck.core.errors import FlightdeckError
from flightdeck.data.ingest import local_date
from flightdeck.data.labels import label_events

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

log = logging.getLogger(__name__)

_KIND = "__kind"  # 0 = time-series row, 1 = entity row: at equal times the observation comes first
_TS = "__ts"
_DAY = "__day"  # local date of an entity row as days since 1970-01-01
_EPOCH = dt.date(1970, 1, 1)


class FeatureError(FlightdeckError):
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


def local_day(day_column: str = PARTITION) -> Column:
    """An entity row's local calendar date (its partition, set by ingest) as days since 1970-01-01."""
    from pyspark.sql import functions as F

    return F.unix_date(F.to_date(F.col(day_column)))


def _day_number(day: dt.date) -> int:
    return (day - _EPOCH).days


def _runs(days: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs [first, last] of a set of day numbers."""
    runs: list[tuple[int, int]] = []
    for d in sorted(set(days)):
        if runs and d == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def _window_complete(day: Column, first: int, last: int, runs: Sequence[tuple[int, int]]) -> Column:
    """True where the days [day + first, day + last] all lie in one run of covered days."""
    from pyspark.sql import functions as F

    cond = F.lit(False)
    for a, b in runs:
        cond = cond | day.between(a - first, b - last)
    return cond


def rolling_features(
    rows: DataFrame,
    events: DataFrame,
    rolls: Sequence[Rolling],
    day_column: str = PARTITION,
    covered: Iterable[dt.date] | None = None,
) -> DataFrame:
    """Add every rolling aggregate's columns to ``rows``, point in time by local day.

    Args:
        rows: the rows to featurize (group keys and date columns).
        events: every entity row the windows may read: the days of ``rows`` and the
            history before them, with the columns the values use (bronze columns and the
            label), each row once.
        rolls: the rolling aggregates from the config.
        day_column: the column holding a row's local date (the bronze partition date).
        covered: the local dates whose entity data is complete (committed partitions);
            a window touching any other day is null. None: the dates present in ``events``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not rolls:
        return rows
    source = events.withColumn(_DAY, local_day(day_column))
    if covered is None:
        days = [int(r[0]) for r in source.select(_DAY).distinct().collect() if r[0] is not None]
    else:
        days = [_day_number(d) for d in covered]
    runs = _runs(days)
    out = rows.withColumn(_DAY, local_day(day_column))
    for roll in rolls:
        missing = [c for c in roll.group_by if c not in rows.columns or c not in events.columns]
        if missing:
            raise FeatureError(f"rolling {roll.name!r}: group_by columns {missing} not found; check features.rolling")
        clash = [c for c in roll.outputs if c in out.columns]
        if clash:
            raise FeatureError(f"rolling {roll.name!r} would overwrite columns {clash}; rename it")
        keys = {k: f"__r_{k}" for k in roll.group_by}
        value = F.expr(roll.value).cast("double")
        daily = (
            source.select(*[F.col(k).alias(a) for k, a in keys.items()], F.col(_DAY), value.alias("__v"))
            .groupBy(*keys.values(), _DAY)
            .agg(F.sum("__v").alias("__s"), F.count("__v").alias("__n"))
        )
        cols = []
        for w in roll.windows_days:
            first, last = -(roll.known_after_days + w - 1), -roll.known_after_days
            span = Window.partitionBy(*keys.values()).orderBy(_DAY).rangeBetween(first, last)
            n = F.coalesce(F.sum("__n").over(span), F.lit(0))
            s = F.sum("__s").over(span)
            result = {"mean": s / n, "sum": s, "count": n.cast("double")}[roll.agg]
            if roll.agg != "count":
                result = F.when(n >= roll.min_count, result)
            complete = _window_complete(F.col(_DAY), first, last, runs)
            cols.append(F.when(complete, result).cast("double").alias(f"{roll.name}_{w}d"))
            if roll.count_column:
                cols.append(F.when(complete, n).cast("double").alias(f"{roll.name}_{w}d_n"))
        windowed = daily.select(*keys.values(), F.col(_DAY).alias("__w_day"), *cols)
        cond = out[_DAY] == windowed["__w_day"]
        for k, a in keys.items():
            cond = cond & (out[k] == windowed[a])
        out = out.join(windowed, cond, "left").drop(*keys.values(), "__w_day")
    return out.drop(_DAY)


def schedule_counts(entity: DataFrame, counts: Sequence[ScheduleCount], day_column: str = PARTITION) -> DataFrame:
    """Add, per declared count, the number of entity rows on the row's local date sharing its keys."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    out = entity.withColumn(_DAY, local_day(day_column))
    for count in counts:
        missing = [c for c in count.group_by if c not in entity.columns]
        if missing:
            raise FeatureError(f"count {count.name!r}: group_by columns {missing} not found; check features.counts")
        if count.name in out.columns:
            raise FeatureError(f"count {count.name!r} would overwrite a column; rename it")
        same = Window.partitionBy(_DAY, *count.group_by)
        out = out.withColumn(count.name, F.count(F.lit(1)).over(same).cast("double"))
    return out.drop(_DAY)


@dataclass(frozen=True)
class RollingInputs:
    """What the rolling windows read besides the rows being built.

    ``history``: bronze entity rows of the ``features.lookback_days`` before (and between) the
    dates; ``covered``: the days whose data is complete (a window touching another day is
    null; None: the days present); ``outcomes``: with delayed labels, the latest outcome per
    entity key (:func:`flightdeck.data.labels.latest_outcomes`), counted by arrival day.
    """

    history: DataFrame | None = None
    covered: Iterable[dt.date] | None = None
    outcomes: DataFrame | None = None


def build_features(
    entity_df: DataFrame,
    timeseries: Mapping[str, DataFrame],
    references: Mapping[str, DataFrame],
    cfg: PipelineConfig,
    *,
    carry: Sequence[str] = (),
    rolling: RollingInputs | None = None,
) -> DataFrame:
    """Model-ready rows: passthrough + numeric (double) + categorical (string) + label + ``event_ts``.

    Order: as-of joins, lookups, derived columns, label, rolling aggregates, schedule counts.
    With delayed labels (``dataset.labels``) the label is unknown when a day is built: its
    column is null, and rolling label windows count outcomes by their arrival day.

    Args:
        entity_df: typed bronze entity rows (whole local days).
        timeseries: typed bronze rows per time-series name (cover the lag before the first event).
        references: bronze reference tables per name.
        cfg: the pipeline configuration.
        carry: extra input columns to keep (e.g. ``date`` for a partitioned write).
        rolling: the inputs of the rolling windows besides ``entity_df`` (see :class:`RollingInputs`).
    """
    from pyspark.sql import functions as F

    feats = cfg.features
    if PARTITION not in entity_df.columns:
        # Rows straight from typed columns (not bronze): their local date from the source's rule.
        entity_df = entity_df.withColumn(PARTITION, local_date(cfg.dataset.entity.partition_date))
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
    rolling = rolling or RollingInputs()
    history = rolling.history
    if history is not None and PARTITION not in history.columns:
        history = history.withColumn(PARTITION, local_date(cfg.dataset.entity.partition_date))
    delayed = cfg.dataset.labels is not None
    label = F.lit(None).cast("double") if delayed else F.expr(cfg.label.expression)
    df = df.withColumn(cfg.label.name, label)
    if feats.rolling:
        events = entity_df if history is None else entity_df.unionByName(history.select(*entity_df.columns))
        if not delayed:
            events = events.withColumn(cfg.label.name, F.expr(cfg.label.expression))
        elif rolling.outcomes is None:  # no outcome has arrived yet: every window is empty
            events = events.where(F.lit(False)).withColumn(cfg.label.name, F.lit(None).cast("double"))
        else:
            events = label_events(events, rolling.outcomes, cfg)
        df = rolling_features(df, events, feats.rolling, covered=rolling.covered)
    df = schedule_counts(df, feats.counts)
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
