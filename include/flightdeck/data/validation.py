"""Data validation with Great Expectations 1.x, suites built in code from the config.

Two kinds of suite, each a :class:`SuiteSpec`:

* ``features`` (:func:`features_spec`): from ``validation`` and ``features``: not-null
  columns, value ranges, minimum as-of join coverage (not-null with ``mostly``), a minimum
  row count, and the presence of every model input and the label;
* ``bronze`` per source (:func:`bronze_spec`): from ``validation.bronze.<source>`` and the
  dataset's columns: every configured column present, required columns non-null, value
  ranges, null budgets (``mostly``), and values of referenced columns within the reference
  table's keys (category sets).

Both bound each partition's row count by the recent committed partitions
(:func:`row_count_bounds`, ``validation.row_count``). The GX context is ephemeral (nothing
is written to a ``great_expectations.yml``, so parallel tasks cannot corrupt a store); the
features suite is also kept as JSON in ``include/great_expectations/`` for people to read.
Every GX run renders its result as Data Docs HTML (:func:`render_data_docs`); the jobs keep
it in the lake (``monitoring/data_docs/<suite>/<date>.html``) and log it to MLflow.

:func:`validate_partition` validates one partition. :func:`validate_range` validates many
as one GX batch and still reports per partition: one Spark aggregation counts, per
partition, the rows and every row that could break an expectation; GX runs on a single
partition only where those counts (or a failure of the range batch they do not locate)
call for it, so a backfill costs one batch, not one per day.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from flightdeck.core.config import PipelineConfig, RowCountPolicy, TimeSeriesSource
from flightdeck.core.errors import FlightdeckError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from flightdeck.core.lake import Lake

log = logging.getLogger(__name__)

Engine = Literal["spark", "pandas"]
EngineChoice = Literal["auto", "spark", "pandas"]
SUITE_NAME = "features"
# Up to this many rows, "auto" collects a batch to pandas (GX on pandas is much faster than on Spark).
PANDAS_MAX_ROWS = 500_000
_ARROW = "spark.sql.execution.arrow.pyspark.enabled"
_DATASOURCE = "flightdeck_spark"
_ASSET = "features"


# (minimum, maximum or None) rows of a partition.
RowBounds = tuple[int, int | None]


class ValidationFailed(FlightdeckError):
    """Partitions failed their suite (or a suite cannot be built); the message names each failure."""


class FeatureValidationError(ValidationFailed):
    """Feature partitions failed their suite."""


class BronzeValidationError(ValidationFailed):
    """Bronze partitions failed their suite; they were not committed."""


@dataclass(frozen=True)
class SuiteSpec:
    """What a suite expects, as plain data (the GX suite is built from it)."""

    name: str
    columns: tuple[str, ...]
    not_null: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # Minimum share of non-null values (as-of join coverage, null budgets).
    min_filled: Mapping[str, float] = field(default_factory=dict)
    # Allowed values (category sets from reference tables).
    value_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    min_rows: int = 1


def features_spec(cfg: PipelineConfig) -> SuiteSpec:
    """The features suite the config asks for."""
    v = cfg.validation
    return SuiteSpec(
        name=SUITE_NAME,
        columns=(*cfg.features.model_inputs, cfg.label.name),
        not_null=tuple(v.not_null),
        ranges=dict(v.ranges),
        min_filled=dict(v.min_join_coverage),
        min_rows=v.min_rows,
    )


def bronze_spec(
    cfg: PipelineConfig, source: TimeSeriesSource, value_sets: Mapping[str, Sequence[str]] | None = None
) -> SuiteSpec:
    """The bronze suite of one source: its columns, required columns, and ``validation.bronze.<source>``.

    Args:
        cfg: the pipeline configuration.
        source: the entity or a time series.
        value_sets: allowed values per column (the reference keys of the source's
            ``references``); used when the suite's ``categories_from_references`` is on.

    Raises:
        ValidationFailed: the source has no bronze suite in the config.
    """
    suite = cfg.validation.bronze.get(source.name)
    if suite is None:
        raise ValidationFailed(f"no bronze suite for {source.name!r}: add validation.bronze.{source.name}")
    sets = {c: tuple(sorted(v)) for c, v in (value_sets or {}).items()} if suite.categories_from_references else {}
    return SuiteSpec(
        name=f"bronze_{source.name}",
        columns=tuple(source.column_names),
        not_null=tuple(source.required_columns),
        ranges=dict(suite.ranges),
        min_filled={c: round(1.0 - share, 6) for c, share in suite.null_budgets.items()},
        value_sets=sets,
        min_rows=suite.min_rows,
    )


def row_count_bounds(history: Sequence[int], policy: RowCountPolicy, min_rows: int) -> RowBounds:
    """Row-count bounds of a partition from the counts of recent committed partitions.

    With at least ``policy.min_history`` counts: ``[min_ratio, max_ratio] x median`` (never
    below ``min_rows``); with fewer, only ``min_rows``.
    """
    if len(history) < policy.min_history:
        return min_rows, None
    median = statistics.median(history)
    return max(min_rows, int(policy.min_ratio * median)), int(policy.max_ratio * median + 0.999999)


def recent_counts(date: str, counts: Mapping[str, int], history_days: int) -> list[int]:
    """The counts of the partitions in the ``history_days`` days before ``date`` (those present)."""
    day = dt.date.fromisoformat(date)
    before = [(day - dt.timedelta(days=i)).isoformat() for i in range(1, history_days + 1)]
    return [counts[d] for d in before if d in counts]


@dataclass
class FailedExpectation:
    """One failed expectation, with a message a person can act on."""

    expectation: str
    column: str | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidationReport:
    """The outcome of validating one feature partition."""

    success: bool
    n_rows: int
    evaluated: int
    failed: list[FailedExpectation]
    statistics: dict[str, Any]
    partition: str | None = None
    derived_from: str | None = None  # set when the report comes from a passing batch of many partitions
    suite: str = SUITE_NAME
    data_docs: str | None = field(default=None, repr=False)  # the result rendered as Data Docs HTML

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (without the HTML)."""
        from dataclasses import asdict

        doc = asdict(self)
        doc.pop("data_docs")
        return doc

    def summary(self, table: str = "features") -> str:
        """E.g. ``features 2024-07-01 failed 2 of 14 expectations: wx_temp non-null 61% < 80% required; ...``."""
        where = f"{table} {self.partition}" if self.partition else table
        if self.success:
            return f"{where} passed {self.evaluated} of {self.evaluated} expectations ({self.n_rows} rows)"
        return f"{where} failed {len(self.failed)} of {self.evaluated} expectations: " + "; ".join(
            f.message for f in self.failed
        )


def build_suite(spec: SuiteSpec, rows: RowBounds | None = None) -> Any:
    """The GX expectation suite of a spec; ``rows`` bounds the row count (default: at least ``min_rows``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    low, high = rows or (spec.min_rows, None)
    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=low, max_value=high),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(spec.columns), exact_match=False),
    ]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in spec.not_null]
    expectations += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi) for c, (lo, hi) in spec.ranges.items()
    ]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=share) for c, share in spec.min_filled.items()]
    expectations += [gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(v)) for c, v in spec.value_sets.items()]
    return gx.ExpectationSuite(name=spec.name, expectations=expectations)


def suite_json(cfg: PipelineConfig) -> dict[str, Any]:
    """The suite as a JSON-ready dict (what ``include/great_expectations/features_suite.json`` holds)."""
    doc: dict[str, Any] = build_suite(features_spec(cfg)).to_json_dict()
    doc.pop("id", None)
    for exp in doc.get("expectations", []):
        exp.pop("id", None)
    return doc


@lru_cache(maxsize=2)
def _batch_definition(engine: Engine = "spark") -> Any:
    """One ephemeral context per process and engine, with a dataframe asset fed per validation."""
    # GX_ANALYTICS_ENABLED is "false" unless the user set it (flightdeck/__init__.py): no phoning home
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source: Any
    if engine == "pandas":
        source = context.data_sources.add_pandas(name=f"{_DATASOURCE}_pandas")
    else:
        source = context.data_sources.add_spark(name=_DATASOURCE)
    asset = source.add_dataframe_asset(name=_ASSET)
    return asset.add_batch_definition_whole_dataframe("whole partition")


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.0f}%"


def _exception_message(info: Any) -> str | None:
    """The first exception message in GX's exception_info (flat, or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception") and info.get("exception_message"):
        return str(info["exception_message"])
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _describe(result: Any) -> FailedExpectation:
    """A human message for one failed expectation result."""
    config = result.expectation_config
    kind = config.type
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    res = dict(result.result or {})
    exc = _exception_message(result.exception_info)
    details = {
        k: res[k] for k in ("observed_value", "element_count", "unexpected_count", "unexpected_percent") if k in res
    }
    if exc:
        message = f"{kind} on {column or 'table'} could not run: {exc}"
    elif kind == "expect_column_values_to_not_be_null" and kwargs.get("mostly") is not None:
        filled = 100.0 - float(res.get("unexpected_percent") or 0.0)
        message = f"{column} non-null {_pct(filled)} < {_pct(100 * float(kwargs['mostly']))} required"
    elif kind == "expect_column_values_to_not_be_null":
        message = f"{column} has {res.get('unexpected_count', '?')} null values ({_pct(res.get('unexpected_percent'))})"
    elif kind == "expect_column_values_to_be_between":
        sample = res.get("partial_unexpected_list", [])[:5]
        message = (
            f"{column} has {res.get('unexpected_count', '?')} values outside "
            f"[{kwargs.get('min_value')}, {kwargs.get('max_value')}] (e.g. {sample})"
        )
    elif kind == "expect_table_row_count_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        bounds = f"< {low} required" if high is None else f"outside [{low}, {high}] (recent partitions)"
        message = f"row count {res.get('observed_value')} {bounds}"
    elif kind == "expect_table_columns_to_match_set":
        observed = set(res.get("observed_value") or [])
        absent = sorted(set(kwargs.get("column_set") or []) - observed)
        message = f"columns missing: {absent}"
        details["missing_columns"] = absent
    elif kind == "expect_column_values_to_be_in_set":
        sample = res.get("partial_unexpected_list", [])[:5]
        message = (
            f"{column} has {res.get('unexpected_count', '?')} values ({_pct(res.get('unexpected_percent'))}) "
            f"outside its {len(kwargs.get('value_set') or [])} allowed values (e.g. {sample})"
        )
    else:
        message = f"{kind} failed on {column or 'table'}: {res}"
    return FailedExpectation(expectation=kind, column=column, message=message, details=details)


def _to_pandas(df: DataFrame) -> Any:
    """Collect a DataFrame to pandas through Arrow (several times faster than row by row)."""
    conf = df.sparkSession.conf
    before = conf.get(_ARROW, "false")
    conf.set(_ARROW, "true")
    try:
        return df.toPandas()
    finally:
        conf.set(_ARROW, before or "false")


def render_data_docs(outcome: Any, title: str) -> str:
    """A GX validation result rendered as a Data Docs page (standalone HTML)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    html: str = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(outcome))
    return html.replace(
        "<title>Data documentation compiled by Great Expectations</title>", f"<title>{title}</title>", 1
    )


def _banner(html: str, note: str) -> str:
    """Data Docs HTML with a note at the top of the page."""
    return html.replace("<body>", f'<body><div class="alert alert-info m-2" role="alert">{note}</div>', 1)


def _run_suite(
    data: Any, spec: SuiteSpec, partition: str | None, engine: Engine, rows: RowBounds | None = None
) -> ValidationReport:
    """Validate a Spark (engine spark) or pandas (engine pandas) DataFrame against a suite."""
    suite = build_suite(spec, rows)
    batch = _batch_definition(engine).get_batch(batch_parameters={"dataframe": data})
    # BASIC carries what a failure message needs (counts, percentages, a sample of bad values);
    # SUMMARY would also count every unexpected value, which costs about a third more per run.
    outcome = batch.validate(suite, result_format={"result_format": "BASIC", "partial_unexpected_count": 5})
    failed = [_describe(r) for r in outcome.results if not r.success]
    n_rows = next(
        (
            int(r.result.get("observed_value", 0))
            for r in outcome.results
            if r.expectation_config.type == "expect_table_row_count_to_be_between" and r.result
        ),
        -1,
    )
    stats = {k: v for k, v in dict(outcome.statistics).items() if v is not None}
    return ValidationReport(
        success=bool(outcome.success),
        n_rows=n_rows,
        evaluated=len(outcome.results),
        failed=failed,
        statistics=stats,
        partition=partition,
        suite=spec.name,
        data_docs=render_data_docs(outcome, f"{spec.name} {partition or ''}".strip()),
    )


def validate_partition(
    df: DataFrame,
    cfg: PipelineConfig,
    partition: str | None = None,
    engine: Engine = "spark",
    spec: SuiteSpec | None = None,
    rows: RowBounds | None = None,
) -> ValidationReport:
    """Validate one partition against a suite (by default the features suite of the config).

    Args:
        df: the partition's rows (a Spark DataFrame).
        cfg: the pipeline configuration.
        partition: the partition key, for messages.
        engine: ``spark`` validates on Spark (any size); ``pandas`` collects the partition
            first, an order of magnitude faster for day-sized partitions (backfills).
        spec: the suite (default :func:`features_spec`).
        rows: the partition's row-count bounds (default: at least the suite's ``min_rows``).
    """
    data: Any = _to_pandas(df) if engine == "pandas" else df
    spec = spec or features_spec(cfg)
    report = _run_suite(data, spec, partition, engine, rows)
    log.info("%s", report.summary(spec.name))
    return report


# --- many partitions as one batch ----------------------------------------------------------

_ROWS = "rows"


def _flag_columns(df: DataFrame, spec: SuiteSpec) -> tuple[list[Any], list[str]]:
    """Aggregations counting, per expectation, the rows that could break it; and the columns absent.

    Counts err on the side of suspicion (NaN counts as null and as out of range), so a
    partition none of them flags passes that expectation in any engine.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    types = {f.name: f.dataType for f in df.schema.fields}
    wanted = {*spec.columns, *spec.not_null, *spec.ranges, *spec.min_filled, *spec.value_sets}
    absent = sorted(c for c in wanted if c not in types)

    def missing(c: str) -> Any:
        col = F.col(c)
        return col.isNull() | F.isnan(col) if isinstance(types[c], (DoubleType, FloatType)) else col.isNull()

    def count_if(cond: Any, name: str) -> Any:
        return F.count(F.when(cond, F.lit(1))).alias(name)

    aggs = [F.count(F.lit(1)).alias(_ROWS)]
    aggs += [count_if(missing(c), f"null:{c}") for c in spec.not_null if c in types]
    aggs += [
        count_if(F.col(c).isNotNull() & ~(F.col(c).between(lo, hi) & ~missing(c)), f"range:{c}")
        for c, (lo, hi) in spec.ranges.items()
        if c in types
    ]
    aggs += [count_if(~missing(c), f"filled:{c}") for c in spec.min_filled if c in types]
    aggs += [
        count_if(F.col(c).isNotNull() & ~F.col(c).isin(*values), f"set:{c}")
        for c, values in spec.value_sets.items()
        if c in types
    ]
    return aggs, absent


def _flags(counts: dict[str, int], spec: SuiteSpec, rows: RowBounds) -> set[tuple[str, str | None]]:
    """The (expectation type, column) pairs a partition's counts say it may fail."""
    n = counts.get(_ROWS, 0)
    flags: set[tuple[str, str | None]] = set()
    low, high = rows
    if n < low or (high is not None and n > high):
        flags.add(("expect_table_row_count_to_be_between", None))
    for c in spec.not_null:
        if counts.get(f"null:{c}", 0):
            flags.add(("expect_column_values_to_not_be_null", c))
    for c in spec.ranges:
        if counts.get(f"range:{c}", 0):
            flags.add(("expect_column_values_to_be_between", c))
    for c, share in spec.min_filled.items():
        # Compared in integers, with a margin, so a share exactly at the threshold is checked by GX.
        if n and counts.get(f"filled:{c}", 0) <= share * n + 1e-6:
            flags.add(("expect_column_values_to_not_be_null", c))
    for c in spec.value_sets:
        if counts.get(f"set:{c}", 0):
            flags.add(("expect_column_values_to_be_in_set", c))
    return flags


def validate_range(
    df: DataFrame,
    cfg: PipelineConfig,
    partitions: Sequence[str],
    *,
    date_col: str = "date",
    engine: EngineChoice = "auto",
    spec: SuiteSpec | None = None,
    row_bounds: Mapping[str, RowBounds] | None = None,
) -> dict[str, ValidationReport]:
    """Validate many partitions as one GX batch; returns one report per partition.

    One aggregation grouped by ``date_col`` counts each partition's rows and the rows that
    could break an expectation. GX validates the whole range once: on pandas (one Arrow
    collect, the aggregation's scan being the other read), or on Spark over ``df`` persisted
    for the batch's many queries (unless the caller cached it) and released afterwards.
    A partition gets its own GX run when its counts flag it (row count outside its bounds, nulls, values out of range
    or outside their set, low coverage) or when the range batch failed an expectation the
    counts do not locate; every other partition passes, with a report derived from the range
    batch (same expectations, its own row count, ``derived_from`` naming the batch, and the
    batch's Data Docs with a note).

    Args:
        df: the rows of every partition, with ``date_col`` (YYYY-MM-DD strings).
        cfg: the pipeline configuration.
        partitions: the partitions to report on (one with no rows fails the row count).
        date_col: the column naming each row's partition.
        engine: ``auto`` runs GX on pandas up to PANDAS_MAX_ROWS rows, else on Spark (and
            single partitions on pandas); ``spark`` or ``pandas`` forces one engine.
        spec: the suite (default :func:`features_spec`).
        row_bounds: row-count bounds per partition (default: at least the suite's ``min_rows``).
    """
    from pyspark.sql import functions as F

    spec = spec or features_spec(cfg)
    keys = sorted(set(partitions))
    if not keys:
        return {}
    bounds = {k: (row_bounds or {}).get(k, (spec.min_rows, None)) for k in keys}
    part_engine: Engine = "spark" if engine == "spark" else "pandas"
    if len(keys) == 1:
        only = df.where(F.col(date_col) == keys[0]).drop(date_col)
        return {
            keys[0]: validate_partition(
                only, cfg, partition=keys[0], engine=part_engine, spec=spec, rows=bounds[keys[0]]
            )
        }

    aggs, absent = _flag_columns(df, spec)
    counts = {r[date_col]: r.asDict() for r in df.groupBy(date_col).agg(*aggs).collect()}
    total = sum(int(c[_ROWS]) for c in counts.values())
    batch_engine: Engine = engine if engine != "auto" else ("pandas" if total <= PANDAS_MAX_ROWS else "spark")
    pdf = _to_pandas(df) if batch_engine == "pandas" else None
    persisted = pdf is None and not df.is_cached
    if persisted:
        df = df.persist()
    try:
        batch = _Batch(df, pdf, cfg, keys, counts, bounds, spec, batch_engine, part_engine, absent, date_col)
        return _validate_batch(batch)
    finally:
        if persisted:
            df.unpersist()


@dataclass(frozen=True)
class _Batch:
    """What :func:`validate_range` knows once it has counted: the rows, the suite and each partition's counts."""

    df: DataFrame
    pdf: Any  # the rows collected to pandas, or None when GX runs on Spark
    cfg: PipelineConfig
    keys: list[str]
    counts: Mapping[str, dict[str, Any]]
    bounds: Mapping[str, RowBounds]
    spec: SuiteSpec
    batch_engine: Engine
    part_engine: Engine
    absent: list[str]
    date_col: str

    @property
    def scope(self) -> str:
        return f"{self.keys[0]}..{self.keys[-1]}"


def _validate_batch(b: _Batch) -> dict[str, ValidationReport]:
    """:func:`validate_range` after the counts: the range batch, then each suspect partition on its own."""
    data = b.df.drop(b.date_col) if b.pdf is None else b.pdf.drop(columns=[b.date_col])
    batch = _run_suite(data, b.spec, b.scope, b.batch_engine)
    log.info("range batch (%s, %d partitions): %s", b.batch_engine, len(b.keys), batch.summary(b.spec.name))

    flags = {k: _flags(b.counts.get(k, {}), b.spec, b.bounds[k]) for k in b.keys}
    suspects = {k for k in b.keys if flags[k]}
    if b.absent or not batch.success:
        located = set().union(*flags.values())
        unlocated = b.absent or any((f.expectation, f.column) not in located for f in batch.failed)
        if unlocated:
            suspects = set(b.keys)
    log.info("%d of %d partitions need their own validation", len(suspects), len(b.keys))
    return {k: _validate_one(b, k) if k in suspects else _derived_report(b, batch, k) for k in b.keys}


def _validate_one(b: _Batch, k: str) -> ValidationReport:
    """A suspect partition validated on its own (on pandas when the batch was collected)."""
    from pyspark.sql import functions as F

    if b.pdf is not None:
        part = b.pdf[b.pdf[b.date_col] == k].drop(columns=[b.date_col]).reset_index(drop=True)
        report = _run_suite(part, b.spec, k, "pandas", b.bounds[k])
        log.info("%s", report.summary(b.spec.name))
        return report
    only = b.df.where(F.col(b.date_col) == k).drop(b.date_col)
    return validate_partition(only, b.cfg, partition=k, engine=b.part_engine, spec=b.spec, rows=b.bounds[k])


def _derived_report(b: _Batch, batch: ValidationReport, k: str) -> ValidationReport:
    """A passing partition's report, derived from the range batch (its own row count, the batch's Data Docs)."""
    n = int(b.counts.get(k, {}).get(_ROWS, 0))
    derived = f"range {b.scope} ({b.batch_engine})"
    low, high = b.bounds[k]
    note = (
        f"{b.spec.name} {k}: validated as part of the batch {derived}, which passed every expectation; "
        f"this partition's own counts ({n} rows, within [{low}, {high if high is not None else 'any'}]) "
        "flagged none of them."
    )
    return ValidationReport(
        success=True,
        n_rows=n,
        evaluated=batch.evaluated,
        failed=[],
        statistics={
            "evaluated_expectations": batch.evaluated,
            "successful_expectations": batch.evaluated,
            "unsuccessful_expectations": 0,
            "success_percent": 100.0,
        },
        partition=k,
        derived_from=derived,
        suite=b.spec.name,
        data_docs=_banner(batch.data_docs or "", note),
    )


def report_path(lake: Lake, suite: str, date: str) -> str:
    """Where the JSON validation report of a partition goes."""
    return lake.validation_report(suite, date)


def data_docs_path(lake: Lake, suite: str, date: str) -> str:
    """Where the Data Docs page of a partition goes."""
    return lake.data_docs(suite, date)


def write_reports(lake: Lake, reports: Mapping[str, ValidationReport], table: str) -> list[str]:
    """Write each partition's JSON report and Data Docs page into the lake; returns the failure summaries."""
    from flightdeck.core.lake import write_bytes, write_json

    failures: list[str] = []
    for key, report in sorted(reports.items()):
        write_json(report_path(lake, report.suite, key), report.as_dict() | {"table": table})
        if report.data_docs:
            write_bytes(data_docs_path(lake, report.suite, key), report.data_docs.encode())
        if not report.success:
            failures.append(report.summary(table))
            log.error("%s", report.summary(table))
    return failures


def log_data_docs(lake: Lake, reports: Mapping[str, ValidationReport], scope: str) -> str | None:
    """Log the Data Docs pages and outcomes to MLflow (experiment ``flightdeck-data-quality``).

    Only when ``MLFLOW_TRACKING_URI`` names a tracking server or a file store (Airflow tasks
    have the server's URL); a database URI would put the artifacts in ``./mlruns`` of
    whatever folder the job runs in, so it is skipped. The run is written by
    :func:`flightdeck.core.tracking.log_data_docs`. Returns the run id.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri or not reports:
        return None
    if uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}:
        log.info("Data Docs not logged to MLflow: %s is a database, not a tracking server", uri.split(":", 1)[0])
        return None
    from flightdeck.core import tracking

    suites = sorted({r.suite for r in reports.values()})
    failed = sorted(k for k, r in reports.items() if not r.success)
    return tracking.log_data_docs(
        f"{'+'.join(suites)} {scope}",
        tags={"suites": ",".join(suites), "scope": scope, "lake": lake.root, "failed": ",".join(failed)},
        metrics={
            "partitions": len(reports),
            "partitions_failed": len(failed),
            "rows": sum(r.n_rows for r in reports.values()),
        },
        pages={
            f"{report.suite}/{report.partition or key}.html": report.data_docs
            for key, report in reports.items()
            if report.data_docs
        },
    )


def ledger_counts(spark: Any, lake: Lake, first: dt.date, last: dt.date) -> dict[str, dict[str, int]]:
    """Valid rows per source and date from the ingest ledger (committed partitions between first and last)."""
    from flightdeck.data.ingest import LEDGER_TABLE
    from flightdeck.data.sparkio import read_available_partitions

    df, _ = read_available_partitions(spark, lake, "monitoring", LEDGER_TABLE, first, last)
    counts: dict[str, dict[str, int]] = {}
    if df is not None:
        for r in df.select("source", "date", "rows_valid").collect():
            counts.setdefault(r["source"], {})[r["date"]] = int(r["rows_valid"])
    return counts


def partition_row_bounds(
    cfg: PipelineConfig, spec: SuiteSpec, keys: Sequence[str], counts: Mapping[str, int]
) -> dict[str, RowBounds]:
    """Each partition's row-count bounds from the counts of the partitions before it."""
    policy = cfg.validation.row_count
    return {k: row_count_bounds(recent_counts(k, counts, policy.history_days), policy, spec.min_rows) for k in keys}


# --- the chain both jobs run ------------------------------------------------------------------


@dataclass(frozen=True)
class TableCheck:
    """What to check of one table: its suite, the partitions to report on and the row counts bounding them."""

    table: str  # e.g. ``features/flights`` or ``bronze/flights``, as messages name it
    spec: SuiteSpec
    keys: Sequence[str]  # the partitions (YYYY-MM-DD); one with no rows fails its row count
    counts: Mapping[str, int]  # rows per date of the table's recent partitions (and of the checked ones)


@dataclass(frozen=True)
class PartitionChecks:
    """One table's validated partitions: a report per partition and the summaries of those that failed."""

    suite: str
    reports: dict[str, ValidationReport]
    failures: list[str]


def recent_ledger_counts(
    spark: Any, lake: Lake, cfg: PipelineConfig, dates: Sequence[dt.date]
) -> dict[str, dict[str, int]]:
    """Valid rows per source and date in the ingest ledger, from ``validation.row_count.history_days``
    before the first date to the last: what each partition's row count is bounded by."""
    return ledger_counts(spark, lake, dates[0] - dt.timedelta(days=cfg.validation.row_count.history_days), dates[-1])


def check_partitions(
    df: DataFrame, cfg: PipelineConfig, lake: Lake, check: TableCheck, *, engine: EngineChoice = "auto"
) -> PartitionChecks:
    """The validation chain of ingest (bronze suites) and validate_features: bound, validate, write the reports.

    Each partition's row count is bounded by the counts of the partitions before it
    (:func:`partition_row_bounds`), the partitions are validated as one range
    (:func:`validate_range`), and each one's JSON report and Data Docs page go into the lake
    (:func:`write_reports`). Publish the Data Docs with :func:`publish_data_docs` and fail
    with :func:`raise_failures`.

    Args:
        df: the rows to validate, with a ``date`` column (YYYY-MM-DD strings).
        cfg: the pipeline configuration.
        lake: where the reports go.
        check: the table, suite, partitions and recent row counts.
        engine: the GX engine (see :func:`validate_range`).
    """
    bounds = partition_row_bounds(cfg, check.spec, check.keys, check.counts)
    reports = validate_range(df, cfg, check.keys, engine=engine, spec=check.spec, row_bounds=bounds)
    return PartitionChecks(check.spec.name, reports, write_reports(lake, reports, check.table))


def publish_data_docs(lake: Lake, checks: Sequence[PartitionChecks], scope: str, *, by_suite: bool) -> str | None:
    """Log the Data Docs of every checked partition to MLflow in one run (:func:`log_data_docs`); its run id.

    ``by_suite`` keys the partitions ``<suite>/<date>`` (several suites in one run), else by date.
    """
    reports = {f"{c.suite}/{k}" if by_suite else k: r for c in checks for k, r in c.reports.items()}
    return log_data_docs(lake, reports, scope)


def raise_failures(checks: Sequence[PartitionChecks], error: type[ValidationFailed], lead: str = "") -> None:
    """Raise ``error`` naming every failed partition and expectation, when any failed.

    Raises:
        ValidationFailed: (the given subclass) some partition failed its suite.
    """
    failures = [f for c in checks for f in c.failures]
    if failures:
        raise error(lead + "; ".join(failures))
