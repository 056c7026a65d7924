"""Train a candidate model on the features in a date window and register it as ``challenger``.

    spark-submit jobs/train.py --train-start 2013-01-01 --train-end 2013-03-31 \
        --config include/config/flights.yaml --run-key K [--reason "drift: ..."]

The committed features partitions in the window are split by time (the last
``model.holdout_days`` partitions are the holdout). One MLflow run (experiment =
``model.name``) holds params, holdout metrics, the Spark pipeline model (registered
under ``model.name``), plots, ``reference_profile.json`` and ``manifest.json``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flightdeck.jobargs import emit_result, parser, run, setup
from flightdeck.lake import parse_date

log = logging.getLogger("flightdeck.jobs.train")

SPARK_CONF_OF_INTEREST = (
    "spark.master",
    "spark.default.parallelism",
    "spark.sql.shuffle.partitions",
    "spark.executor.memory",
    "spark.driver.memory",
    "spark.task.cpus",
)


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("train", __doc__ or "", partition=False)
    p.add_argument("--train-start", required=True, help="first date of the training window (YYYY-MM-DD)")
    p.add_argument("--train-end", required=True, help="last date of the training window (YYYY-MM-DD)")
    p.add_argument("--reason", default="manual", help="why this model is trained (recorded with the model)")
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    start, end = parse_date(args.train_start), parse_date(args.train_end)
    if end < start:
        raise ValueError(f"--train-end {end} is before --train-start {start}")

    import mlflow
    from mlflow import MlflowClient
    from pyspark.sql import functions as F

    from flightdeck.evaluation import collect_scores, feature_importance, metrics, write_plots
    from flightdeck.registry import set_challenger
    from flightdeck.sparkio import build_session, read_available_partitions
    from flightdeck.training import (
        check_rows,
        check_task_slots,
        data_fingerprint,
        fit,
        git_commit,
        library_versions,
        model_input_frame,
        partition_counts,
        prediction_profile,
        reference_profile,
        split_partitions,
    )

    t0 = time.monotonic()
    spark = build_session("flightdeck-train")
    check_task_slots(spark, cfg.model.num_workers)
    entity = cfg.dataset.entity.name
    df, dates = read_available_partitions(spark, lake, "features", entity, start, end)
    if df is None:
        raise FileNotFoundError(
            f"no committed features partitions for {entity} between {start} and {end} "
            f"in {lake.table('features', entity)}; build the features first"
        )
    train_dates, holdout_dates = split_partitions(dates, cfg.model.holdout_days)
    train_keys = [d.isoformat() for d in train_dates]
    holdout_keys = [d.isoformat() for d in holdout_dates]
    counts = partition_counts(df)
    train_rows = sum(counts.get(k, 0) for k in train_keys)
    holdout_rows = sum(counts.get(k, 0) for k in holdout_keys)
    check_rows(train_rows, holdout_rows)
    log.info(
        "training on %d partitions (%d rows) %s..%s, holdout %d partitions (%d rows) %s..%s",
        len(train_keys), train_rows, train_keys[0], train_keys[-1],
        len(holdout_keys), holdout_rows, holdout_keys[0], holdout_keys[-1],
    )  # fmt: skip
    train_df = df.filter(F.col("date").isin(train_keys)).persist()
    holdout_df = df.filter(F.col("date").isin(holdout_keys))

    t_fit = time.monotonic()
    model = fit(train_df, cfg)
    fit_seconds = time.monotonic() - t_fit
    y, prob = collect_scores(model, holdout_df, cfg)
    holdout_metrics = metrics(y, prob)
    profile = reference_profile(train_df, cfg)
    profile["prediction"] = prediction_profile(prob, cfg.drift.bins)
    importance = feature_importance(model)
    train_df.unpersist()

    manifest = {
        "model_name": cfg.model.name,
        "train_start": start.isoformat(),
        "train_end": end.isoformat(),
        "train_partitions": train_keys,
        "holdout_partitions": holdout_keys,
        "data_fingerprint": {
            "train": data_fingerprint({k: counts[k] for k in train_keys if k in counts}),
            "holdout": data_fingerprint({k: counts[k] for k in holdout_keys if k in counts}),
            "partition_counts": counts,
        },
        "git_commit": git_commit(),
        "config_hash": cfg.fingerprint(),
        "seed": cfg.model.seed,
        "params": dict(cfg.model.params),
        "features": {"numeric": cfg.features.numeric, "categorical": cfg.features.categorical},
        "label": cfg.label.name,
        "library_versions": library_versions(),
        "spark_conf": {k: spark.conf.get(k, None) for k in SPARK_CONF_OF_INTEREST},
        "reason": args.reason,
        "run_key": args.run_key,
    }

    name = cfg.model.name
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=f"train {start}..{end}") as active:
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                "flightdeck.run_key": args.run_key or "",
                "flightdeck.reason": args.reason[:5000],
                "flightdeck.job": "train",
            }
        )
        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in cfg.model.params.items()},
                "seed": cfg.model.seed,
                "num_workers": cfg.model.num_workers,
                "train_start": start.isoformat(),
                "train_end": end.isoformat(),
                "holdout_days": cfg.model.holdout_days,
                "train_rows": train_rows,
                "holdout_rows": holdout_rows,
                "config_hash": cfg.fingerprint(),
            }
        )
        mlflow.log_metrics(holdout_metrics)
        mlflow.log_metric("fit_seconds", fit_seconds)
        mlflow.log_dict(profile, "reference_profile.json")
        mlflow.log_dict(manifest, "manifest.json")
        mlflow.log_dict(importance, "feature_importance.json")
        with tempfile.TemporaryDirectory(prefix="flightdeck-plots-") as tmp:
            write_plots(y, prob, importance, Path(tmp))
            mlflow.log_artifacts(tmp, artifact_path="plots")
        signature, example = _signature(model_input_frame(holdout_df, cfg), cfg)
        info = mlflow.spark.log_model(
            model,
            "model",  # mlflow.spark.log_model in MLflow 3.17 still names this parameter artifact_path
            registered_model_name=name,
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {
        "train_start": start.isoformat(),
        "train_end": end.isoformat(),
        "holdout_partitions": ",".join(holdout_keys),
        "reason": args.reason[:5000],
        "config_hash": cfg.fingerprint(),
        "git_commit": manifest["git_commit"],
        "run_key": args.run_key or "",
    }.items():
        client.set_model_version_tag(name, version, key, value)
    set_challenger(name, version, client=client)

    result = {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "train_partitions": train_keys,
        "holdout_partitions": holdout_keys,
        "metrics": holdout_metrics,
        "reason": args.reason,
        "seconds": round(time.monotonic() - t0, 1),
    }
    emit_result(result, lake, args.run_key, "train")
    return result


def _signature(inputs: Any, cfg: Any) -> tuple[Any, Any]:
    """Model signature and a 5-row input example, without running the model (that costs a Python worker)."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = inputs.select(*cfg.features.model_inputs).limit(5).toPandas()
    return infer_signature(example, pd.DataFrame({"prediction": [0.0, 1.0]})), example


def _pip_requirements() -> list[str]:
    """Pinned model requirements, so MLflow does not infer them (which reloads the model: slow)."""
    from flightdeck.training import library_versions

    wanted = ("pyspark", "xgboost", "mlflow", "scikit-learn", "pandas", "numpy")
    return [f"{k}=={v}" for k, v in library_versions().items() if k in wanted and v != "missing"]


if __name__ == "__main__":
    sys.exit(run(main, None))
