"""Measure drift of one features partition (and its predictions) against a model's training profile.

    spark-submit jobs/detect_drift.py --partition 2013-07-01 --config include/config/flights.yaml \
        --model-version 3 [--run-key K]

Loads ``reference_profile.json`` from the model version's training run, bins the
partition's features (and the probabilities that version produced for it, when the
predictions partition exists) in one pass each, writes ``monitoring/drift/date=D``
(one row per feature statistic) and logs a PSI chart to the ``<model>-monitoring``
MLflow experiment. The retrain decision is not taken here: the monitoring DAG calls
``flightdeck.drift.should_retrain`` on this job's result.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flightdeck.jobargs import emit_result, parser, partitions, run, setup

log = logging.getLogger("flightdeck.jobs.detect_drift")

DRIFT_TABLE = "drift"
PREDICTION_FEATURE = "probability"


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


def drift_rows(report: dict[str, Any], day: str, version: str) -> list[tuple[Any, ...]]:
    """One row per statistic: (date, model_version, feature, statistic, value, threshold, drifted)."""
    threshold = float(report["psi_threshold"])
    drifted = set(report["drifted"])
    rows = [
        (day, version, feature, "psi", None if value is None else float(value), threshold, feature in drifted)
        for feature, value in sorted(report["psi"].items())
    ]
    if report.get("prediction_psi") is not None:
        rows.append(
            (day, version, PREDICTION_FEATURE, "psi", float(report["prediction_psi"]), threshold,
             bool(report["prediction_drifted"]))
        )  # fmt: skip
    return rows


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("detect_drift", __doc__ or "")
    p.add_argument("--model-version", required=True, help="model version whose training profile is the reference")
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    dates = partitions(args)
    if len(dates) != 1:
        raise ValueError(f"detect_drift takes one partition; got {len(dates)} ({args.partition})")
    day = dates[0]

    import mlflow
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        BooleanType,
        DoubleType,
        StringType,
        StructField,
        StructType,
    )

    from flightdeck.drift import drift_report, plot_psi, profile_counts
    from flightdeck.sparkio import build_session, read_partitions, write_partition

    name = cfg.model.name
    version = args.model_version
    if not version.isdigit():
        from flightdeck.registry import alias_version

        resolved = alias_version(name, version)
        if resolved is None:
            raise ValueError(f"model {name} has no version with alias {version!r}")
        version = resolved
    profile, train_run_id = load_reference_profile(name, version)

    spark = build_session("flightdeck-detect-drift")
    entity = cfg.dataset.entity.name
    features = read_partitions(spark, lake, "features", entity, [day])
    current = profile_counts(features, profile)
    if current["missing"]:
        raise ValueError(
            f"features {day} lack columns {current['missing']} that model v{version} was trained on; "
            "rebuild the features or score with a matching model"
        )
    prediction_note = "no predictions partition"
    if lake.is_committed("predictions", entity, day):
        preds = read_partitions(spark, lake, "predictions", entity, [day])
        preds = preds.filter(F.col("model_version") == version).select("probability")
        pred_counts = profile_counts(preds, {"prediction": profile.get("prediction")})
        if pred_counts["n_rows"] > 0 and pred_counts["prediction"] is not None:
            current["prediction"] = pred_counts["prediction"]
            prediction_note = f"{pred_counts['n_rows']} predictions by v{version}"
        else:
            prediction_note = f"predictions partition has no rows scored by v{version}"
    log.info("drift %s vs v%s: %d feature rows; %s", day, version, current["n_rows"], prediction_note)

    report = drift_report(profile, current, cfg.drift, current["n_rows"])
    schema = StructType(
        [
            StructField("date", StringType(), False),
            StructField("model_version", StringType(), False),
            StructField("feature", StringType(), False),
            StructField("statistic", StringType(), False),
            StructField("value", DoubleType(), True),
            StructField("threshold", DoubleType(), False),
            StructField("drifted", BooleanType(), False),
        ]
    )
    rows = drift_rows(report, day.isoformat(), version)
    write_partition(spark.createDataFrame(rows, schema).coalesce(1), lake, "monitoring", DRIFT_TABLE, day)

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
        mlflow.log_metrics(
            {
                "n_rows": float(report["n_rows"]),
                "drifted_share": report["drifted_share"],
                **({"prediction_psi": report["prediction_psi"]} if report["prediction_psi"] is not None else {}),
                **{f"psi_{f}": v for f, v in report["psi"].items() if v is not None},
            }
        )
        mlflow.log_dict(report, "drift_report.json")
        with tempfile.TemporaryDirectory(prefix="flightdeck-drift-") as tmp:
            chart = plot_psi(report, Path(tmp) / f"psi_{day}.png", title=f"PSI {day} vs v{version} training")
            mlflow.log_artifact(chart)
        monitoring_run_id = active.info.run_id

    result = {
        "partition": day.isoformat(),
        "model_name": name,
        "model_version": version,
        "n_rows": report["n_rows"],
        "psi": report["psi"],
        "prediction_psi": report["prediction_psi"],
        "drifted": report["drifted"],
        "n_features": report["n_features"],
        "excluded": report["excluded"],
        "drifted_share": report["drifted_share"],
        "psi_threshold": report["psi_threshold"],
        "status": report["status"],
        "mlflow_run_id": monitoring_run_id,
    }
    emit_result(result, lake, args.run_key, "detect_drift")
    return result


if __name__ == "__main__":
    sys.exit(run(main, None))
