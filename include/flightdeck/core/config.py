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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    """One column of a raw file."""

    name: str
    type: ColumnType
    required: bool = False


class DateColumns(_Strict):
    """Columns holding the local calendar date of a row (its partition)."""

    year: str
    month: str
    day: str


class TimeSeriesSource(_Strict):
    """A table that lands daily and is keyed by time (e.g. weather)."""

    name: str
    source_file: str
    columns: list[Column]
    keys: list[str]
    date_columns: DateColumns
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

    @model_validator(mode="after")
    def _keys_are_columns(self) -> TimeSeriesSource:
        names = set(self.column_names)
        missing = [k for k in self.keys if k not in names]
        dates = [self.date_columns.year, self.date_columns.month, self.date_columns.day]
        missing += [d for d in dates if d not in names]
        missing += [c for c in self.references if c not in names]
        if missing:
            raise ValueError(f"source {self.name!r}: keys/date_columns/references {missing} are not among its columns")
        return self


class ReferenceSource(_Strict):
    """A static table that lands whole (e.g. planes, airports)."""

    name: str
    source_file: str
    key: str
    # Declared types of non-string columns (the rest stay strings); never inferred.
    column_types: dict[str, ColumnType] = Field(default_factory=dict)
    null_values: list[str] = Field(default_factory=lambda: ["NA", ""])


class Dataset(_Strict):
    """What the data is and where it comes from."""

    name: str
    source_package: str
    partition_start: dt.date
    partition_end: dt.date
    entity: TimeSeriesSource
    timeseries: list[TimeSeriesSource] = Field(default_factory=list)
    reference: list[ReferenceSource] = Field(default_factory=list)

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


class Model(_Strict):
    name: str
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
    """Thresholds of the promotion gate (see :func:`flightdeck.model.gate.decide`)."""

    min_auc: float = Field(ge=0, le=1)
    max_auc_regression: float = Field(ge=0, le=1)
    # Per-slice checks: holdout columns whose values are slices (e.g. carrier, origin, month).
    slices: list[str] = Field(default_factory=list)
    max_slice_regression: float = Field(default=0.05, ge=0, le=1)
    # Slices with fewer rows (or a single class) are reported, never judged.
    min_slice_rows: int = Field(default=200, ge=1)
    # Paired bootstrap of the AUC difference (candidate - champion) on the holdout; the
    # gate fails when the whole interval lies below -max_auc_regression.
    bootstrap_samples: int = Field(default=200, ge=0)
    bootstrap_confidence: float = Field(default=0.95, gt=0, lt=1)
    # A human approves before the champion moves (Airflow HITL ApprovalOperator).
    require_approval: bool = False


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
    # Performance drift once labels arrive (day D-1's outcomes, checked on day D), against
    # the holdout metrics of the model version that made the predictions.
    max_auc_drop: float = Field(default=0.05, ge=0, le=1)
    max_log_loss_rise: float = Field(default=0.1, ge=0)
    min_labeled_rows: int = Field(default=200, ge=1)
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
    host: str
    port: int = 25
    sender: str
    to: list[str] = Field(min_length=1)
    starttls: bool = False


class Alerts(_Strict):
    """Where alerts go besides the log: a JSON-lines file, a webhook (POST JSON), SMTP."""

    # JSON-lines file; relative paths are under the lake's monitoring/alerts/ folder.
    file: str | None = "alerts.jsonl"
    webhook_url: str | None = None
    # An Airflow connection holding the webhook (host: the URL; password: a bearer token), so
    # its secret lives in Airflow's connection store, masked in task logs, never in the YAML.
    webhook_conn_id: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    smtp: Smtp | None = None


class Scoring(_Strict):
    batch_label: str = "daily"
    # Also score with the `challenger` alias into predictions_shadow (never served).
    shadow: bool = False


class Spark(_Strict):
    """Spark settings passed to every spark-submit (the master comes from the Airflow connection)."""

    conf: dict[str, str] = Field(default_factory=dict)


class PipelineConfig(_Strict):
    """The whole pipeline configuration (root of the YAML file)."""

    dataset: Dataset
    features: Features
    label: Label
    lake: Lake
    ingest: Ingest
    validation: Validation
    model: Model
    gate: Gate
    drift: Drift
    scoring: Scoring = Field(default_factory=Scoring)
    alerts: Alerts = Field(default_factory=Alerts)
    spark: Spark = Field(default_factory=Spark)

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
