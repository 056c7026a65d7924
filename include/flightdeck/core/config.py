"""Pipeline configuration: one YAML file, validated by pydantic, overridable from the environment.

The dataset (sources, schema, keys, event time, label, features), the lake, the
model and every threshold are described here, so the platform code stays
dataset-agnostic. Import-light: DAG files load the config at parse time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flightdeck.core.columns import platform_column_clash
from flightdeck.core.errors import FlightdeckError

ENV_PREFIX = "FLIGHTDECK__"
CONFIG_ENV = "FLIGHTDECK_CONFIG"
HOME_ENV = "FLIGHTDECK_HOME"
PROJECT_ROOT = Path(os.environ.get(HOME_ENV) or Path(__file__).resolve().parents[3])
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "config" / "flights.yaml"
JOBS_DIR = PROJECT_ROOT / "jobs"

ColumnType = Literal["int", "long", "double", "string", "timestamp", "date", "boolean"]


class ConfigError(FlightdeckError):
    """The configuration file or an environment override is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    """One column of a raw file: its name in the lake, its type, and its header in the file when that differs."""

    name: str
    type: ColumnType
    required: bool = False
    # The column's header in the landing file, when the lake name differs (e.g. a file
    # column called `date`, which is the platform's partition column: {name: event_date, source: date}).
    source: str | None = None

    @property
    def header(self) -> str:
        """The column's name in the landing file."""
        return self.source or self.name


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'America/New_York'") from err
    return name


class PartitionDate(_Strict):
    """Where a row's partition, its local calendar date, comes from: exactly one of three forms.

    - ``{column: c}``: a date column;
    - ``{timestamp: c, timezone: Z}``: a timestamp column, the calendar day in the IANA zone Z
      (a timestamp without an offset in the file is read as UTC);
    - ``{year: y, month: m, day: d}``: three integer columns.
    """

    column: str | None = None
    timestamp: str | None = None
    timezone: str | None = None
    year: str | None = None
    month: str | None = None
    day: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PartitionDate:
        ymd = [self.year, self.month, self.day]
        forms = [self.column is not None, self.timestamp is not None, any(v is not None for v in ymd)]
        if sum(forms) != 1:
            raise ValueError(
                "give exactly one form: {column: <date column>}, {timestamp: <column>, timezone: <IANA zone>} "
                "or {year: <column>, month: <column>, day: <column>}"
            )
        if forms[2] and any(v is None for v in ymd):
            raise ValueError("year, month and day go together: give all three columns")
        if self.timestamp is not None and self.timezone is None:
            raise ValueError(
                f"timestamp {self.timestamp!r} needs the time zone whose calendar day is the partition, "
                "e.g. timezone: UTC or timezone: America/New_York"
            )
        if self.timezone is not None:
            if self.timestamp is None:
                raise ValueError("timezone goes with timestamp only")
            _zone(self.timezone)
        return self

    @property
    def kind(self) -> Literal["date", "timestamp", "ymd"]:
        if self.column is not None:
            return "date"
        if self.timestamp is not None:
            return "timestamp"
        return "ymd"

    @property
    def columns(self) -> list[str]:
        """The user columns the partition date is read from."""
        if self.column is not None:
            return [self.column]
        if self.timestamp is not None:
            return [self.timestamp]
        return [str(self.year), str(self.month), str(self.day)]

    @property
    def types(self) -> tuple[ColumnType, ...]:
        """The column types each form accepts."""
        accepted: dict[str, tuple[ColumnType, ...]] = {
            "date": ("date",),
            "timestamp": ("timestamp",),
            "ymd": ("int", "long"),
        }
        return accepted[self.kind]


FileKind = Literal["csv", "parquet", "jsonl"]


class FileFormat(_Strict):
    """How a source's landing files are written (never inferred).

    CSV files carry a header line naming their columns; JSON lines files hold one object
    per line; Parquet files carry their own schema. CSV and JSON lines may be gzipped.
    """

    kind: FileKind = "csv"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    compression: Literal["none", "gzip"] = "none"
    # CSV only: quoted fields may hold line breaks anywhere in a file, so each file is parsed
    # whole as multi-line CSV (one Spark task per file). Without it, a line break inside a
    # quoted field is found in a file's first MiB only (the head the contract check reads).
    multi_line: bool = False

    @model_validator(mode="after")
    def _compression(self) -> FileFormat:
        if self.kind == "parquet" and self.compression != "none":
            raise ValueError("parquet files compress themselves: leave compression out (none)")
        if self.multi_line and self.kind != "csv":
            raise ValueError(f"multi_line is a CSV dialect setting; {self.kind} files cannot declare it")
        return self

    @property
    def extension(self) -> str:
        """The file name's ending: ``csv``, ``csv.gz``, ``parquet``, ``jsonl`` or ``jsonl.gz``."""
        return self.kind + (".gz" if self.compression == "gzip" else "")


class TimeSeriesSource(_Strict):
    """A table that lands daily and is keyed by time (e.g. weather)."""

    name: str
    columns: list[Column]
    keys: list[str]
    partition_date: PartitionDate
    format: FileFormat = Field(default_factory=FileFormat)
    # Where the upstream drops the daily files <name>_<YYYY-MM-DD>.<format extension>: a
    # local folder or an s3:// prefix; by default the lake's landing/<name>/ folder.
    inbox: str | None = None
    # File in dataset.source_package that the demo's simulated upstream cuts into days.
    source_file: str | None = None
    event_time: str
    null_values: list[str] = Field(default_factory=lambda: ["NA", ""])
    row_rules: dict[str, str] = Field(default_factory=dict)
    # column -> reference table whose key must contain the column's value (else quarantined)
    references: dict[str, str] = Field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def headers(self) -> dict[str, str]:
        """Lake column name -> its header in the landing file."""
        return {c.name: c.header for c in self.columns}

    @model_validator(mode="after")
    def _keys_are_columns(self) -> TimeSeriesSource:
        names = set(self.column_names)
        missing = [k for k in self.keys if k not in names]
        missing += [d for d in self.partition_date.columns if d not in names]
        missing += [c for c in self.references if c not in names]
        if missing:
            raise ValueError(
                f"source {self.name!r}: keys/partition_date/references {missing} are not among its columns"
            )
        types = {c.name: c.type for c in self.columns}
        wrong = [c for c in self.partition_date.columns if types[c] not in self.partition_date.types]
        if wrong:
            raise ValueError(
                f"source {self.name!r}: partition_date column(s) {wrong} have type {[types[c] for c in wrong]}; "
                f"a {self.partition_date.kind} partition date reads type {' or '.join(self.partition_date.types)}"
            )
        return self

    @model_validator(mode="after")
    def _no_platform_names(self) -> TimeSeriesSource:
        for i, col in enumerate(self.columns):
            clash = platform_column_clash(col.name)
            if clash:
                raise ValueError(
                    f"columns[{i}]: column {col.name!r} of source {self.name!r} collides with {clash}; give it "
                    f"another name in the lake and keep the file's header: "
                    f"{{name: {self.name}_{col.name.strip('_')}, source: {col.header}, type: {col.type}}}"
                )
        headers = [c.header for c in self.columns]
        twice = sorted({h for h in headers if headers.count(h) > 1})
        names = self.column_names
        twice += sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"source {self.name!r}: columns {twice} are declared twice")
        return self


class ReferenceSource(_Strict):
    """A static table that lands whole (e.g. planes, airports)."""

    name: str
    key: str
    # File in dataset.source_package that the demo's simulated upstream delivers whole.
    source_file: str | None = None
    format: FileFormat = Field(default_factory=FileFormat)
    # Declared types of non-string columns (the rest stay strings); never inferred.
    column_types: dict[str, ColumnType] = Field(default_factory=dict)
    null_values: list[str] = Field(default_factory=lambda: ["NA", ""])


class LabelSource(TimeSeriesSource):
    """Outcomes that arrive later, on their own days, from another system (optional).

    Its ``partition_date`` is the day an outcome arrived and its ``event_time`` when it became
    known; ``join_on`` names, for each entity key, the column of this source holding it.
    ``label.expression`` is then evaluated over the entity row and its outcome. Rolling label
    features and live performance count an outcome from its arrival, never from the event's
    day. An outcome arriving more than ``max_delay_days`` after its event is not matched.
    """

    join_on: dict[str, str] = Field(min_length=1)
    max_delay_days: int = Field(default=7, ge=0)

    @model_validator(mode="after")
    def _join_columns(self) -> LabelSource:
        missing = [c for c in self.join_on.values() if c not in self.column_names]
        if missing:
            raise ValueError(f"labels {self.name!r}: join_on columns {missing} are not among its columns")
        return self


class Dataset(_Strict):
    """What the data is and where it comes from."""

    name: str
    # Only for the demo's simulated upstream (`flightdeck feed`): a Python package shipping the
    # source tables (`source_file` of each source) that the feed cuts into daily files.
    source_package: str | None = None
    entity: TimeSeriesSource
    timeseries: list[TimeSeriesSource] = Field(default_factory=list)
    reference: list[ReferenceSource] = Field(default_factory=list)
    labels: LabelSource | None = None

    @property
    def daily_sources(self) -> list[TimeSeriesSource]:
        """Every source that lands one file per day: the entity, the time series, the labels."""
        return [self.entity, *self.timeseries, *([self.labels] if self.labels else [])]

    @model_validator(mode="after")
    def _labels_fit_the_entity(self) -> Dataset:
        if self.labels is None:
            return self
        entity_cols = set(self.entity.column_names)
        unknown = sorted(set(self.labels.join_on) - entity_cols)
        if unknown:
            raise ValueError(f"labels.join_on: {unknown} are not columns of the entity {self.entity.name!r}")
        shared = sorted((set(self.labels.column_names) - set(self.labels.join_on.values())) & entity_cols)
        if shared:
            raise ValueError(
                f"labels: columns {shared} are also entity columns; name them otherwise in the lake "
                f"(e.g. {{name: label_{shared[0]}, source: {shared[0]}}}) so the joined row keeps both"
            )
        return self

    @model_validator(mode="after")
    def _references_exist(self) -> Dataset:
        names = {r.name for r in self.reference}
        for source in [self.entity, *self.timeseries]:
            unknown = sorted(set(source.references.values()) - names)
            if unknown:
                raise ValueError(
                    f"source {source.name!r}: references {unknown} are not reference tables; have {sorted(names)}"
                )
        return self

    def timeseries_named(self, name: str) -> TimeSeriesSource:
        for source in self.timeseries:
            if source.name == name:
                return source
        raise ConfigError(f"no timeseries source named {name!r}; have {[s.name for s in self.timeseries]}")

    def reference_named(self, name: str) -> ReferenceSource:
        for source in self.reference:
            if source.name == name:
                return source
        raise ConfigError(f"no reference source named {name!r}; have {[s.name for s in self.reference]}")


class AsofJoin(_Strict):
    """Latest time-series row at or before the event time, within a lag."""

    source: str
    join_on: dict[str, str]
    max_lag_hours: float
    columns: list[str]
    prefix: str = ""


class Lookup(_Strict):
    """Static attributes from a reference table."""

    source: str
    join_on: dict[str, str]
    columns: dict[str, str]


RollingAgg = Literal["mean", "sum", "count"]


class Rolling(_Strict):
    """A rolling aggregate over past entity rows of the same group, point in time.

    ``value`` (a Spark SQL expression over the bronze entity columns and the label) of an
    event on local date E becomes known at the start of day E + ``known_after_days``; a
    row on day D therefore sees the ``w`` known days E in [D - known_after_days - w + 1,
    D - known_after_days]. Output columns: ``<name>_<w>d`` (and ``<name>_<w>d_n``, the
    number of non-null values, when ``count_column``).
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    group_by: list[str] = Field(min_length=1)
    value: str
    agg: RollingAgg = "mean"
    windows_days: list[int] = Field(min_length=1)
    # Never 0: a value known on its own day would leak the day's later events.
    known_after_days: int = Field(default=1, ge=1)
    # mean/sum over fewer non-null values than this are null (count is never thinned).
    min_count: int = Field(default=1, ge=1)
    count_column: bool = False

    @field_validator("windows_days")
    @classmethod
    def _positive_unique(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value) or len(set(value)) != len(value):
            raise ValueError(f"windows_days {value} must be distinct whole days >= 1")
        return value

    @property
    def lookback_days(self) -> int:
        """Days of history before a row's date that its longest window reads."""
        return max(self.windows_days) + self.known_after_days - 1

    @property
    def outputs(self) -> list[str]:
        cols = []
        for w in self.windows_days:
            cols.append(f"{self.name}_{w}d")
            if self.count_column:
                cols.append(f"{self.name}_{w}d_n")
        return cols


class ScheduleCount(_Strict):
    """Entity rows on the same local date sharing ``group_by`` (e.g. departures per origin and hour).

    Only for what the schedule fixes in advance (keys such as origin and scheduled hour):
    the count covers the whole day, including rows after the event, which is point in
    time only because the day's schedule is published before the day starts.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    group_by: list[str] = Field(min_length=1)


class Features(_Strict):
    """How the feature table is built from bronze."""

    asof_joins: list[AsofJoin] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    derived: dict[str, str] = Field(default_factory=dict)
    rolling: list[Rolling] = Field(default_factory=list)
    counts: list[ScheduleCount] = Field(default_factory=list)
    numeric: list[str]
    categorical: list[str] = Field(default_factory=list)
    passthrough: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_outputs(self) -> Features:
        names = [c for r in self.rolling for c in r.outputs] + [c.name for c in self.counts]
        twice = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(self.derived)))
        if twice:
            raise ValueError(f"rolling/counts columns {twice} are declared twice (rolling, counts or derived)")
        return self

    @property
    def model_inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def lookback_days(self) -> int:
        """Days of entity history before the first built date that the rolling windows read."""
        return max((r.lookback_days for r in self.rolling), default=0)


class Label(_Strict):
    name: str
    expression: str


class Lake(_Strict):
    root: str

    @property
    def is_remote(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")


ExtraColumns = Literal["ignore", "reject"]


class Ingest(_Strict):
    max_quarantine_share: float = Field(ge=0, le=1)
    # Columns a landing file has beyond the configured ones: read by name and reported
    # ("ignore"), or the whole file fails ("reject").
    extra_columns: ExtraColumns = "ignore"


class RowCountPolicy(_Strict):
    """Row-count bounds of a partition relative to the median of recent committed partitions."""

    history_days: int = Field(default=14, ge=1)
    # Fewer committed partitions than this in the history: only min_rows applies.
    min_history: int = Field(default=7, ge=1)
    min_ratio: float = Field(default=0.5, ge=0)
    max_ratio: float = Field(default=1.5, gt=0)


class BronzeSuite(_Strict):
    """Expectations on one source's bronze partitions (besides its required columns being non-null)."""

    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # Largest share of nulls allowed per column (a broken export empties a column).
    null_budgets: dict[str, float] = Field(default_factory=dict)
    # Values of columns with a configured reference must be among the reference table's keys.
    categories_from_references: bool = True
    min_rows: int = 1


class Validation(_Strict):
    not_null: list[str] = Field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    min_join_coverage: dict[str, float] = Field(default_factory=dict)
    min_rows: int = 1
    row_count: RowCountPolicy = Field(default_factory=RowCountPolicy)
    # Bronze suites by source name; a source not listed here is not validated in bronze.
    bronze: dict[str, BronzeSuite] = Field(default_factory=dict)


class Search(_Strict):
    """A bounded hyperparameter search: at most ``max_trials`` draws (seeded) from a grid.

    Each trial is a nested MLflow run, judged on the validation window (never the holdout).
    ``max_trials: 1`` trains the base ``model.params`` only.
    """

    max_trials: int = Field(default=1, ge=1, le=50)
    # parameter -> candidate values; a trial overrides model.params with one value of each
    space: dict[str, list[float | int | str]] = Field(default_factory=dict)


ModelTask = Literal["binary", "regression"]


class Model(_Strict):
    name: str
    # binary: SparkXGBClassifier, scored as a probability, judged on AUC; regression:
    # SparkXGBRegressor (objective reg:squarederror unless params say otherwise), scored as
    # a value in the label's units, judged on RMSE. Changing the task of a registered model
    # needs a new model.name: the gate never compares models of two tasks.
    task: ModelTask = "binary"
    # XGBoost workers (Spark barrier tasks) and threads per worker (= spark.task.cpus,
    # which xgboost.spark uses as nthread); training checks the free task slots first.
    num_workers: int = Field(ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    train_start: dt.date
    train_end: dt.date
    retrain_window_days: int = Field(ge=2)
    holdout_days: int = Field(ge=1)
    # The last training days before the holdout: early stopping and trial selection.
    validation_days: int = Field(default=0, ge=0)
    early_stopping_rounds: int | None = Field(default=None, ge=1)
    seed: int = 42
    params: dict[str, float | int | str] = Field(default_factory=dict)
    search: Search = Field(default_factory=Search)

    @model_validator(mode="after")
    def _window_order(self) -> Model:
        if self.train_end < self.train_start:
            raise ValueError(f"model.train_end {self.train_end} is before model.train_start {self.train_start}")
        return self


class Gate(_Strict):
    """Thresholds of the promotion gate (see :func:`flightdeck.model.gate.decide`).

    ``model.task: binary`` is judged on ROC AUC (``min_auc`` and ``max_auc_regression`` are
    needed), ``model.task: regression`` on RMSE (``max_rmse_regression`` has a default;
    ``max_rmse`` is optional). The keys of the other task are not read.
    """

    # binary: the candidate's holdout ROC AUC floor, and how much AUC it may lose to the champion.
    min_auc: float | None = Field(default=None, ge=0, le=1)
    max_auc_regression: float | None = Field(default=None, ge=0, le=1)
    # Per-slice checks: holdout columns whose values are slices (e.g. carrier, origin, month).
    slices: list[str] = Field(default_factory=list)
    # binary: AUC a slice may lose to the champion's on the same slice.
    max_slice_regression: float = Field(default=0.05, ge=0, le=1)
    # Slices with fewer rows (or, binary, a single class) are reported, never judged.
    min_slice_rows: int = Field(default=200, ge=1)
    # Paired bootstrap of the AUC difference (candidate - champion) on the holdout; the
    # gate fails when the whole interval lies below -max_auc_regression. Regression: of the
    # relative RMSE difference (RMSE(candidate) / RMSE(champion) - 1), overall and per slice.
    bootstrap_samples: int = Field(default=200, ge=0)
    bootstrap_confidence: float = Field(default=0.95, gt=0, lt=1)
    # regression: an optional ceiling on the candidate's holdout RMSE (in the label's units).
    max_rmse: float | None = Field(default=None, gt=0)
    # regression: how much worse (relative) the candidate's RMSE may be than the champion's on
    # the same holdout (0.05: 5%); fails when the point estimate is above it, or when the whole
    # bootstrap interval of the relative difference lies above it.
    max_rmse_regression: float = Field(default=0.05, ge=0)
    # regression, per slice (None: max_rmse_regression); a slice fails only when its whole
    # bootstrap interval lies above it (without bootstrap samples: its point estimate).
    max_slice_rmse_regression: float | None = Field(default=None, ge=0)
    # A human approves before the champion moves (Airflow HITL ApprovalOperator).
    require_approval: bool = False

    def missing_for(self, task: str) -> list[str]:
        """The ``gate`` keys ``task`` needs that are not set (binary: the AUC floor and regression)."""
        if task == "binary":
            return [f"gate.{k}" for k in ("min_auc", "max_auc_regression") if getattr(self, k) is None]
        return []


class Drift(_Strict):
    bins: int = Field(ge=2, le=100)
    psi_threshold: float = Field(gt=0)
    drifted_share: float = Field(gt=0, le=1)
    min_rows: int = Field(ge=1)
    cooldown_days: int = Field(ge=0)
    # features whose PSI is reported but never counts as drift (e.g. calendar features,
    # which always differ between a single day and a multi-week training window)
    exclude: list[str] = Field(default_factory=list)
    # Prediction drift: PSI of the score distribution (None: psi_threshold).
    prediction_psi_threshold: float | None = Field(default=None, gt=0)
    # The statistic follows the sample size (issue 17). A day with fewer rows than this is
    # judged by a chi-square test of homogeneity on its binned counts vs the reference
    # (sparse bins merged until every expected count is >= 5): drifted when the p-value,
    # corrected over the features by `p_value_correction`, is below `p_value` (the score
    # distribution is one test at `p_value`). At or above it, PSI >= the PSI thresholds.
    large_sample_rows: int = Field(default=500, ge=1)
    p_value: float = Field(default=0.01, gt=0, lt=1)
    p_value_correction: Literal["holm", "bonferroni", "none"] = "holm"
    # Performance drift once labels arrive (day D-1's outcomes, checked on day D; with
    # dataset.labels: the outcomes that arrived on day D, whatever day their events were),
    # against the holdout metrics of the model version that made the predictions.
    max_auc_drop: float = Field(default=0.05, ge=0, le=1)
    max_log_loss_rise: float = Field(default=0.1, ge=0)
    # model.task regression: the labelled day's RMSE may be at most this much (relative)
    # above the holdout RMSE (0.1: 10%); MAE is reported, never judged.
    max_rmse_rise: float = Field(default=0.1, ge=0)
    min_labeled_rows: int = Field(default=200, ge=1)
    # Judged only with this many labels of each class; a breach only when the whole
    # bootstrap interval (stratified by class, `bootstrap_samples` resamples of the labelled
    # rows, seeded) of the AUC drop / log-loss rise is at or above its threshold.
    # Regression: min_labeled_rows alone, and the bootstrap interval (plain resamples) of the
    # relative RMSE rise. bootstrap_samples 0: the point estimate decides (no interval).
    min_labels_per_class: int = Field(default=20, ge=1)
    bootstrap_samples: int = Field(default=500, ge=0)
    bootstrap_confidence: float = Field(default=0.95, gt=0, lt=1)
    bootstrap_seed: int = 0
    # Ask for a retrain when at least `breaches` of the last `windows` monitored windows
    # breached a threshold (the current window included).
    breaches: int = Field(default=1, ge=1)
    windows: int = Field(default=1, ge=1)
    # At most one open retrain request; one that no training run consumed within this
    # many days (e.g. the training failed) counts as abandoned.
    request_ttl_days: int = Field(default=14, ge=1)

    @model_validator(mode="after")
    def _k_of_n(self) -> Drift:
        if self.breaches > self.windows:
            raise ValueError(f"drift.breaches ({self.breaches}) cannot exceed drift.windows ({self.windows})")
        return self


class Smtp(_Strict):
    """Mail to ``to`` through Airflow's SMTP provider: an SMTP connection (``conn_id``), or a
    plain relay (``host``/``port``/``sender``/``starttls``, no login)."""

    # An Airflow SMTP connection (host, port, login/password; extras disable_tls, disable_ssl,
    # from_email, timeout): its password stays in Airflow's connection store.
    conn_id: str | None = None
    host: str | None = None
    port: int = 25
    sender: str | None = None
    to: list[str] = Field(min_length=1)
    starttls: bool = False

    @model_validator(mode="after")
    def _server(self) -> Smtp:
        if self.conn_id is None and (self.host is None or self.sender is None):
            raise ValueError("give alerts.smtp.conn_id (an Airflow SMTP connection) or both host and sender")
        return self


class Alerts(_Strict):
    """Where alerts go besides the log: a JSON-lines file, then Airflow's notifier providers
    (apprise for webhooks and any apprise service, Slack, SMTP); see core/alerts.py."""

    # JSON-lines file; relative paths are under the lake's monitoring/alerts/ folder.
    file: str | None = "alerts.jsonl"
    # An http(s) URL (POSTed as apprise's JSON envelope) or any apprise URL (json://, slack://, ...).
    webhook_url: str | None = None
    # An Airflow connection holding the webhook (host: the URL; password: a bearer token), so
    # its secret lives in Airflow's connection store, masked in task logs, never in the YAML.
    webhook_conn_id: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # An Airflow apprise connection (extra `config`: {"path": <apprise URL>} or a list of them).
    apprise_conn_id: str | None = None
    # An Airflow Slack incoming-webhook connection (password: the webhook token or URL).
    slack_conn_id: str | None = None
    smtp: Smtp | None = None


class Explain(_Strict):
    """Per-prediction explanations: each row's ``top_k`` SHAP contributions (XGBoost's ``pred_contribs``).

    Off by default: it costs a second pass of the trees per row (see the ``explain_cost`` bench).
    """

    enabled: bool = False
    top_k: int = Field(default=3, ge=1)


class Scoring(_Strict):
    batch_label: str = "daily"
    # Also score with the `challenger` alias into predictions_shadow (never served).
    shadow: bool = False
    # Write explain_features/explain_contributions/explain_base beside each prediction.
    explain: Explain = Field(default_factory=Explain)


class Retention(_Strict):
    """Which registered model versions are kept, deprecated, then deleted (the maintenance DAG).

    Always kept: the ``champion`` and ``challenger`` aliases, the ``keep_last`` newest versions
    and every version named by a predictions partition of the last ``window_days`` (ending at the
    newest scored partition, or the run's day when that is earlier). Any other version is
    deprecated (version tag ``flightdeck.deprecated=<day>``) and, ``grace_days`` later, its model
    artifacts and registry entry are deleted. ``dry_run`` reports the plan without acting.
    """

    enabled: bool = True
    keep_last: int = Field(default=5, ge=1)
    window_days: int = Field(default=30, ge=0)
    grace_days: int = Field(default=7, ge=0)
    dry_run: bool = False
    # When the maintenance DAG runs (a cron expression or an Airflow preset).
    schedule: str = "@daily"


class Timeouts(_Strict):
    """How long work may take before Airflow stops it, and when a late run raises an alert.

    A hung job fails after its ``execution_timeout`` (then retries, as any transient fault);
    a daily run that has not finished ``deadline_hours`` after it was queued raises a
    ``deadline_missed`` alert (an Airflow deadline alert) while it keeps running.
    """

    spark_job_minutes: float = Field(default=120, gt=0)
    task_minutes: float = Field(default=20, gt=0)
    dagrun_hours: float = Field(default=24, gt=0)
    deadline_hours: float | None = Field(default=6, gt=0)
    # How long a day's features wait for the upstream bronze days their windows read (and a
    # day's retrain decision for the earlier days' decisions) before going ahead: features
    # committed marked degraded, naming the missing days; 0 goes ahead at once.
    upstream_wait_hours: float = Field(default=6, ge=0)


class Spark(_Strict):
    """Spark settings passed to every spark-submit (the master comes from the Airflow connection)."""

    conf: dict[str, str] = Field(default_factory=dict)


class Calendar(_Strict):
    """When the platform runs: the ingest DAG's start, schedule, catchup and optional end.

    Days before ``start`` or after ``end`` are refused by ingest (a file for them stays in the
    inbox). A deployment whose start is today runs its first scheduled day tomorrow.
    """

    start: dt.date
    end: dt.date | None = None
    # A cron expression or an Airflow preset (@daily, @hourly, ...).
    schedule: str = "@daily"
    # Airflow's catchup: create the runs of every missed interval since start.
    catchup: bool = False
    # The zone of the schedule (when a day's run starts); partition days come from each source.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _order(self) -> Calendar:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"calendar.end {self.end} is before calendar.start {self.start}")
        return self

    def contains(self, day: dt.date) -> bool:
        """True when ``day`` lies in the configured window."""
        return self.start <= day and (self.end is None or day <= self.end)

    @property
    def window(self) -> str:
        return f"{self.start}..{self.end or 'open'}"


class Arrival(_Strict):
    """When a day's landing files are complete enough to ingest (the ingest DAG's sensor waits for it).

    A day is complete when every ``required`` source has its file (and, with ``ready_marker``,
    the upstream has dropped ``<entity>_<YYYY-MM-DD>.ready`` beside the entity file), or, with
    ``cutoff_hours``, once that many hours have passed since the day ended and the entity
    file is there (ingest then goes ahead with the sources present). The ingest DAG's sensor
    waits in the triggerer (deferred, no worker slot), looking every ``watch_seconds``, and
    fails after ``timeout_hours``. The features and monitoring DAGs' waits for earlier days
    (rescheduled sensors: a task process per look) look every ``poke_seconds``.
    """

    # Sources whose files a day needs (None: the entity and every time series).
    required: list[str] | None = None
    ready_marker: bool = False
    cutoff_hours: float | None = Field(default=None, ge=0)
    poke_seconds: int = Field(default=60, ge=1)
    timeout_hours: float = Field(default=48, gt=0)
    # How often the triggerer looks at the inbox: for a waiting day's files and for late and
    # re-delivered files (a listing each time; on an object store, LIST requests).
    watch_seconds: int = Field(default=5, ge=1)


DAY_RANGE = r"^\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}$"


class Demo(_Strict):
    """The story `flightdeck demo` tells (dates of the dataset, so they live here, never in code)."""

    # Days loaded as history before the first champion is trained (FIRST..LAST each).
    history: list[str] = Field(min_length=1)
    # Days then run one by one through the daily chain (FIRST..LAST).
    days: str = Field(pattern=DAY_RANGE)
    # The simulated upstream delivers an event's outcome this many days after the event
    # (with dataset.labels: the label source's files; 0 or unset: no label files).
    label_delay_days: int | None = Field(default=None, ge=0)

    @field_validator("history")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(DAY_RANGE, v)]
        if bad:
            raise ValueError(f"history ranges {bad} must read FIRST..LAST, e.g. 2024-01-01..2024-03-31")
        return value


class PipelineConfig(_Strict):
    """The whole pipeline configuration (root of the YAML file)."""

    calendar: Calendar
    dataset: Dataset
    arrival: Arrival = Field(default_factory=Arrival)
    features: Features
    label: Label
    lake: Lake
    ingest: Ingest
    validation: Validation
    model: Model
    gate: Gate
    drift: Drift
    scoring: Scoring = Field(default_factory=Scoring)
    retention: Retention = Field(default_factory=Retention)
    alerts: Alerts = Field(default_factory=Alerts)
    spark: Spark = Field(default_factory=Spark)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    demo: Demo | None = None

    @model_validator(mode="after")
    def _task_thresholds(self) -> PipelineConfig:
        missing = self.gate.missing_for(self.model.task)
        if missing:
            raise ValueError(
                f"model.task is {self.model.task}: {', '.join(missing)} must be set (the holdout AUC floor and "
                "the AUC the candidate may lose to the champion), e.g. gate: {min_auc: 0.6, max_auc_regression: "
                "0.01}; a regression model (model.task: regression) is gated on RMSE instead"
            )
        return self

    @model_validator(mode="after")
    def _outcomes_can_be_attached(self) -> PipelineConfig:
        labels = self.dataset.labels
        if labels is not None:
            missing = [k for k in labels.join_on if k not in self.features.passthrough]
            if missing:
                raise ValueError(
                    f"features.passthrough: add {missing}: with dataset.labels, outcomes join the feature rows "
                    "on the entity keys of labels.join_on"
                )
        return self

    @model_validator(mode="after")
    def _required_sources_exist(self) -> PipelineConfig:
        names = [self.dataset.entity.name, *[t.name for t in self.dataset.timeseries]]
        unknown = sorted(set(self.arrival.required or []) - set(names))
        if unknown:
            raise ValueError(f"arrival.required: {unknown} are not sources; have {names}")
        return self

    def required_sources(self) -> list[str]:
        """The sources a day needs before it is complete (``arrival.required``, default all)."""
        names = [self.dataset.entity.name, *[t.name for t in self.dataset.timeseries]]
        return list(self.arrival.required) if self.arrival.required is not None else names

    @model_validator(mode="after")
    def _outputs_clear_of_platform(self) -> PipelineConfig:
        feats = self.features
        named = {f"features.derived.{n}": n for n in feats.derived}
        named |= {f"features.rolling.{r.name}": c for r in feats.rolling for c in r.outputs}
        named |= {f"features.counts.{c.name}": c.name for c in feats.counts}
        named |= {
            f"features.lookups.{lk.source}.columns.{src}": dst
            for lk in feats.lookups
            for src, dst in lk.columns.items()
        }
        named |= {
            f"features.asof_joins.{j.source}.columns.{c}": j.prefix + c for j in feats.asof_joins for c in j.columns
        }
        named["label.name"] = self.label.name
        for key, name in named.items():
            clash = platform_column_clash(name)
            if clash:
                raise ValueError(f"{key}: the output column {name!r} collides with {clash}; choose another name")
        return self

    @field_validator("features")
    @classmethod
    def _no_overlap(cls, value: Features) -> Features:
        both = set(value.numeric) & set(value.categorical)
        if both:
            raise ValueError(f"features {sorted(both)} are listed as both numeric and categorical")
        return value

    def fingerprint(self) -> str:
        """A short, stable hash of the effective configuration (recorded with every model)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _apply_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply FLIGHTDECK__A__B=value overrides onto the parsed YAML mapping."""
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node: dict[str, Any] = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment override {key}: {part!r} is not a section")
            node = child
        node[path[-1]] = yaml.safe_load(value)
    return raw


TODO_MARK = "TODO:"


def todo_keys(node: Any, prefix: str = "") -> list[str]:
    """Keys whose value is still a ``TODO: ...`` choice left by ``flightdeck init``."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in todo_keys(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in todo_keys(value, f"{prefix.rstrip('.')}[{i}].")]
    if isinstance(node, str) and node.strip().startswith(TODO_MARK):
        return [prefix.rstrip(".")]
    return []


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file in force: explicit path, else $FLIGHTDECK_CONFIG, else the flights default."""
    chosen = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Load, override and validate the pipeline configuration.

    Raises:
        ConfigError: the file is missing or unreadable, or a key is missing or invalid
            (the message names the key).
    """
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} not found; set {CONFIG_ENV} or pass --config")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {file} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must hold a mapping at the top level")
    raw = _apply_overrides(raw, os.environ if environ is None else environ)
    todo = todo_keys(raw)
    if todo:
        raise ConfigError(
            f"invalid config {file}: {', '.join(todo)}: still a 'TODO: ...' choice left by flightdeck init; "
            f"make the choice each marks, then run flightdeck check --config {file} --sample <a file>"
        )
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors(include_url=False))
        raise ConfigError(f"invalid config {file}: {problems}") from err
    root = cfg.lake.root
    if not cfg.lake.is_remote and not Path(root.removeprefix("file://")).is_absolute():
        resolved = str(PROJECT_ROOT / root.removeprefix("file://"))
        cfg = cfg.model_copy(update={"lake": Lake(root=resolved)})
    return cfg
