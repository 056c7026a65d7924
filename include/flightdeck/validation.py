"""Feature validation with Great Expectations 1.x, built in code from the config.

The suite comes from ``validation`` and ``features`` in the config: not-null columns, value
ranges, minimum as-of join coverage (not-null with ``mostly``), a minimum row count, and
the presence of every model input and the label. The GX context is ephemeral (nothing is
written to a ``great_expectations.yml``, so parallel tasks cannot corrupt a store); the
suite definition is also kept as JSON in ``include/great_expectations/`` for people to read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from flightdeck.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

Engine = Literal["spark", "pandas"]
SUITE_NAME = "features"
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
    suite = build_suite(cfg)
    data: Any = df.toPandas() if engine == "pandas" else df
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
    report = ValidationReport(
        success=bool(outcome.success),
        n_rows=n_rows,
        evaluated=len(outcome.results),
        failed=failed,
        statistics=stats,
        partition=partition,
    )
    log.info("%s", report.summary())
    return report
