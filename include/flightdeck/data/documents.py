"""The results the data-plane jobs hand on (``runs/<run_key>/<job>.json`` and the task log).

Each job builds one of these :class:`~flightdeck.core.documents.RunDocument` s and calls its
``emit``; the DAGs read them back typed (``IngestResult.read(lake, run_key)``), the UI page and
the tests read the same keys, so the field names are the documents' contract. Unknown fields
are kept, as for every lake document.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_serializer

from flightdeck.core.documents import RunDocument
from flightdeck.core.lake import Lake, json_exists, list_docs, read_json, write_json


class IngestLedgerEntry(BaseModel):
    """Row accounting of one source's partition: every row in is valid or quarantined.

    Ingest counts into it while it classifies rows, then it is written as it is: to the
    ``monitoring/ingest_ledger`` table and into the job's result. (Not the alias ledger:
    that is :class:`flightdeck.model.documents.LedgerEntry`.)
    """

    model_config = ConfigDict(extra="allow")

    date: str
    source: str
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def quarantine_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    @field_serializer("quarantine_share")
    def _rounded(self, share: float) -> float:
        return round(share, 6)


class IngestResult(RunDocument):
    """What ``jobs/ingest.py`` did for a range of dates: ``runs/<key>/ingest.json``."""

    NAME: ClassVar[str] = "ingest"

    job: Literal["ingest"] = "ingest"
    partitions: list[str]
    references: dict[str, int]  # rows per reference table ingested by this run (none: bronze had them)
    ledger: dict[str, dict[str, IngestLedgerEntry]]  # date -> source -> accounting
    rows_in: int
    rows_quarantined: int
    missing_files: dict[str, list[str]]  # date -> time series without a landing file
    extra_columns: dict[str, dict[str, list[str]]]  # date -> source -> ignored columns
    budget_failures: list[str]
    validation_failures: list[str]
    seconds: float
    cpu_seconds: float | None = None  # CPU seconds of the job's driver process (Spark executors not counted)


class BuildFeaturesResult(RunDocument):
    """What ``jobs/build_features.py`` wrote: ``runs/<key>/build_features.json``."""

    NAME: ClassVar[str] = "build_features"

    job: Literal["build_features"] = "build_features"
    table: str
    partitions: list[str]
    rows: dict[str, int]  # date -> feature rows
    timeseries_partitions: dict[str, list[str]]  # time series -> the bronze partitions the as-of joins read
    history_partitions: list[str]  # the bronze entity partitions the rolling windows read besides the dates
    seconds: float
    cpu_seconds: float | None = None  # CPU seconds of the job's driver process (Spark executors not counted)


class PartitionVerdict(BaseModel):
    """One feature partition's validation outcome."""

    model_config = ConfigDict(extra="allow")

    success: bool
    n_rows: int
    failed: list[str]  # one message per failed expectation


class ValidateFeaturesResult(RunDocument):
    """What ``jobs/validate_features.py`` found: ``runs/<key>/validate_features.json``."""

    NAME: ClassVar[str] = "validate_features"

    job: Literal["validate_features"] = "validate_features"
    partitions: list[str]
    success: bool
    reports: dict[str, PartitionVerdict]
    data_docs_run: str | None  # the MLflow run holding the Data Docs, when logged
    seconds: float
    cpu_seconds: float | None = None  # CPU seconds of the job's driver process (Spark executors not counted)


class FeatureStatus(BaseModel):
    """Whether ``features/<entity>/date=D`` read every upstream day its windows need.

    ``monitoring/feature_status/D.json``, written by the features DAG after each build of D
    (:func:`flightdeck.data.feature_run.record_feature_status`): ``degraded`` when the build
    went ahead, past ``timeouts.upstream_wait_hours``, without some of the bronze days its
    rolling windows read (``missing``: day -> tables). A rebuild with every day committed
    rewrites it complete. The UI page (degraded partitions) and the asset event read it.
    """

    model_config = ConfigDict(extra="allow")

    partition: str
    degraded: bool
    missing: dict[str, list[str]] = Field(default_factory=dict)  # day -> bronze tables not committed
    needed: list[str] = Field(default_factory=list)  # every upstream day the windows read
    run: str | None = None  # the features run that built it
    # The commit of every bronze partition the build may read ("table/day" -> stamp, None: not
    # committed; see flightdeck.data.feature_run.input_stamps), and whether that build committed
    # and passed validation: a later run finding the same stamps has nothing to rebuild.
    inputs: dict[str, str | None] = Field(default_factory=dict)
    built: bool = False

    @property
    def missing_days(self) -> list[str]:
        return sorted(self.missing)


def write_feature_status(lake: Lake, status: FeatureStatus) -> None:
    """Write (or overwrite) the status of the partition."""
    write_json(lake.feature_status(status.partition), status.model_dump())


def read_feature_status(lake: Lake, partition: str) -> FeatureStatus | None:
    """The status of ``partition``, or None when the features DAG never built it (e.g. the bootstrap did)."""
    path = lake.feature_status(partition)
    if not json_exists(path):
        return None
    return FeatureStatus.model_validate(read_json(path))


def read_feature_statuses(lake: Lake) -> list[FeatureStatus]:
    """Every feature status recorded, oldest partition first."""
    return [FeatureStatus.model_validate(read_json(path)) for path in list_docs(lake.feature_statuses())]
