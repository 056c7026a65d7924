"""flightdeck's metrics in the Prometheus exposition format, read from the lake at scrape time.

:class:`LakeCollector` is a ``prometheus_client`` custom collector: every scrape reads the lake's
own documents through their planes' readers and yields metric families, so the numbers are
always what the lake says (no counters kept in a process that may restart, nothing
hand-formatted). :func:`exposition` renders one scrape; the flightdeck plugin serves it at
``/flightdeck/metrics`` (see :func:`flightdeck.ops.ui_page.create_app`).

What is exported (every name starts with ``flightdeck_``; ``METRICS`` lists them):

- ingest accounting of the last ``ingest_days`` ingested days, per source and partition
  (``monitoring/ingest_ledger``): rows in, valid, quarantined;
- job wall time per stage (the ``seconds`` of the run documents ``runs/<key>/<stage>.json``)
  as a summary over all runs and the last run's value, and the job's CPU seconds when the
  document records them (``cpu_seconds``);
- rows scored (the committed ``predictions`` partitions' parquet footers) and the last
  scoring run's throughput (rows / seconds of ``runs/<key>/score.json``);
- PSI per feature, prediction PSI and the drifted share of the newest drift report
  (``monitoring/drift_reports/D.json``), and the live model metric (AUC and log loss, or RMSE
  and MAE) of the newest labelled day with the holdout value it is compared with;
- gate decisions counted by outcome (``runs/<key>/gate.json``);
- the champion and challenger versions by the alias ledger (``monitoring/promotions``);
- freshness: when the newest predictions partition was committed (its ``_SUCCESS`` marker,
  by the store's clock) and its age in seconds;
- retrain requests recorded and still open (:func:`flightdeck.monitoring.retrain.is_open`).

Each part degrades on its own: a part that cannot be read is skipped and counted in
``flightdeck_metrics_errors{part=...}``, so one broken document never empties the scrape.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from flightdeck.core.config import PipelineConfig
from flightdeck.core.documents import RunDocument
from flightdeck.core.lake import (
    Lake,
    LakeError,
    commit_object,
    committed_files,
    list_docs,
    list_folders,
    open_binary,
    read_json,
    stored_at,
)
from flightdeck.data.documents import BuildFeaturesResult, IngestLedgerEntry, IngestResult, ValidateFeaturesResult
from flightdeck.data.ingest import LEDGER_TABLE
from flightdeck.model import registry
from flightdeck.model.documents import GateResult, ScoreResult, TrainResult
from flightdeck.monitoring.documents import read_retrain_requests
from flightdeck.monitoring.retrain import is_open

log = logging.getLogger(__name__)

PREFIX = "flightdeck_"
INGEST_DAYS = 7  # ingest accounting of this many newest days (older days stay in the lake, not in the scrape)
LABEL_LOOKBACK = 60  # drift reports searched (newest first) for the newest labelled day

# The job stages whose run documents record their wall time, by document name (runs/<key>/<NAME>.json).
STAGES: dict[str, type[RunDocument]] = {
    IngestResult.NAME: IngestResult,
    BuildFeaturesResult.NAME: BuildFeaturesResult,
    ValidateFeaturesResult.NAME: ValidateFeaturesResult,
    TrainResult.NAME: TrainResult,
    ScoreResult.NAME: ScoreResult,
}

# Every metric family the collector can export (a summary adds _sum/_count, a counter _total).
METRICS: dict[str, str] = {
    "flightdeck_ingest_rows_in": "rows read from landing, per source and partition (newest days)",
    "flightdeck_ingest_rows_valid": "rows written to bronze, per source and partition",
    "flightdeck_ingest_rows_quarantined": "rows written to quarantine, per source and partition",
    "flightdeck_job_wall_seconds": "wall seconds of the job runs of a stage (summary over recorded runs)",
    "flightdeck_job_last_wall_seconds": "wall seconds of the newest run of a stage",
    "flightdeck_job_last_cpu_seconds": "CPU seconds of the newest run of a stage (its driver process), when recorded",
    "flightdeck_scored_rows": "prediction rows in the committed predictions partitions (all, or the newest)",
    "flightdeck_scoring_rows_per_second": "rows scored per wall second by the newest scoring run",
    "flightdeck_feature_psi": "PSI of each feature on the newest monitored day",
    "flightdeck_prediction_psi": "PSI of the model's scores on the newest monitored day",
    "flightdeck_drifted_share": "share of features that drifted on the newest monitored day",
    "flightdeck_live_metric": "model metric on the newest labelled day (roc_auc, log_loss or rmse, mae)",
    "flightdeck_holdout_metric": "the holdout metric the live metric is compared with",
    "flightdeck_gate_decisions": "gate decisions recorded, by decision (pass, fail)",
    "flightdeck_champion_version": "the model version the champion alias points to, by the alias ledger",
    "flightdeck_challenger_version": "the model version the challenger alias points to, by the alias ledger",
    "flightdeck_predictions_last_commit_timestamp_seconds": "when the newest predictions partition was committed",
    "flightdeck_predictions_freshness_seconds": "age of the newest predictions partition's commit",
    "flightdeck_retrain_requests": "retrain requests recorded",
    "flightdeck_retrain_requests_open": "retrain requests neither consumed nor expired",
    "flightdeck_metrics_errors": "parts of the lake the last scrape could not read",
}


def _name(family: str) -> str:
    if family not in METRICS:  # every exported family is declared (and documented) in METRICS
        raise KeyError(f"metric family {family!r} is not declared in METRICS")
    return family


def _gauge(family: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(_name(family), METRICS[family], labels=list(labels))


# --- readers (the lake's documents, through their planes) ---------------------------------------


def _parquet_paths(lake: Lake, folder: str) -> list[str]:
    if not lake.is_remote:
        return [str(p) for p in sorted(Path(folder).glob("*.parquet"))]
    return [path for path in committed_files(folder) if path.endswith(".parquet")]  # S3: the pointer's files


def _parquet_rows(lake: Lake, folder: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in _parquet_paths(lake, folder):
        with open_binary(path) as handle:
            rows.extend(pq.read_table(handle).to_pylist())
    return rows


def _parquet_count(lake: Lake, folder: str) -> int:
    import pyarrow.parquet as pq

    total = 0
    for path in _parquet_paths(lake, folder):
        with open_binary(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def ingest_entries(lake: Lake, days: int = INGEST_DAYS) -> list[IngestLedgerEntry]:
    """The ingest ledger's entries of the newest ``days`` committed days, oldest first."""
    entries: list[IngestLedgerEntry] = []
    for date in lake.committed_partitions("monitoring", LEDGER_TABLE)[-days:]:
        for row in _parquet_rows(lake, lake.partition("monitoring", LEDGER_TABLE, date)):
            reasons = row.get("reasons")
            row["reasons"] = json.loads(reasons) if isinstance(reasons, str) else reasons or {}
            row.pop("quarantine_share", None)  # computed by the document
            entries.append(IngestLedgerEntry.model_validate({**row, "date": date.isoformat()}))
    return entries


@dataclass(frozen=True)
class StageRuns:
    """The recorded runs of one job stage: how many, their total wall seconds, the newest run."""

    count: int
    seconds: float
    last: RunDocument
    last_at: dt.datetime


def _run_docs(lake: Lake, names: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(name, path)`` of every run document of these kinds under ``runs/`` (one listing per run folder)."""
    wanted = {f"{name}.json": name for name in names}
    for key in list_folders(lake.runs()):
        for path in list_docs(f"{lake.runs()}/{key}"):
            name = wanted.get(path.rsplit("/", 1)[-1])
            if name is not None:
                yield name, path


def _read(cls: type[RunDocument], path: str) -> RunDocument | None:
    try:
        return cls.model_validate(read_json(path))
    except (LakeError, FileNotFoundError):  # removed between the listing and the read
        return None
    except ValueError as err:  # pydantic's ValidationError, a JSON error: an older or broken document
        log.info("metrics: skipping %s: %s", path, err)
        return None


def stage_runs(lake: Lake) -> dict[str, StageRuns]:
    """Per stage, the run documents under ``runs/`` that record ``seconds`` (unreadable ones skipped)."""
    found: dict[str, list[tuple[dt.datetime, RunDocument]]] = {}
    for stage, path in _run_docs(lake, STAGES):
        doc = _read(STAGES[stage], path)
        if doc is not None and _seconds(doc) is not None:
            found.setdefault(stage, []).append((stored_at(path), doc))
    out: dict[str, StageRuns] = {}
    for stage, timed in found.items():
        at, last = max(timed, key=lambda pair: pair[0])
        out[stage] = StageRuns(len(timed), sum(_seconds(d) or 0.0 for _, d in timed), last, at)
    return out


def _seconds(doc: RunDocument, field: str = "seconds") -> float | None:
    value = getattr(doc, field, None)
    if value is None and doc.model_extra:
        value = doc.model_extra.get(field)
    return None if value is None else float(value)


def gate_decisions(lake: Lake) -> dict[str, int]:
    """How many gate decisions passed and failed (``runs/<key>/gate.json``)."""
    counts = {"pass": 0, "fail": 0}
    for _, path in _run_docs(lake, [GateResult.NAME]):
        gate = _read(GateResult, path)
        if isinstance(gate, GateResult):
            counts["pass" if gate.passed else "fail"] += 1
    return counts


def newest_drift_reports(lake: Lake) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The newest drift report, and the newest one with a performance section (labels arrived)."""
    paths = list_docs(lake.drift_reports())
    newest = dict(read_json(paths[-1])) if paths else None
    labelled = None
    for path in reversed(paths[-LABEL_LOOKBACK:]):
        report = newest if path == paths[-1] else dict(read_json(path))
        if report and report.get("performance"):
            labelled = report
            break
    return newest, labelled


# --- the collector -----------------------------------------------------------------------------


class LakeCollector(Collector):
    """Reads the lake at every scrape and yields flightdeck's metric families.

    Args:
        config: the pipeline configuration, or a callable returning it (loaded per scrape, so a
            configuration change needs no restart).
        lake: the lake to read (default: the configuration's).
        clock: seconds since the epoch, for the freshness age (``time.time`` by default).
    """

    def __init__(
        self,
        config: PipelineConfig | Callable[[], PipelineConfig],
        *,
        lake: Lake | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._lake = lake
        self._clock = clock

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not read the lake."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One scrape: every part read fresh, each part degrading on its own."""
        cfg = self._config() if callable(self._config) else self._config
        lake = self._lake or Lake(cfg.lake.root)
        errors = _gauge("flightdeck_metrics_errors", ["part"])
        runs = functools.cache(lambda: stage_runs(lake))  # read once per scrape, used by two parts
        parts: tuple[tuple[str, Callable[[], list[Metric]]], ...] = (
            ("ingest", lambda: self._ingest(lake)),
            ("jobs", lambda: self._jobs(runs())),
            ("scoring", lambda: self._scoring(cfg, lake, runs())),
            ("drift", lambda: self._drift(lake)),
            ("gate", lambda: self._gate(lake)),
            ("aliases", lambda: self._aliases(cfg, lake)),
            ("retrain_requests", lambda: self._requests(cfg, lake)),
        )
        for part, read in parts:
            try:
                families = read()
            except Exception as err:  # one unreadable part must not empty the scrape
                log.warning("metrics: %s unavailable: %s", part, err)
                errors.add_metric([part], 1)
                continue
            errors.add_metric([part], 0)
            yield from families
        yield errors

    def _ingest(self, lake: Lake) -> list[Metric]:
        names = ("rows_in", "rows_valid", "rows_quarantined")
        families = {n: _gauge(f"flightdeck_ingest_{n}", ["source", "partition"]) for n in names}
        for entry in ingest_entries(lake):
            for n in names:
                families[n].add_metric([entry.source, entry.date], getattr(entry, n))
        return list(families.values())

    def _jobs(self, stages: Mapping[str, StageRuns]) -> list[Metric]:
        wall = SummaryMetricFamily(
            _name("flightdeck_job_wall_seconds"), METRICS["flightdeck_job_wall_seconds"], labels=["stage"]
        )
        last = _gauge("flightdeck_job_last_wall_seconds", ["stage"])
        cpu = _gauge("flightdeck_job_last_cpu_seconds", ["stage"])
        for stage, runs in sorted(stages.items()):
            wall.add_metric([stage], count_value=runs.count, sum_value=runs.seconds)
            last.add_metric([stage], _seconds(runs.last) or 0.0)
            if (cpu_seconds := _seconds(runs.last, "cpu_seconds")) is not None:
                cpu.add_metric([stage], cpu_seconds)
        return [wall, last, cpu]

    def _scoring(self, cfg: PipelineConfig, lake: Lake, stages: Mapping[str, StageRuns]) -> list[Metric]:
        entity = cfg.dataset.entity.name
        scored = _gauge("flightdeck_scored_rows", ["scope", "partition"])
        committed = _gauge("flightdeck_predictions_last_commit_timestamp_seconds", ["partition"])
        fresh = _gauge("flightdeck_predictions_freshness_seconds", ["partition"])
        throughput = _gauge("flightdeck_scoring_rows_per_second", ["model_version"])
        partitions = lake.committed_partitions("predictions", entity)
        if partitions:
            counts = {d: _parquet_count(lake, lake.partition("predictions", entity, d)) for d in partitions}
            newest = partitions[-1]
            scored.add_metric(["all", ""], sum(counts.values()))
            scored.add_metric(["newest", newest.isoformat()], counts[newest])
            at = stored_at(commit_object(lake.partition("predictions", entity, newest))).timestamp()
            committed.add_metric([newest.isoformat()], at)
            fresh.add_metric([newest.isoformat()], max(0.0, self._clock() - at))
        score_runs = stages.get(ScoreResult.NAME)
        if score_runs is not None and isinstance(score_runs.last, ScoreResult):
            seconds = _seconds(score_runs.last) or 0.0
            rows = sum(score_runs.last.partitions.values())
            if seconds > 0:
                throughput.add_metric([score_runs.last.model_version], rows / seconds)
        return [scored, committed, fresh, throughput]

    def _drift(self, lake: Lake) -> list[Metric]:
        feature = _gauge("flightdeck_feature_psi", ["feature", "partition"])
        prediction = _gauge("flightdeck_prediction_psi", ["partition"])
        share = _gauge("flightdeck_drifted_share", ["partition"])
        live = _gauge("flightdeck_live_metric", ["metric", "partition"])
        holdout = _gauge("flightdeck_holdout_metric", ["metric", "model_version"])
        newest, labelled = newest_drift_reports(lake)
        if newest is not None:
            day = str(newest["date"])
            for name, value in sorted((newest.get("psi") or {}).items()):
                if value is not None:
                    feature.add_metric([name, day], float(value))
            if newest.get("prediction_psi") is not None:
                prediction.add_metric([day], float(newest["prediction_psi"]))
            share.add_metric([day], float(newest.get("drifted_share") or 0.0))
        if labelled is not None:
            perf: Mapping[str, Any] = labelled["performance"]
            day = str(perf.get("date") or labelled["date"])
            reference: Mapping[str, Any] = perf.get("reference") or {}
            version = str(perf.get("model_version") or labelled.get("model_version") or "")
            for metric in ("roc_auc", "log_loss", "rmse", "mae"):
                if perf.get(metric) is not None:
                    live.add_metric([metric, day], float(perf[metric]))
                if reference.get(metric) is not None:
                    holdout.add_metric([metric, version], float(reference[metric]))
        return [feature, prediction, share, live, holdout]

    def _gate(self, lake: Lake) -> list[Metric]:
        family = CounterMetricFamily(
            _name("flightdeck_gate_decisions"), METRICS["flightdeck_gate_decisions"], labels=["decision"]
        )
        for decision, count in gate_decisions(lake).items():
            family.add_metric([decision], count)
        return [family]

    def _aliases(self, cfg: PipelineConfig, lake: Lake) -> list[Metric]:
        out: list[Metric] = []
        for alias in (registry.CHAMPION, registry.CHALLENGER):
            family = _gauge(f"flightdeck_{alias}_version", ["model"])
            entries = registry.ledger_entries(cfg.model.name, lake=lake, alias=alias)
            if entries:
                head = max(entries, key=lambda e: e.seq)
                if head.to.isdigit():
                    family.add_metric([cfg.model.name], int(head.to))
            out.append(family)
        return out

    def _requests(self, cfg: PipelineConfig, lake: Lake) -> list[Metric]:
        requests = read_retrain_requests(lake)
        total = _gauge("flightdeck_retrain_requests")
        open_now = _gauge("flightdeck_retrain_requests_open")
        total.add_metric([], len(requests))
        # "Open" is judged on data days, as the policy judges it: at the newest day the lake knows.
        reports = list_docs(lake.drift_reports())
        days = [dt.date.fromisoformat(Path(p).stem) for p in reports[-1:]]
        days += [dt.date.fromisoformat(r.partition) for r in requests]
        if days:
            today = max(days)
            open_now.add_metric([], sum(1 for r in requests if is_open(r.to_doc(), today, cfg.drift)))
        else:
            open_now.add_metric([], 0)
        return [total, open_now]


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry of its own holding only ``collector`` (never the process-global default one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def exposition(reg: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """One scrape of the registry and its content type, in the format the scraper accepts.

    Prometheus asks (``Accept``) for OpenMetrics or the text format 0.0.4; without a header
    the text format is served.
    """
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(reg), content_type
