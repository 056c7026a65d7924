"""The drift job's steps: reference from MLflow, the two Spark passes, the outputs, the summary.

``jobs/detect_drift.py`` calls these in order; the statistics themselves are the pure
functions of :mod:`flightdeck.monitoring.drift`. Two Spark passes, no more:

1. the day's features and the scores the version produced for them (the predictions
   partition: ``probability``, or ``prediction`` for a regression model) are binned in one
   aggregation against ``reference_profile.json`` of the version's training run
   (:func:`measure_drift`);
2. once labels arrive, day D-1's predictions joined with day D-1's labels (its features
   partition), collected (one day is small) for AUC and log loss (regression: RMSE and MAE)
   against the holdout metrics of the version that made those predictions
   (:func:`measure_performance`). With a delayed label source (``dataset.labels``) the
   labels judged on day D are the outcomes that **arrived** on D (the label source's
   partition D), joined to the predictions of their events, whatever day those were scored
   (:func:`arrived_on`); never the events of one day.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flightdeck.core import tracking
from flightdeck.core.columns import SCORE_COLUMNS
from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake, write_bytes, write_json
from flightdeck.model.registry import RegistryError
from flightdeck.monitoring.documents import DriftSummary
from flightdeck.monitoring.drift import (
    MONITORING_COLUMNS,
    MONITORING_TABLE,
    drift_report,
    monitoring_rows,
    performance_report,
    profile_counts,
    regression_performance_report,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

PROFILE_ARTIFACT = "reference_profile.json"
HOLDOUT_METRICS = ("roc_auc", "log_loss", "rmse", "mae")  # what live performance is compared with


class DriftRunError(FlightdeckError):
    """The drift job cannot measure as asked (e.g. several partitions, features missing columns)."""


@dataclass(frozen=True)
class Reference:
    """What a model version is compared with: its training profile and the run that logged it."""

    name: str
    version: str
    profile: dict[str, Any]
    run_id: str


def one_partition(dates: Sequence[dt.date]) -> dt.date:
    """The single partition the job measures (drift is judged one window at a time)."""
    if len(dates) != 1:
        raise DriftRunError(f"detect_drift takes one partition; got {len(dates)}: pass one day as --partition")
    return dates[0]


def load_reference(name: str, version: str) -> Reference:
    """The reference profile logged by the training run of ``name`` v``version``.

    Raises:
        RegistryError: the version has no training run to read the profile from.
    """
    run_id = tracking.version_run_id(name, version)
    if not run_id:
        raise RegistryError(f"model {name} v{version} has no training run; cannot find its reference profile")
    return Reference(name, version, tracking.load_run_json(run_id, PROFILE_ARTIFACT), run_id)


def holdout_metrics(name: str, version: str) -> dict[str, float]:
    """``roc_auc`` and ``log_loss`` (regression: ``rmse`` and ``mae``) on the frozen holdout, as
    logged by the version's training run."""
    metrics = tracking.version_run_metrics(name, version)
    return {k: metrics[k] for k in HOLDOUT_METRICS if k in metrics}


def labelled_predictions(
    predictions: DataFrame,
    features: DataFrame,
    keys: Sequence[str],
    label: str,
    *,
    task: str = "binary",
    carry: Sequence[str] = (),
) -> DataFrame:
    """``(label, score, model_version)`` of each prediction whose outcome is known.

    The score is ``probability`` with an int label (``task`` binary), or ``prediction`` with a
    double label (regression). Joined on the key columns the predictions carry, null-safe
    (keys such as ``dep_time`` are null for cancelled flights); rows without a label are dropped.
    """
    from pyspark.sql import functions as F

    score = SCORE_COLUMNS[task]
    label_type = "double" if task == "regression" else "int"
    f = features.select(*[F.col(k).alias(f"__k{i}") for i, k in enumerate(keys)], F.col(label).alias("label"))
    cond = [predictions[k].eqNullSafe(f[f"__k{i}"]) for i, k in enumerate(keys)]
    return (
        predictions.join(f, cond, "inner")
        .where(F.col("label").isNotNull())
        .select(F.col("label").cast(label_type).alias("label"), score, F.col("model_version").cast("string"), *carry)
    )


def measure_drift(
    spark: SparkSession, lake: Lake, cfg: PipelineConfig, day: dt.date, reference: Reference
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass 1: the drift report of ``day`` and its current bin proportions, in one aggregation.

    Raises:
        DriftRunError: the features lack columns the version was trained on.
    """
    from pyspark.sql import functions as F

    from flightdeck.data.sparkio import read_partitions

    entity, version = cfg.dataset.entity.name, reference.version
    features = read_partitions(spark, lake, "features", entity, [day])
    preds = None
    if lake.is_committed("predictions", entity, day):
        preds = read_partitions(spark, lake, "predictions", entity, [day])
        score = (reference.profile.get("prediction") or {}).get("column") or SCORE_COLUMNS[cfg.model.task]
        preds = preds.filter(F.col("model_version") == version).select(score)
    current = profile_counts(features, reference.profile, predictions=preds)
    if current["missing"]:
        raise DriftRunError(
            f"features {day} lack columns {current['missing']} that model v{version} was trained on; "
            "rebuild the features or score with a matching model"
        )
    report = drift_report(reference.profile, current, cfg.drift, current["n_rows"])
    report |= {"date": day.isoformat(), "model_version": version, "n_predictions": current.get("n_predictions", 0)}
    log.info(
        "drift %s vs v%s: %d feature rows, %s predictions", day, version, current["n_rows"], report["n_predictions"]
    )
    return report, current


def measure_performance(
    spark: SparkSession, lake: Lake, cfg: PipelineConfig, day: dt.date, reference: Reference
) -> dict[str, Any] | None:
    """Pass 2: AUC and log loss (regression: RMSE and MAE) of day D-1, whose outcomes are known now
    (with ``dataset.labels``: of the outcomes that arrived on day D); None before they are.

    Compared with the holdout of the version that scored most of D-1's rows (the champion may
    have changed since).
    """
    from flightdeck.data.sparkio import read_partitions
    from flightdeck.model.inference import key_columns

    task = cfg.model.task
    extra: dict[str, Any] = {}
    if cfg.dataset.labels is not None:
        arrived = arrived_on(spark, lake, cfg, day)
        if arrived is None:
            return None
        labelled, extra = arrived
        labelled_day = day
    else:
        entity, labelled_day = cfg.dataset.entity.name, day - dt.timedelta(days=1)
        committed = [lake.is_committed(zone, entity, labelled_day) for zone in ("predictions", "features")]
        if not all(committed):
            return None
        prev_preds = read_partitions(spark, lake, "predictions", entity, [labelled_day])
        prev_features = read_partitions(spark, lake, "features", entity, [labelled_day])
        keys = [k for k in key_columns(cfg) if k in prev_preds.columns and k in prev_features.columns]
        labelled = labelled_predictions(prev_preds, prev_features, keys, cfg.label.name, task=task).collect()
    scored_by = Counter(str(r["model_version"]) for r in labelled).most_common(1)
    perf_version = scored_by[0][0] if scored_by else reference.version
    reference_metrics = holdout_metrics(reference.name, perf_version) if labelled else None
    score = SCORE_COLUMNS[task]
    if task == "regression":
        performance = regression_performance_report(
            [float(r["label"]) for r in labelled],
            [float(r[score]) for r in labelled],
            reference_metrics,
            cfg.drift,
            data_date=labelled_day,
            model_version=perf_version,
        )
    else:
        performance = performance_report(
            [int(r["label"]) for r in labelled],
            [float(r[score]) for r in labelled],
            reference_metrics,
            cfg.drift,
            data_date=labelled_day,
            model_version=perf_version,
        )
    performance |= extra
    log.info("performance on labels of %s (v%s): %s", labelled_day, perf_version, performance)
    return performance


def arrived_on(
    spark: SparkSession, lake: Lake, cfg: PipelineConfig, day: dt.date
) -> tuple[list[Any], dict[str, Any]] | None:
    """With ``dataset.labels``: the outcomes that arrived on ``day`` joined to their events' predictions.

    The events may be of any day from ``labels.max_delay_days`` before ``day`` up to ``day``
    (whenever they were scored); the outcomes are the label source's partition ``day``. Returns
    the collected ``(label, score, model_version)`` rows and what the report adds (the arrival
    day, the event days judged, outcomes with no prediction); None when no outcome arrived on
    ``day``.
    """
    from pyspark.sql import functions as F

    from flightdeck.data.labels import attach_outcomes, latest_outcomes
    from flightdeck.data.sparkio import read_available_partitions, read_partitions
    from flightdeck.model.inference import key_columns

    source = cfg.dataset.labels
    if source is None or not lake.is_committed("bronze", source.name, day):
        return None
    entity = cfg.dataset.entity.name
    outcomes = latest_outcomes(read_partitions(spark, lake, "bronze", source.name, [day]), cfg).persist()
    n_arrived = outcomes.count()
    first = day - dt.timedelta(days=source.max_delay_days)
    preds, pred_days = read_available_partitions(spark, lake, "predictions", entity, first, day)
    features, _ = read_available_partitions(spark, lake, "features", entity, first, day)
    rows: list[Any] = []
    if preds is not None and features is not None:
        labelled_features = attach_outcomes(features, outcomes, cfg).where(F.col(cfg.label.name).isNotNull())
        keys = [k for k in key_columns(cfg) if k in preds.columns and k in labelled_features.columns]
        joined = labelled_predictions(
            preds.withColumn("__event_day", F.date_format(F.to_date(F.col("date")), "yyyy-MM-dd")),
            labelled_features,
            keys,
            cfg.label.name,
            task=cfg.model.task,
            carry=("__event_day",),
        )
        rows = joined.collect()
    outcomes.unpersist()
    event_days = Counter(str(r["__event_day"]) for r in rows)
    extra = {
        "labels_arrived_on": day.isoformat(),
        "event_days": dict(sorted(event_days.items())),
        "outcomes_arrived": n_arrived,
        "outcomes_without_prediction": n_arrived - len(rows),
    }
    log.info(
        "%d outcomes of %s arrived on %s; %d matched predictions of %s (searched %s)",
        n_arrived, source.name, day, len(rows), dict(event_days), [str(d) for d in pred_days],
    )  # fmt: skip
    return rows, extra


def monitoring_frame(spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    """The rows of ``monitoring/drift_daily`` as a DataFrame with the table's fixed schema."""
    from pyspark.sql.types import BooleanType, DataType, DoubleType, LongType, StringType, StructField, StructType

    types: dict[str, DataType] = {c: DoubleType() for c in ("value", "observed", "reference", "threshold")}
    types |= {"breached": BooleanType(), "n_rows": LongType()}
    schema = StructType([StructField(c, types.get(c, StringType()), c != "date") for c in MONITORING_COLUMNS])
    return spark.createDataFrame([tuple(r[c] for c in MONITORING_COLUMNS) for r in rows], schema)


def write_outputs(spark: SparkSession, lake: Lake, cfg: PipelineConfig, report: Mapping[str, Any], page: str) -> str:
    """Write ``monitoring/drift_daily/date=D`` (one row per statistic), ``D.html`` and ``D.json``.

    ``D.json`` is the report the retrain policy reads as history. Returns the HTML page's path.
    """
    from flightdeck.data.sparkio import write_partitions

    day = str(report["date"])
    rows = monitoring_rows(report, cfg.drift)
    write_partitions(monitoring_frame(spark, rows).coalesce(1), lake, "monitoring", MONITORING_TABLE, [day])
    html_path = lake.drift_report(day, "html")
    write_bytes(html_path, page.encode("utf-8"))
    write_json(lake.drift_report(day), dict(report))
    return html_path


def log_run(reference: Reference, report: Mapping[str, Any], page: str, run_key: str | None) -> str:
    """Log the report, its page and its figures to the ``<model>-monitoring`` experiment; the run id."""
    day, version = report["date"], reference.version
    performance = report.get("performance") or {}
    tags = {
        "flightdeck.job": "detect_drift",
        "partition": day,
        "model_version": version,
        "status": report["status"],
        "reference_run_id": reference.run_id,
        "flightdeck.run_key": run_key or "",
    }
    metrics = {
        "n_rows": float(report["n_rows"]),
        "drifted_share": report["drifted_share"],
        **({"prediction_psi": report["prediction_psi"]} if report["prediction_psi"] is not None else {}),
        **{f"psi_{f}": v for f, v in report["psi"].items() if v is not None},
        **{
            f"p_value_{f}": s["p_value"]
            for f, s in (report.get("statistics") or {}).items()
            if s.get("p_value") is not None
        },
        **{f"labelled_{k}": performance[k] for k in HOLDOUT_METRICS if performance.get(k) is not None},
    }
    return tracking.log_drift_run(
        reference.name,
        f"drift {day} v{version}",
        tags=tags,
        metrics=metrics,
        report=report,
        page=(f"drift_report_{day}.html", page),
    )


def summarize(report: Mapping[str, Any], reference: Reference, html_path: str, mlflow_run_id: str) -> DriftSummary:
    """The run document handed to the monitoring DAG: the report's figures and where it went."""
    own = {"partition", "model_name", "report_html", "mlflow_run_id"}
    missing = set(DriftSummary.model_fields) - own - set(report)
    if missing:
        raise KeyError(f"the drift report lacks {sorted(missing)}")
    # every key of the report, the statistics of issue 17 included (the retrain policy names
    # the test and the p-values in its reason); extra fields are kept by the document
    return DriftSummary(
        **{k: v for k, v in report.items() if k not in own},
        partition=str(report["date"]),
        model_name=reference.name,
        report_html=html_path,
        mlflow_run_id=mlflow_run_id,
    )
