"""Feature validation with Great Expectations 1.x, built in code from the config.

The suite comes from ``validation`` and ``features`` in the config: not-null columns, value
ranges, minimum as-of join coverage (not-null with ``mostly``), a minimum row count, and
the presence of every model input and the label. The GX context is ephemeral (nothing is
written to a ``great_expectations.yml``, so parallel tasks cannot corrupt a store); the
suite definition is also kept as JSON in ``include/great_expectations/`` for people to read.

:func:`validate_partition` validates one partition. :func:`validate_range` validates many
as one GX batch and still reports per partition: one Spark aggregation counts, per
partition, the rows and every row that could break an expectation; GX runs on a single
partition only where those counts (or a failure of the range batch they do not locate)
call for it, so a backfill costs one batch, not one per day.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from flightdeck.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

Engine = Literal["spark", "pandas"]
EngineChoice = Literal["auto", "spark", "pandas"]
SUITE_NAME = "features"
# Up to this many rows, "auto" collects a batch to pandas (GX on pandas is much faster than on Spark).
PANDAS_MAX_ROWS = 500_000
_ARROW = "spark.sql.execution.arrow.pyspark.enabled"
_DATASOURCE = "flightdeck_spark"
_ASSET = "features"


class FeatureValidationError(ValueError):
    """A feature partition failed expectations; the message names each failure."""


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, table: str = "features") -> str:
        """E.g. ``features 2013-07-01 failed 2 of 14 expectations: wx_temp non-null 61% < 80% required; ...``."""
        where = f"{table} {self.partition}" if self.partition else table
        if self.success:
            return f"{where} passed {self.evaluated} of {self.evaluated} expectations ({self.n_rows} rows)"
        return f"{where} failed {len(self.failed)} of {self.evaluated} expectations: " + "; ".join(
            f.message for f in self.failed
        )


def build_suite(cfg: PipelineConfig) -> Any:
    """The expectation suite the config asks for (a ``great_expectations.ExpectationSuite``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    v = cfg.validation
    expected_columns = [*cfg.features.model_inputs, cfg.label.name]
    expectations: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=v.min_rows),
        gxe.ExpectTableColumnsToMatchSet(column_set=expected_columns, exact_match=False),
    ]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in v.not_null]
    expectations += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi) for c, (lo, hi) in v.ranges.items()
    ]
    expectations += [
        gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=share) for c, share in v.min_join_coverage.items()
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)


def suite_json(cfg: PipelineConfig) -> dict[str, Any]:
    """The suite as a JSON-ready dict (what ``include/great_expectations/features_suite.json`` holds)."""
    doc: dict[str, Any] = build_suite(cfg).to_json_dict()
    doc.pop("id", None)
    for exp in doc.get("expectations", []):
        exp.pop("id", None)
    return doc


@lru_cache(maxsize=2)
def _batch_definition(engine: Engine = "spark") -> Any:
    """One ephemeral context per process and engine, with a dataframe asset fed per validation."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no phoning home from batch jobs
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
        message = f"row count {res.get('observed_value')} < {kwargs.get('min_value')} required"
    elif kind == "expect_table_columns_to_match_set":
        observed = set(res.get("observed_value") or [])
        absent = sorted(set(kwargs.get("column_set") or []) - observed)
        message = f"model input columns missing: {absent}"
        details["missing_columns"] = absent
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


def _run_suite(data: Any, cfg: PipelineConfig, partition: str | None, engine: Engine) -> ValidationReport:
    """Validate a Spark (engine spark) or pandas (engine pandas) DataFrame against the config's suite."""
    suite = build_suite(cfg)
    batch = _batch_definition(engine).get_batch(batch_parameters={"dataframe": data})
    outcome = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5})
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
    )


def validate_partition(
    df: DataFrame, cfg: PipelineConfig, partition: str | None = None, engine: Engine = "spark"
) -> ValidationReport:
    """Validate one feature partition against the suite built from the config.

    Args:
        df: the partition's rows (a Spark DataFrame).
        cfg: the pipeline configuration (the suite is built from it).
        partition: the partition key, for messages.
        engine: ``spark`` validates on Spark (any size); ``pandas`` collects the partition
            first, an order of magnitude faster for day-sized partitions (backfills).
    """
    data: Any = _to_pandas(df) if engine == "pandas" else df
    report = _run_suite(data, cfg, partition, engine)
    log.info("%s", report.summary())
    return report


# --- many partitions as one batch ----------------------------------------------------------

_ROWS = "rows"


def _flag_columns(df: DataFrame, cfg: PipelineConfig) -> tuple[list[Any], list[str]]:
    """Aggregations counting, per expectation, the rows that could break it; and the columns absent.

    Counts err on the side of suspicion (NaN counts as null and as out of range), so a
    partition none of them flags passes that expectation in any engine.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    v = cfg.validation
    types = {f.name: f.dataType for f in df.schema.fields}
    absent = sorted({c for c in [*v.not_null, *v.ranges, *v.min_join_coverage] if c not in types})

    def missing(c: str) -> Any:
        col = F.col(c)
        return col.isNull() | F.isnan(col) if isinstance(types[c], (DoubleType, FloatType)) else col.isNull()

    def count_if(cond: Any, name: str) -> Any:
        return F.count(F.when(cond, F.lit(1))).alias(name)

    aggs = [F.count(F.lit(1)).alias(_ROWS)]
    aggs += [count_if(missing(c), f"null:{c}") for c in v.not_null if c in types]
    aggs += [
        count_if(F.col(c).isNotNull() & ~(F.col(c).between(lo, hi) & ~missing(c)), f"range:{c}")
        for c, (lo, hi) in v.ranges.items()
        if c in types
    ]
    aggs += [count_if(~missing(c), f"filled:{c}") for c in v.min_join_coverage if c in types]
    return aggs, absent


def _flags(counts: dict[str, int], cfg: PipelineConfig) -> set[tuple[str, str | None]]:
    """The (expectation type, column) pairs a partition's counts say it may fail."""
    v = cfg.validation
    n = counts.get(_ROWS, 0)
    flags: set[tuple[str, str | None]] = set()
    if n < v.min_rows:
        flags.add(("expect_table_row_count_to_be_between", None))
    for c in v.not_null:
        if counts.get(f"null:{c}", 0):
            flags.add(("expect_column_values_to_not_be_null", c))
    for c in v.ranges:
        if counts.get(f"range:{c}", 0):
            flags.add(("expect_column_values_to_be_between", c))
    for c, share in v.min_join_coverage.items():
        # Compared in integers, with a margin, so a share exactly at the threshold is checked by GX.
        if n and counts.get(f"filled:{c}", 0) <= share * n + 1e-6:
            flags.add(("expect_column_values_to_not_be_null", c))
    return flags


def validate_range(
    df: DataFrame,
    cfg: PipelineConfig,
    partitions: Sequence[str],
    date_col: str = "date",
    engine: EngineChoice = "auto",
) -> dict[str, ValidationReport]:
    """Validate many partitions as one GX batch; returns one report per partition.

    One aggregation grouped by ``date_col`` counts each partition's rows and the rows that
    could break an expectation. GX validates the whole range once. A partition gets its own
    GX run when its counts flag it (too few rows, nulls, values out of range, low join
    coverage) or when the range batch failed an expectation the counts do not locate;
    every other partition passes, with a report derived from the range batch (same
    expectations, its own row count, ``derived_from`` naming the batch).

    Args:
        df: the rows of every partition, with ``date_col`` (YYYY-MM-DD strings).
        cfg: the pipeline configuration (the suite is built from it).
        partitions: the partitions to report on (one with no rows fails the row count).
        date_col: the column naming each row's partition.
        engine: ``auto`` runs GX on pandas up to PANDAS_MAX_ROWS rows, else on Spark (and
            single partitions on pandas); ``spark`` or ``pandas`` forces one engine.
    """
    from pyspark.sql import functions as F

    keys = sorted(set(partitions))
    if not keys:
        return {}
    part_engine: Engine = "spark" if engine == "spark" else "pandas"
    if len(keys) == 1:
        only = df.where(F.col(date_col) == keys[0]).drop(date_col)
        return {keys[0]: validate_partition(only, cfg, partition=keys[0], engine=part_engine)}

    aggs, absent = _flag_columns(df, cfg)
    counts = {r[date_col]: r.asDict() for r in df.groupBy(date_col).agg(*aggs).collect()}
    total = sum(int(c[_ROWS]) for c in counts.values())
    batch_engine: Engine = engine if engine != "auto" else ("pandas" if total <= PANDAS_MAX_ROWS else "spark")
    pdf = _to_pandas(df) if batch_engine == "pandas" else None
    scope = f"{keys[0]}..{keys[-1]}"
    batch = _run_suite(df.drop(date_col) if pdf is None else pdf.drop(columns=[date_col]), cfg, scope, batch_engine)
    log.info("range batch (%s, %d partitions): %s", batch_engine, len(keys), batch.summary())

    flags = {k: _flags(counts.get(k, {}), cfg) for k in keys}
    suspects = {k for k in keys if flags[k]}
    if absent or not batch.success:
        located = set().union(*flags.values())
        unlocated = absent or any((f.expectation, f.column) not in located for f in batch.failed)
        if unlocated:
            suspects = set(keys)
    log.info("%d of %d partitions need their own validation", len(suspects), len(keys))

    reports: dict[str, ValidationReport] = {}
    for k in keys:
        if k in suspects:
            if pdf is not None:
                part = pdf[pdf[date_col] == k].drop(columns=[date_col]).reset_index(drop=True)
                reports[k] = _run_suite(part, cfg, k, "pandas")
                log.info("%s", reports[k].summary())
            else:
                only = df.where(F.col(date_col) == k).drop(date_col)
                reports[k] = validate_partition(only, cfg, partition=k, engine=part_engine)
        else:
            reports[k] = ValidationReport(
                success=True,
                n_rows=int(counts.get(k, {}).get(_ROWS, 0)),
                evaluated=batch.evaluated,
                failed=[],
                statistics={
                    "evaluated_expectations": batch.evaluated,
                    "successful_expectations": batch.evaluated,
                    "unsuccessful_expectations": 0,
                    "success_percent": 100.0,
                },
                partition=k,
                derived_from=f"range {scope} ({batch_engine})",
            )
    return reports
