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
    return JobLineage(_unique(inputs), _unique(_partitions(lake, "features", entity, doc.partitions)))


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


@dataclass(frozen=True)
class LineageGraph:
    """Where a dataset came from: its ancestors by distance (``levels[0]`` is the start) and
    the edges (input, output) between them."""

    levels: list[list[DatasetRef]]
    edges: list[tuple[DatasetRef, DatasetRef]]


def lineage_graph(events: list[dict[str, Any]], start: DatasetRef, depth: int = 8) -> LineageGraph:
    """Follow the newest producer of each dataset back from ``start``, breadth first."""
    seen = {start}
    levels = [[start]]
    edges: list[tuple[DatasetRef, DatasetRef]] = []
    for _ in range(depth):
        nxt: list[DatasetRef] = []
        for ref in levels[-1]:
            producers = producers_of(events, ref)
            if not producers:
                continue
            for parent in inputs_of(producers[-1]):
                edges.append((parent, ref))
                if parent not in seen:
                    seen.add(parent)
                    nxt.append(parent)
        if not nxt:
            break
        levels.append(sorted(nxt))
    return LineageGraph(levels, edges)


def trace_back(events: list[dict[str, Any]], start: DatasetRef, depth: int = 8) -> list[DatasetRef]:
    """Every dataset ``start`` was derived from, nearest first (``start`` excluded)."""
    return [ref for level in lineage_graph(events, start, depth).levels[1:] for ref in level]


def short_name(ref: DatasetRef, lake_root: str) -> str:
    """A label for a dataset: its path inside the lake, or the model URI."""
    root = dataset(lake_root)
    if ref.namespace == root.namespace and ref.name.startswith(root.name + "/"):
        return ref.name[len(root.name) + 1 :]
    return ref.name


def plot_lineage(graph: LineageGraph, lake_root: str, path: str, title: str = "") -> str:
    """Draw the graph left to right (sources left, the start right) as a PNG; returns ``path``.

    Long ancestries (a training window of many partitions) are drawn as their first and last
    members and a count, so one day stays readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [_condense(level) for level in reversed(graph.levels)]
    height = max(len(c) for c in columns)
    fig, ax = plt.subplots(figsize=(4.2 * len(columns), 0.75 * height + 1.5))
    where: dict[DatasetRef, tuple[float, float]] = {}
    for x, column in enumerate(columns):
        for y, (ref, label) in enumerate(column):
            pos = (x * 1.0, (height - 1) / 2 - y + (len(column) - 1) / 2 - (height - 1) / 2)
            color = "#fde2b3" if ref.namespace == MODEL_NAMESPACE else "#d7e8fb"
            ax.text(*pos, label, ha="center", va="center", fontsize=7, bbox={"boxstyle": "round", "fc": color})
            where[ref] = pos
    for parent, child in graph.edges:
        if parent in where and child in where:
            (x0, y0), (x1, y1) = where[parent], where[child]
            ax.annotate("", (x1 - 0.3, y1), (x0 + 0.3, y0), arrowprops={"arrowstyle": "->", "color": "#888"})
    ax.set_xlim(-0.5, len(columns) - 0.5)
    ax.set_ylim(-height / 2 - 0.5, height / 2 + 0.5)
    ax.axis("off")
    ax.set_title(title or f"lineage of {short_name(graph.levels[0][0], lake_root)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(ref: DatasetRef) -> str:
    return ref.name if ref.namespace == MODEL_NAMESPACE else "/".join(ref.name.split("/")[-3:])


def _condense(level: list[DatasetRef], keep: int = 4) -> list[tuple[DatasetRef, str]]:
    labels = [(ref, _label(ref)) for ref in level]
    if len(labels) <= keep + 1:
        return labels
    more = (labels[keep - 1][0], f"... {len(labels) - keep} more ...")
    return [*labels[: keep - 1], more, labels[-1]]
