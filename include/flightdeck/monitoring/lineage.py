"""Lineage of the Spark jobs: which lake partitions, landing files and model versions each run
read and wrote, as OpenLineage dataset references.

The Airflow side (DAG runs, task runs, their parents) comes from Airflow's OpenLineage
provider; a Spark job's inputs and outputs come from here, derived from the job's own run
document (what it committed), not from a Spark listener jar, which cannot be installed
without Maven. :func:`job_lineage` is pure: the operator hands it the run document and turns
the result into the provider's ``OperatorLineage`` (``flightdeck.ops.dagkit``).

Dataset names follow OpenLineage's naming conventions: a local file or folder is namespace
``file`` with its absolute path; an object is namespace ``s3://<bucket>`` with its key. A
partition is its own dataset (``.../bronze/flights/date=YYYY-MM-DD``), so one day is followed
from its landing file to its predictions. A model version is namespace ``mlflow`` with
MLflow's own model URI (``models:/flights_delay/3``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flightdeck.core.config import PipelineConfig
from flightdeck.core.documents import RunDocument
from flightdeck.core.lake import Lake
from flightdeck.data.documents import BuildFeaturesResult, IngestResult, ValidateFeaturesResult
from flightdeck.data.landing import inbox_file
from flightdeck.model.documents import Evaluation, ScoreResult, TrainResult
from flightdeck.monitoring.documents import DriftSummary

MODEL_NAMESPACE = "mlflow"
# The jobs whose lineage is known, by the name of their run document (``jobs/<name>.py``).
JOBS = ("ingest", "build_features", "validate_features", "train", "evaluate", "score", "detect_drift")


@dataclass(frozen=True, order=True)
class DatasetRef:
    """One OpenLineage dataset: ``namespace`` and ``name`` as the naming conventions say."""

    namespace: str
    name: str


@dataclass(frozen=True)
class JobLineage:
    """What one job run read and wrote."""

    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)


def dataset(path: str) -> DatasetRef:
    """The dataset of a lake path: ``file`` + absolute path, or ``s3://<bucket>`` + key."""
    for scheme in ("s3a://", "s3://"):
        if path.startswith(scheme):
            bucket, _, key = path[len(scheme) :].partition("/")
            return DatasetRef(f"s3://{bucket}", key.rstrip("/"))
    if path.startswith("file://"):
        path = path[len("file://") :]
    return DatasetRef("file", path.rstrip("/"))


def model_dataset(model_name: str, version: str) -> DatasetRef:
    """The dataset of a registered model version: MLflow's model URI."""
    return DatasetRef(MODEL_NAMESPACE, f"models:/{model_name}/{version}")


def _partitions(lake: Lake, zone: str, table: str, dates: Iterable[str | dt.date]) -> list[DatasetRef]:
    return [dataset(lake.partition(zone, table, day)) for day in dates]


def _unique(refs: Iterable[DatasetRef]) -> list[DatasetRef]:
    return sorted(set(refs))


def _ingest(cfg: PipelineConfig, lake: Lake, doc: IngestResult) -> JobLineage:
    sources = {source.name: source for source in cfg.dataset.daily_sources}
    inputs: list[DatasetRef] = []
    outputs: list[DatasetRef] = []
    for day, by_source in doc.ledger.items():
        for name, entry in by_source.items():
            if name in sources and entry.rows_in:
                inputs.append(dataset(inbox_file(lake, sources[name], day)))
            outputs.append(dataset(lake.partition("bronze", name, day)))
            if entry.rows_quarantined:
                outputs.append(dataset(lake.partition("quarantine", name, day)))
    for reference in cfg.dataset.reference:
        if reference.name in doc.references:
            inputs.append(dataset(lake.reference_file(reference.name, reference.format.extension)))
    return JobLineage(_unique(inputs), _unique(outputs))


def _build_features(cfg: PipelineConfig, lake: Lake, doc: BuildFeaturesResult) -> JobLineage:
    entity = cfg.dataset.entity.name
    inputs = _partitions(lake, "bronze", entity, [*doc.partitions, *doc.history_partitions])
    for table, days in doc.timeseries_partitions.items():
        inputs += _partitions(lake, "bronze", table, days)
    return JobLineage(_unique(inputs), _unique(_partitions(lake, "features", doc.table, doc.partitions)))


def _validate(cfg: PipelineConfig, lake: Lake, doc: ValidateFeaturesResult) -> JobLineage:
    entity = cfg.dataset.entity.name
    return JobLineage(_unique(_partitions(lake, "features", entity, doc.partitions)), [])


def _train(cfg: PipelineConfig, lake: Lake, doc: TrainResult) -> JobLineage:
    days = [*doc.train_partitions, *doc.validation_partitions, *doc.holdout_partitions]
    inputs = _partitions(lake, "features", cfg.dataset.entity.name, days)
    return JobLineage(_unique(inputs), [model_dataset(doc.model_name, doc.version)])


def _evaluate(cfg: PipelineConfig, lake: Lake, doc: Evaluation) -> JobLineage:
    inputs = _partitions(lake, "features", cfg.dataset.entity.name, doc.holdout_partitions)
    inputs.append(model_dataset(doc.model_name, doc.candidate.version))
    if doc.champion is not None:
        inputs.append(model_dataset(doc.model_name, doc.champion.version))
    return JobLineage(_unique(inputs), [])


def _score(cfg: PipelineConfig, lake: Lake, doc: ScoreResult) -> JobLineage:
    entity = cfg.dataset.entity.name
    inputs = [*_partitions(lake, "features", entity, doc.partitions), model_dataset(doc.model_name, doc.model_version)]
    return JobLineage(_unique(inputs), _unique(_partitions(lake, "predictions", entity, doc.partitions)))


def _detect_drift(cfg: PipelineConfig, lake: Lake, doc: DriftSummary) -> JobLineage:
    entity = cfg.dataset.entity.name
    inputs = [
        dataset(lake.partition("predictions", entity, doc.date)),
        dataset(lake.partition("features", entity, doc.date)),
        model_dataset(doc.model_name, doc.model_version),
    ]
    return JobLineage(_unique(inputs), [dataset(lake.drift_report(doc.date))])


_READERS: dict[str, tuple[type[RunDocument], Callable[[PipelineConfig, Lake, Any], JobLineage]]] = {
    "ingest": (IngestResult, _ingest),
    "build_features": (BuildFeaturesResult, _build_features),
    "validate_features": (ValidateFeaturesResult, _validate),
    "train": (TrainResult, _train),
    "evaluate": (Evaluation, _evaluate),
    "score": (ScoreResult, _score),
    "detect_drift": (DriftSummary, _detect_drift),
}


def job_lineage(cfg: PipelineConfig, lake: Lake, job: str, document: dict[str, Any]) -> JobLineage:
    """What a job run read and wrote, from its run document (``runs/<key>/<job>.json``).

    Raises:
        ValueError: ``job`` is not one of :data:`JOBS`.
    """
    if job not in _READERS:
        raise ValueError(f"no lineage known for job {job!r}; known: {', '.join(JOBS)}")
    kind, derive = _READERS[job]
    return derive(cfg, lake, kind.model_validate(document))


def read_events(path: str) -> list[dict[str, Any]]:
    """The OpenLineage events of a file transport (one JSON event per line), in file order."""
    import json
    from pathlib import Path

    lines = Path(path).read_text(encoding="utf-8").splitlines() if Path(path).exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def producers_of(events: Iterable[dict[str, Any]], ref: DatasetRef) -> list[dict[str, Any]]:
    """The COMPLETE events whose outputs include ``ref``, newest last."""
    found = []
    for event in events:
        if event.get("eventType") != "COMPLETE":
            continue
        outputs = {(d["namespace"], d["name"]) for d in event.get("outputs", [])}
        if (ref.namespace, ref.name) in outputs:
            found.append(event)
    return found


def inputs_of(event: dict[str, Any]) -> list[DatasetRef]:
    """The input datasets of an event."""
    return sorted(DatasetRef(d["namespace"], d["name"]) for d in event.get("inputs", []))


def trace_back(events: list[dict[str, Any]], start: DatasetRef, depth: int = 8) -> list[DatasetRef]:
    """Every dataset ``start`` was derived from, following the newest producer of each input,
    breadth first (``start`` excluded)."""
    seen: dict[DatasetRef, None] = {}
    frontier = [start]
    for _ in range(depth):
        nxt: list[DatasetRef] = []
        for ref in frontier:
            producers = producers_of(events, ref)
            if not producers:
                continue
            for parent in inputs_of(producers[-1]):
                if parent not in seen and parent != start:
                    seen[parent] = None
                    nxt.append(parent)
        frontier = nxt
    return list(seen)
