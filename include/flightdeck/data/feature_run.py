"""Feature runs over a range of dates: build ``features/<entity>`` from bronze, and validate it.

:func:`build_range` (``jobs/build_features.py``) reads, for the requested dates, the bronze
entity partitions (all must be committed), the committed bronze time-series partitions from
the day before the first date to the last (as-of joins look back into the previous evening),
the committed bronze entity partitions of the ``features.lookback_days`` before the first
date and between the dates (inputs of the rolling windows only; a window reaching a day that
is not committed is null) and the bronze reference tables, builds the features once over the
whole range (:func:`flightdeck.data.features.build_features`), and writes
``features/<entity>/date=D`` for every date with one Spark write (``write_partitions``: each
date replaced atomically, a date without rows committed empty). Rows are sorted within each
date on every column, so a rerun writes byte-identical Parquet files.

:func:`validate_range_of_features` (``jobs/validate_features.py``) validates each date's
``features/<entity>/date=D`` against the suite built from the config, its row count bounded by
the ingest ledger's recent partitions; its report goes to
``monitoring/validation/features/D.json`` and its Data Docs page to
``monitoring/data_docs/features/D.html`` (and to MLflow when ``MLFLOW_TRACKING_URI`` is set).
The range is validated as one Great Expectations batch; a date is validated on its own only
when the batch or its per-date counts call for it
(:func:`flightdeck.data.validation.validate_range`), so a passing date's report is derived
from the batch. :func:`flightdeck.data.validation.raise_failures` then fails the run naming
every failed partition and expectation, after all the reports are written.

Dependency-complete features (the features DAG): :func:`upstream_needs` names the bronze days
a day's rolling windows read, :func:`upstream_gaps` those not committed yet, and
:func:`poke_upstream` is the DAG's ``wait_for_upstream`` sensor: done when nothing is missing
or, past ``timeouts.upstream_wait_hours``, with the gaps, so :func:`record_feature_status`
marks the day degraded before it is built (``monitoring/feature_status/D.json``, the
asset event, an alert). When a missing day commits, the ingest announces its later ingested
days (:func:`flightdeck.data.landing.dependent_days`), the degraded one among them, and their
rebuild rewrites the status complete.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flightdeck.core import alerts
from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import MissingPartition
from flightdeck.core.lake import Lake, commit_stamp, configured, parse_date, reference_table
from flightdeck.data.documents import (
    BuildFeaturesResult,
    FeatureStatus,
    PartitionVerdict,
    ValidateFeaturesResult,
    read_feature_status,
    write_feature_status,
)
from flightdeck.data.features import EVENT_TS, RollingInputs, build_features
from flightdeck.data.ingest import read_reference_tables
from flightdeck.data.labels import latest_outcomes
from flightdeck.data.sparkio import parallelism, read_available_partitions, read_partitions, write_partitions
from flightdeck.data.validation import (
    EngineChoice,
    PartitionChecks,
    TableCheck,
    check_partitions,
    features_spec,
    publish_data_docs,
    recent_ledger_counts,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureInputs:
    """Everything :func:`build_features` reads for a range of dates, and which partitions it found."""

    entity: DataFrame
    history: DataFrame | None  # entity rows the rolling windows read besides the dates
    covered: list[dt.date]  # the history's dates
    timeseries: dict[str, DataFrame]
    coverage: dict[str, list[str]]  # time series -> partitions read that the as-of joins can use
    references: dict[str, DataFrame]
    # With delayed labels: the latest outcome per entity key arrived in the windows' days.
    outcomes: DataFrame | None = None


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


def read_timeseries(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, dates: Sequence[dt.date]
) -> tuple[dict[str, DataFrame], dict[str, list[str]]]:
    """The committed bronze partitions of every as-of joined time series, from the day before the first date.

    Returns the rows per time series and, per time series, the partitions read that serve the
    dates (a date or the day before one). A date without a partition is logged; its as-of
    features are null.

    Raises:
        MissingPartition: a time series has no committed partition in the window at all.
    """
    timeseries: dict[str, DataFrame] = {}
    coverage: dict[str, list[str]] = {}
    first = dates[0] - dt.timedelta(days=1)
    wanted = set(dates) | {d - dt.timedelta(days=1) for d in dates}
    for join in cfg.features.asof_joins:
        df, found = read_available_partitions(spark, lake, "bronze", join.source, first, dates[-1])
        if df is None:
            raise MissingPartition(
                f"no committed bronze/{join.source} partition between {first} and {dates[-1]}; ingest them first"
            )
        timeseries[join.source] = df.drop("date")
        coverage[join.source] = [d.isoformat() for d in found if d in wanted]
        absent = sorted(d.isoformat() for d in set(dates) - set(found))
        if absent:
            log.warning("bronze/%s has no partition for %s; their as-of features will be null", join.source, absent)
    return timeseries, coverage


def read_feature_inputs(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, dates: Sequence[dt.date]
) -> FeatureInputs:
    """Read the bronze inputs of the features of ``dates`` (see the module docstring for which).

    Raises:
        MissingPartition: an entity partition of the dates, a whole time series or a reference table is missing.
    """
    entity = cfg.dataset.entity.name
    entity_df = read_partitions(spark, lake, "bronze", entity, dates)
    labels = cfg.dataset.labels
    lookback = cfg.features.lookback_days
    # With delayed labels a window's outcomes may belong to events up to max_delay_days older.
    reach = lookback + (labels.max_delay_days if labels and lookback else 0)
    history, covered = read_history(spark, lake, entity, dates, reach)
    timeseries, coverage = read_timeseries(spark, cfg, lake, dates)
    outcomes = None
    if labels is not None and lookback:
        first = dates[0] - dt.timedelta(days=lookback)
        arrived, _ = read_available_partitions(spark, lake, "bronze", labels.name, first, dates[-1])
        if arrived is not None:
            outcomes = latest_outcomes(arrived, cfg)
        else:
            log.warning(
                "no outcomes of %s arrived in %s..%s: rolling label windows are null", labels.name, first, dates[-1]
            )
        # Outcomes are counted by arrival: a day without arrivals is an empty day, not a missing one.
        covered = [first + dt.timedelta(days=i) for i in range((dates[-1] - first).days + 1)]
    return FeatureInputs(
        entity=entity_df,
        history=history,
        covered=covered,
        timeseries=timeseries,
        coverage=coverage,
        references=read_reference_tables(spark, lake, sorted({look.source for look in cfg.features.lookups})),
        outcomes=outcomes,
    )


def build_range(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, inputs: FeatureInputs, dates: Sequence[dt.date]
) -> BuildFeaturesResult:
    """Build the features of ``dates`` once over the range and commit one partition per date; the result."""
    from pyspark.sql import functions as F

    started = time.monotonic()
    entity = cfg.dataset.entity.name
    features = build_features(
        inputs.entity,
        inputs.timeseries,
        inputs.references,
        cfg,
        carry=["date"],
        rolling=RollingInputs(history=inputs.history, covered=[*dates, *inputs.covered], outcomes=inputs.outcomes),
    )
    slices = max(1, min(len(dates), 2 * parallelism(spark)))
    # A total order within each date (every column breaks ties): byte-identical files on rerun.
    order = ["date", EVENT_TS, *[c for c in features.columns if c not in ("date", EVENT_TS)]]
    features = features.repartition(slices, "date").sortWithinPartitions(*order)
    # One pass: the rows are built and written once (no cache); the counts come from the
    # committed files afterwards (Parquet footers, no data read).
    write_partitions(features, lake, "features", entity, dates)
    written = read_partitions(spark, lake, "features", entity, dates)
    counts = {r["date"]: int(r["n"]) for r in written.groupBy("date").agg(F.count(F.lit(1)).alias("n")).collect()}
    log.info(
        "built %d feature rows for %d dates in %.1fs", sum(counts.values()), len(dates), time.monotonic() - started
    )
    for date in dates:
        log.info("features %s: %d rows", date, counts.get(date.isoformat(), 0))
    return BuildFeaturesResult(
        table=f"features/{entity}",
        partitions=[d.isoformat() for d in dates],
        rows={d.isoformat(): counts.get(d.isoformat(), 0) for d in dates},
        timeseries_partitions=inputs.coverage,
        history_partitions=[d.isoformat() for d in inputs.covered],
        seconds=round(time.monotonic() - started, 1),
    )


def validate_range_of_features(
    spark: SparkSession,
    cfg: PipelineConfig,
    lake: Lake,
    features: DataFrame,
    dates: Sequence[dt.date],
    *,
    engine: EngineChoice = "auto",
) -> tuple[ValidateFeaturesResult, PartitionChecks]:
    """Validate the feature partitions of ``dates`` (the shared chain), write the reports, publish the Data Docs.

    ``features`` holds the partitions' rows with their ``date``; not cached here: a batch
    validated on pandas is read twice (the counts, then one Arrow collect), which is cheaper
    than building a cache, and :func:`validate_range` persists it itself when GX runs on Spark.
    """
    started = time.monotonic()
    table = cfg.dataset.entity.name
    keys = [d.isoformat() for d in dates]
    # A feature row per valid entity row: bound the counts by the ledger's recent partitions.
    counts = recent_ledger_counts(spark, lake, cfg, dates).get(table, {})
    checks = check_partitions(
        features, cfg, lake, TableCheck(f"features/{table}", features_spec(cfg), keys, counts), engine=engine
    )
    mlflow_run = publish_data_docs(lake, [checks], f"{keys[0]}..{keys[-1]}", by_suite=False)
    result = ValidateFeaturesResult(
        partitions=keys,
        success=not checks.failures,
        reports={
            key: PartitionVerdict(success=r.success, n_rows=r.n_rows, failed=[f.message for f in r.failed])
            for key, r in checks.reports.items()
        },
        data_docs_run=mlflow_run,
        seconds=round(time.monotonic() - started, 1),
    )
    return result, checks


# --- dependency-complete features: the features DAG's wait and the degraded mark -------------


def upstream_needs(day: dt.date | str, cfg: PipelineConfig) -> dict[str, list[dt.date]]:
    """The bronze days, per table, that the rolling windows of ``day``'s features read.

    The entity's ``features.lookback_days`` days before ``day`` (the same reach by which a late
    day announces its dependants, :func:`flightdeck.data.landing.dependent_days`); days before
    ``calendar.start`` are never ingested, so they are not needed. Outcomes of delayed labels
    are counted by arrival (a day without arrivals is empty, not missing) and the as-of joins
    already tolerate a missing evening, so neither is a need. Pure: no lake is read.
    """
    days = _window(parse_date(day), cfg)[:-1]
    return {cfg.dataset.entity.name: days} if days else {}


def _window(date: dt.date, cfg: PipelineConfig) -> list[dt.date]:
    """``date`` and the ``features.lookback_days`` before it, from ``calendar.start`` on."""
    first = min(max(date - dt.timedelta(days=cfg.features.lookback_days), cfg.calendar.start), date)
    return [first + dt.timedelta(days=i) for i in range((date - first).days + 1)]


def upstream_gaps(lake: Lake, day: dt.date | str, cfg: PipelineConfig) -> dict[str, list[str]]:
    """The needed upstream days of ``day`` whose bronze partition is not committed: day -> tables."""
    gaps: dict[str, list[str]] = {}
    for table, days in upstream_needs(day, cfg).items():
        committed = set(lake.committed_partitions("bronze", table))
        for d in days:
            if d not in committed:
                gaps.setdefault(d.isoformat(), []).append(table)
    return dict(sorted(gaps.items()))


@dataclass(frozen=True)
class UpstreamStatus:
    """One poke of ``wait_for_upstream``: what is missing, and whether to build now."""

    partition: str
    missing: dict[str, list[str]]  # day -> tables
    waiting_since: str
    deadline: str

    @property
    def complete(self) -> bool:
        return not self.missing

    def done(self, now: dt.datetime) -> bool:
        """Build now: nothing missing, or the deadline passed (the build is then degraded)."""
        return self.complete or now >= dt.datetime.fromisoformat(self.deadline)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "complete": self.complete,
            "missing": self.missing,
            "waiting_since": self.waiting_since,
            "deadline": self.deadline,
        }


def upstream_status(lake: Lake, cfg: PipelineConfig, partition: str, waiting_since: dt.datetime) -> UpstreamStatus:
    """The upstream gaps of ``partition`` and the deadline of its wait (``timeouts.upstream_wait_hours``)."""
    deadline = waiting_since + dt.timedelta(hours=cfg.timeouts.upstream_wait_hours)
    return UpstreamStatus(
        partition=parse_date(partition).isoformat(),
        missing=upstream_gaps(lake, partition, cfg),
        waiting_since=waiting_since.isoformat(),
        deadline=deadline.isoformat(),
    )


def poke_upstream(
    partition: str, waiting_since: dt.datetime, now: dt.datetime | None = None
) -> tuple[bool, dict[str, Any]]:
    """The features DAG's sensor: (build now?, the status handed to the build and the mark).

    ``waiting_since`` is when the run started (the wait's clock; a rescheduled sensor keeps
    it); ``now`` defaults to the wall clock, which here measures the wait, not the data.
    """
    cfg, lake = configured()
    status = upstream_status(lake, cfg, partition, waiting_since)
    now = now or dt.datetime.now(dt.UTC)
    done = status.done(now)
    if status.complete:
        log.info("features %s: every upstream day is committed", status.partition)
    elif done:
        log.warning(
            "features %s: waited until %s; building degraded without %s", status.partition, status.deadline,
            ", ".join(status.missing),
        )  # fmt: skip
    else:
        log.info("features %s: waiting until %s for %s", status.partition, status.deadline, ", ".join(status.missing))
    return done, status.to_dict()


def input_stamps(lake: Lake, cfg: PipelineConfig, day: dt.date | str) -> dict[str, str | None]:
    """The commit of every bronze partition the features of ``day`` may read: ``"table/D"`` -> stamp.

    Every daily source (entity, time series, labels) from ``features.lookback_days`` before the
    day (never before ``calendar.start``) to the day, and the reference tables (``"table"``);
    ``None`` for a partition not committed. Any re-commit changes its stamp
    (:func:`flightdeck.core.lake.commit_stamp`), so equal stamps mean the same inputs.
    """
    days = _window(parse_date(day), cfg)
    stamps: dict[str, str | None] = {}
    for source in cfg.dataset.daily_sources:
        for d in days:
            stamps[f"{source.name}/{d.isoformat()}"] = commit_stamp(lake.partition("bronze", source.name, d))
    for ref in cfg.dataset.reference:
        name = reference_table(ref.name)
        stamps[name] = commit_stamp(lake.table("bronze", name))
    return stamps


def record_feature_status(partition: str, upstream: dict[str, Any], run_id: str | None = None) -> dict[str, Any] | None:
    """Before the build: write ``monitoring/feature_status/D.json`` and alert when it is degraded.

    ``upstream`` is the sensor's last status (what is missing as the build starts; a day
    committed during the build may not be read, so it still counts as missing, and its own
    announce rebuilds this day). Written before the build so that a day of the daily chain is
    never seen with features and no status (which is how the bootstrap's history looks, see
    :func:`flightdeck.monitoring.retrain.undecided_days`). Returns the status document, whose
    ``degraded`` and ``missing`` the asset event carries; ``None`` when the partition's last
    build read exactly the bronze commits there are now and passed validation (its inputs are
    unchanged: an out-of-order backfill announces a day once per earlier day it reads, and
    only the announcements that bring a new commit rebuild it).
    """
    cfg, lake = configured()
    day = parse_date(partition).isoformat()
    stamps = input_stamps(lake, cfg, day)
    previous = read_feature_status(lake, day)
    if (
        previous is not None
        and previous.built
        and previous.inputs == stamps
        and lake.is_committed("features", cfg.dataset.entity.name, day)
    ):
        log.info("features %s: inputs unchanged since run %s; nothing to rebuild", day, previous.run)
        return None
    missing = {str(d): list(tables) for d, tables in (upstream.get("missing") or {}).items()}
    needed = sorted(d.isoformat() for days in upstream_needs(partition, cfg).values() for d in days)
    status = FeatureStatus(
        partition=day, degraded=bool(missing), missing=missing, needed=needed, run=run_id, inputs=stamps
    )
    write_feature_status(lake, status)
    if status.degraded:
        days = status.missing_days
        alerts.notify(
            alerts.FEATURES_DEGRADED,
            f"features {status.partition} built degraded: {len(days)} upstream day(s) not committed "
            f"after {cfg.timeouts.upstream_wait_hours:g} h ({_day_span(days)}); they are rebuilt when the days arrive",
            status.model_dump(),
            cfg=cfg,
        )
    return status.model_dump()


def mark_built(partition: str, run_id: str | None = None) -> None:
    """After validation: the status written by ``run_id`` describes a committed, valid build.

    A status rewritten meanwhile by another run is left alone (that run marks its own).
    """
    _, lake = configured()
    status = read_feature_status(lake, partition)
    if status is None or status.run != run_id:
        log.warning(
            "features %s: status belongs to run %s, not %s; not marked built", partition, status and status.run, run_id
        )
        return
    write_feature_status(lake, status.model_copy(update={"built": True}))


def _day_span(days: Sequence[str]) -> str:
    """``first..last`` for a run of consecutive days, else the days listed (at most 5)."""
    if not days:
        return ""
    dates = [parse_date(d) for d in days]
    if (dates[-1] - dates[0]).days == len(dates) - 1 and len(dates) > 2:
        return f"{days[0]}..{days[-1]}"
    return ", ".join(days[:5]) + (f" and {len(days) - 5} more" if len(days) > 5 else "")
