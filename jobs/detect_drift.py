"""Measure drift of one scored partition against a model's training profile and holdout.

    spark-submit jobs/detect_drift.py --partition 2013-07-01 --config include/config/flights.yaml \
        --model-version 3 [--run-key K]

Two Spark passes, no more:

1. the day's features and the probabilities that version produced for them (the
   predictions partition) are binned in one aggregation against ``reference_profile.json``
   of the version's training run: PSI per feature (numeric bins from the training data,
   categoricals by level) and PSI of the score distribution;
2. performance once labels arrive: day D-1's predictions joined with day D-1's labels (its
   features partition), collected (one day is small) for AUC and log loss, compared with the
   holdout metrics of the version that made those predictions.

Writes ``monitoring/drift_daily/date=D`` (one row per statistic, the shared writer),
``monitoring/drift_reports/D.json`` (the report, which the retrain policy reads as history)
and ``D.html`` (charts), and logs them to the ``<model>-monitoring`` MLflow experiment. The
retrain decision is not taken here: the monitoring DAG calls ``flightdeck.monitoring.drift.should_retrain``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck.core.jobargs import parser, partitions, run, setup

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger("flightdeck.jobs.detect_drift")


def load_reference_profile(name: str, version: str) -> tuple[dict[str, Any], str]:
    """The reference profile logged by the training run of ``name`` v``version``, and that run's id."""
    import mlflow
    from mlflow import MlflowClient

    run_id = MlflowClient().get_model_version(name, version).run_id
    if not run_id:
        raise ValueError(f"model {name} v{version} has no training run; cannot find its reference profile")
    with tempfile.TemporaryDirectory(prefix="flightdeck-profile-") as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reference_profile.json", dst_path=tmp)
        return json.loads(Path(local).read_text()), run_id


def holdout_metrics(name: str, version: str) -> dict[str, float]:
    """``roc_auc`` and ``log_loss`` on the frozen holdout, as logged by the version's training run."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    metrics = client.get_run(run_id).data.metrics if run_id else {}
    return {k: float(metrics[k]) for k in ("roc_auc", "log_loss") if k in metrics}


def labelled_predictions(predictions: DataFrame, features: DataFrame, keys: Sequence[str], label: str) -> DataFrame:
    """``(label, probability, model_version)`` of each prediction whose outcome is known.

    Joined on the key columns the predictions carry, null-safe (keys such as ``dep_time`` are
    null for cancelled flights); rows without a label are dropped.
    """
    from pyspark.sql import functions as F

    f = features.select(*[F.col(k).alias(f"__k{i}") for i, k in enumerate(keys)], F.col(label).alias("label"))
    cond = [predictions[k].eqNullSafe(f[f"__k{i}"]) for i, k in enumerate(keys)]
    return (
        predictions.join(f, cond, "inner")
        .where(F.col("label").isNotNull())
        .select(F.col("label").cast("int").alias("label"), "probability", F.col("model_version").cast("string"))
    )


def monitoring_frame(spark: Any, rows: list[dict[str, Any]]) -> DataFrame:
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

    from flightdeck.monitoring.drift import MONITORING_COLUMNS

    types = {"value": DoubleType(), "observed": DoubleType(), "reference": DoubleType(), "threshold": DoubleType()}
    types |= {"breached": BooleanType(), "n_rows": LongType()}
    schema = StructType([StructField(c, types.get(c, StringType()), c != "date") for c in MONITORING_COLUMNS])
    return spark.createDataFrame([tuple(r[c] for c in MONITORING_COLUMNS) for r in rows], schema)


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("detect_drift", __doc__ or "")
    p.add_argument("--model-version", required=True, help="model version whose training profile is the reference")
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    if len(dates) != 1:
        raise ValueError(f"detect_drift takes one partition; got {len(dates)} ({args.partition})")
    day = dates[0]
    previous_day = day - dt.timedelta(days=1)

    import mlflow
    from pyspark.sql import functions as F

    from flightdeck.core.lake import write_bytes, write_json
    from flightdeck.data.sparkio import build_session, read_partitions, write_partitions
    from flightdeck.model.inference import key_columns
    from flightdeck.monitoring.documents import DriftSummary, emit_drift_summary
    from flightdeck.monitoring.drift import (
        MONITORING_TABLE,
        drift_report,
        monitoring_rows,
        performance_report,
        profile_counts,
    )
    from flightdeck.monitoring.drift_html import render_report

    name = cfg.model.name
    version = args.model_version
    if not version.isdigit():
        from flightdeck.model.registry import alias_version

        resolved = alias_version(name, version)
        if resolved is None:
            raise ValueError(f"model {name} has no version with alias {version!r}")
        version = resolved
    profile, train_run_id = load_reference_profile(name, version)

    spark = build_session("flightdeck-detect-drift")
    entity = cfg.dataset.entity.name

    # pass 1: the day's features and the day's scores by this version, one aggregation
    features = read_partitions(spark, lake, "features", entity, [day])
    preds = None
    if lake.is_committed("predictions", entity, day):
        preds = read_partitions(spark, lake, "predictions", entity, [day])
        preds = preds.filter(F.col("model_version") == version).select("probability")
    current = profile_counts(features, profile, predictions=preds)
    if current["missing"]:
        raise ValueError(
            f"features {day} lack columns {current['missing']} that model v{version} was trained on; "
            "rebuild the features or score with a matching model"
        )
    report = drift_report(profile, current, cfg.drift, current["n_rows"])
    report |= {"date": day.isoformat(), "model_version": version, "n_predictions": current.get("n_predictions", 0)}
    log.info(
        "drift %s vs v%s: %d feature rows, %s predictions", day, version, current["n_rows"], report["n_predictions"]
    )

    # pass 2: performance on the previous day, whose outcomes are known now
    performance: dict[str, Any] | None = None
    if lake.is_committed("predictions", entity, previous_day) and lake.is_committed("features", entity, previous_day):
        prev_preds = read_partitions(spark, lake, "predictions", entity, [previous_day])
        prev_features = read_partitions(spark, lake, "features", entity, [previous_day])
        keys = [k for k in key_columns(cfg) if k in prev_preds.columns and k in prev_features.columns]
        labelled = labelled_predictions(prev_preds, prev_features, keys, cfg.label.name).collect()
        scored_by = Counter(str(r["model_version"]) for r in labelled).most_common(1)
        perf_version = scored_by[0][0] if scored_by else version
        performance = performance_report(
            [int(r["label"]) for r in labelled],
            [float(r["probability"]) for r in labelled],
            holdout_metrics(name, perf_version) if labelled else None,
            cfg.drift,
            data_date=previous_day,
            model_version=perf_version,
        )
        log.info("performance on %s (v%s): %s", previous_day, perf_version, performance)
    report["performance"] = performance

    rows = monitoring_rows(report, cfg.drift)
    write_partitions(monitoring_frame(spark, rows).coalesce(1), lake, "monitoring", MONITORING_TABLE, [day])
    page = render_report(report, profile, current)
    html_path = lake.drift_report(day, "html")
    write_bytes(html_path, page.encode("utf-8"))
    write_json(lake.drift_report(day), report)

    mlflow.set_experiment(f"{name}-monitoring")
    with mlflow.start_run(run_name=f"drift {day} v{version}") as active:
        mlflow.set_tags(
            {
                "flightdeck.job": "detect_drift",
                "partition": day.isoformat(),
                "model_version": version,
                "status": report["status"],
                "reference_run_id": train_run_id,
                "flightdeck.run_key": args.run_key or "",
            }
        )
        metrics = {
            "n_rows": float(report["n_rows"]),
            "drifted_share": report["drifted_share"],
            **({"prediction_psi": report["prediction_psi"]} if report["prediction_psi"] is not None else {}),
            **{f"psi_{f}": v for f, v in report["psi"].items() if v is not None},
        }
        if performance:
            metrics |= {
                f"labelled_{k}": performance[k] for k in ("roc_auc", "log_loss") if performance.get(k) is not None
            }
        mlflow.log_metrics(metrics)
        mlflow.log_dict(report, "drift_report.json")
        mlflow.log_text(page, f"drift_report_{day}.html")
        monitoring_run_id = active.info.run_id

    summary = DriftSummary(
        **{k: report[k] for k in ("date", "model_version", "n_rows", "n_predictions", "psi", "prediction_psi")},
        **{k: report[k] for k in ("prediction_drifted", "prediction_threshold", "drifted", "n_features", "excluded")},
        **{k: report[k] for k in ("drifted_share", "psi_threshold", "status", "min_rows", "missing")},
        partition=day.isoformat(),
        model_name=name,
        performance=performance,
        report_html=html_path,
        mlflow_run_id=monitoring_run_id,
    )
    emit_drift_summary(summary, lake, args.run_key)
    return summary.to_doc()


if __name__ == "__main__":
    sys.exit(run(main, None))
