"""Train a candidate model on the features in a date window and register it as ``challenger``.

    spark-submit jobs/train.py --train-start 2013-01-01 --train-end 2013-03-31 \
        --config include/config/flights.yaml --run-key K [--reason "drift: ..."]

The committed features partitions in the window are split by time: the last
``model.holdout_days`` partitions are the frozen holdout, the ``model.validation_days``
before them validate (early stopping and the choice among the bounded search's trials),
the rest train. XGBoost runs on Spark (``model.num_workers`` workers of
``model.threads_per_worker`` threads = ``spark.task.cpus``; the free task slots are
checked first).

One MLflow run (experiment = ``model.name``) holds one nested run per search trial, the
holdout metrics (ROC AUC, PR AUC, log loss, Brier, calibration error), the training,
validation and holdout data as dataset inputs, the Spark pipeline model with signature
and input example (registered under ``model.name``, alias ``challenger``), plots,
``reference_profile.json`` and ``manifest.json`` (partitions and data fingerprints, git
commit, config and its hash, seeds, chosen parameters, library versions, Spark
settings), from which ``jobs/reproduce.py`` rebuilds the model.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flightdeck.core.errors import MissingPartition
from flightdeck.core.jobargs import emit_result, parser, run, setup
from flightdeck.core.lake import parse_date

log = logging.getLogger("flightdeck.jobs.train")

SPARK_CONF_OF_INTEREST = (
    "spark.master",
    "spark.default.parallelism",
    "spark.sql.shuffle.partitions",
    "spark.executor.memory",
    "spark.executor.cores",
    "spark.driver.memory",
    "spark.task.cpus",
)


def spark_settings(spark: Any) -> dict[str, Any]:
    """The Spark settings that shape training (recorded in the manifest)."""
    from flightdeck.model.training import free_task_slots

    slots, _ = free_task_slots(spark)
    conf = {k: spark.conf.get(k, None) for k in SPARK_CONF_OF_INTEREST}
    return {**conf, "task_slots": slots, "spark_version": spark.version}


def main(argv: Sequence[str]) -> dict[str, Any]:
    p = parser("train", __doc__ or "", partition=False)
    p.add_argument("--train-start", required=True, help="first date of the training window (YYYY-MM-DD)")
    p.add_argument("--train-end", required=True, help="last date of the training window (YYYY-MM-DD)")
    p.add_argument("--reason", default="manual", help="why this model is trained (recorded with the model)")
    p.add_argument("--actor", default=None, help="who asked for the model (recorded in the alias ledger)")
    args = p.parse_args(argv)
    cfg, lake = setup(args)
    start, end = parse_date(args.train_start), parse_date(args.train_end)
    if end < start:
        raise ValueError(f"--train-end {end} is before --train-start {start}")

    import mlflow
    from mlflow import MlflowClient
    from pyspark.sql import functions as F

    from flightdeck.data.sparkio import build_session, read_available_partitions
    from flightdeck.model.evaluation import feature_importance, metrics, write_plots
    from flightdeck.model.inference import collect_scores, model_input_frame
    from flightdeck.model.registry import set_challenger
    from flightdeck.model.training import (
        check_rows,
        check_task_slots,
        data_fingerprint,
        fit_search,
        git_commit,
        library_versions,
        partition_stats,
        search_trials,
        split_partitions,
        split_validation,
    )
    from flightdeck.monitoring.profile import prediction_profile, reference_profile

    t0 = time.monotonic()
    spark = build_session("flightdeck-train", {"spark.task.cpus": str(cfg.model.threads_per_worker)})
    check_task_slots(spark, cfg.model.num_workers, cfg.model.threads_per_worker)
    entity = cfg.dataset.entity.name
    df, dates = read_available_partitions(spark, lake, "features", entity, start, end)
    if df is None:
        raise MissingPartition(
            f"no committed features partitions for {entity} between {start} and {end} "
            f"in {lake.table('features', entity)}; build the features first"
        )
    train_dates, holdout_dates = split_partitions(dates, cfg.model.holdout_days)
    _, validation_dates = split_validation(train_dates, cfg.model.validation_days)
    train_keys = [d.isoformat() for d in train_dates]
    validation_keys = [d.isoformat() for d in validation_dates]
    holdout_keys = [d.isoformat() for d in holdout_dates]
    stats = partition_stats(df, [*cfg.features.model_inputs, cfg.label.name])
    train_rows = sum(stats.get(k, {}).get("rows", 0) for k in train_keys)
    holdout_rows = sum(stats.get(k, {}).get("rows", 0) for k in holdout_keys)
    check_rows(train_rows, holdout_rows)
    log.info(
        "training on %d partitions (%d rows) %s..%s (validation: %s), holdout %d partitions (%d rows) %s..%s",
        len(train_keys), train_rows, train_keys[0], train_keys[-1], validation_keys or "none",
        len(holdout_keys), holdout_rows, holdout_keys[0], holdout_keys[-1],
    )  # fmt: skip
    train_df = df.filter(F.col("date").isin(train_keys)).persist()
    holdout_df = df.filter(F.col("date").isin(holdout_keys))

    def fingerprint(keys: list[str]) -> dict[str, Any]:
        return data_fingerprint({k: stats[k] for k in keys if k in stats})

    trials = search_trials(cfg)
    manifest: dict[str, Any] = {
        "model_name": cfg.model.name,
        "train_start": start.isoformat(),
        "train_end": end.isoformat(),
        "train_partitions": train_keys,
        "validation_partitions": validation_keys,
        "holdout_partitions": holdout_keys,
        "data_fingerprint": {
            "train": fingerprint(train_keys),
            "validation": fingerprint(validation_keys),
            "holdout": fingerprint(holdout_keys),
            "partitions": stats,
        },
        "git_commit": git_commit(),
        "config_hash": cfg.fingerprint(),
        "config": cfg.model_dump(mode="json"),
        "seeds": {"model": cfg.model.seed, "search": cfg.model.seed, "bootstrap": cfg.model.seed},
        "params": dict(cfg.model.params),
        "search": {"max_trials": cfg.model.search.max_trials, "space": cfg.model.search.space, "trials": trials},
        "features": {"numeric": cfg.features.numeric, "categorical": cfg.features.categorical},
        "label": cfg.label.name,
        "library_versions": library_versions(),
        "spark": spark_settings(spark),
        "num_workers": cfg.model.num_workers,
        "threads_per_worker": cfg.model.threads_per_worker,
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
                "flightdeck.git_commit": manifest["git_commit"],
            }
        )

        def log_trial(i: int, params: dict[str, Any], result: dict[str, Any]) -> None:
            with mlflow.start_run(run_name=f"trial {i}", nested=True):
                mlflow.log_params({f"xgb_{k}": v for k, v in params.items()})
                mlflow.log_metrics({f"val_{k}": v for k, v in (result.get("validation") or {}).items()})
                mlflow.log_metric("fit_seconds", result["fit_seconds"])
                mlflow.log_metric("num_trees", result["num_trees"])
                if result.get("best_iteration") is not None:
                    mlflow.log_metric("best_iteration", result["best_iteration"])

        t_fit = time.monotonic()
        model, results = fit_search(train_df, cfg, trials=trials, validation_dates=validation_keys, on_trial=log_trial)
        fit_seconds = time.monotonic() - t_fit
        chosen = next(r for r in results if r["chosen"])
        manifest["search"]["results"] = results
        manifest["chosen_params"] = chosen["params"]
        manifest["best_iteration"] = chosen.get("best_iteration")
        y, prob = collect_scores(model, holdout_df, cfg)
        holdout_metrics = metrics(y, prob)
        profile = reference_profile(train_df, cfg)
        profile["prediction"] = prediction_profile(prob, cfg.drift.bins)
        importance = feature_importance(model)

        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in chosen["params"].items()},
                "seed": cfg.model.seed,
                "num_workers": cfg.model.num_workers,
                "threads_per_worker": cfg.model.threads_per_worker,
                "train_start": start.isoformat(),
                "train_end": end.isoformat(),
                "holdout_days": cfg.model.holdout_days,
                "validation_days": len(validation_keys),
                "early_stopping_rounds": cfg.model.early_stopping_rounds,
                "search_trials": len(results),
                "chosen_trial": chosen["trial"],
                "train_rows": train_rows,
                "holdout_rows": holdout_rows,
                "config_hash": cfg.fingerprint(),
            }
        )
        mlflow.log_metrics(holdout_metrics)
        mlflow.log_metric("fit_seconds", fit_seconds)
        if chosen.get("best_iteration") is not None:
            mlflow.log_metric("best_iteration", chosen["best_iteration"])
        for key, value in (chosen.get("validation") or {}).items():
            mlflow.log_metric(f"val_{key}", value)
        _log_datasets(mlflow, lake, cfg, df, manifest)
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
    train_df.unpersist()
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {
        "train_start": start.isoformat(),
        "train_end": end.isoformat(),
        "train_partitions": f"{train_keys[0]}..{train_keys[-1]} ({len(train_keys)})",
        "holdout_partitions": ",".join(holdout_keys),
        "data_fingerprint": manifest["data_fingerprint"]["train"]["sha256"],
        "reason": args.reason[:5000],
        "config_hash": cfg.fingerprint(),
        "git_commit": manifest["git_commit"],
        "seed": str(cfg.model.seed),
        "run_key": args.run_key or "",
        "manifest": f"runs:/{run_id}/manifest.json",
    }.items():
        client.set_model_version_tag(name, version, key, value)
    set_challenger(name, version, why=args.reason, who=args.actor, lake=lake, client=client)

    result = {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "train_partitions": train_keys,
        "validation_partitions": validation_keys,
        "holdout_partitions": holdout_keys,
        "metrics": holdout_metrics,
        "chosen_params": chosen["params"],
        "trials": len(results),
        "reason": args.reason,
        "seconds": round(time.monotonic() - t0, 1),
    }
    emit_result(result, lake, args.run_key, "train")
    return result


def _log_datasets(mlflow: Any, lake: Any, cfg: Any, df: Any, manifest: dict[str, Any]) -> None:
    """Training, validation and holdout rows as MLflow dataset inputs (digest = our data fingerprint)."""
    from pyspark.sql import functions as F

    table = lake.table("features", cfg.dataset.entity.name)
    fingerprints = manifest["data_fingerprint"]
    parts = {
        "training": [k for k in manifest["train_partitions"] if k not in manifest["validation_partitions"]],
        "validation": manifest["validation_partitions"],
        "evaluation": manifest["holdout_partitions"],
    }
    for context, keys in parts.items():
        if not keys:
            continue
        fp = fingerprints[
            "validation" if context == "validation" else "holdout" if context == "evaluation" else "train"
        ]
        dataset = mlflow.data.from_spark(
            df.filter(F.col("date").isin(keys)).select(*cfg.features.model_inputs, cfg.label.name),
            path=table,
            name=f"{cfg.dataset.entity.name} features {keys[0]}..{keys[-1]}",
            targets=cfg.label.name,
            digest=fp["sha256"],
        )
        mlflow.log_input(dataset, context=context, tags={"partitions": f"{keys[0]}..{keys[-1]} ({len(keys)})"})


def _signature(inputs: Any, cfg: Any) -> tuple[Any, Any]:
    """Model signature and a 5-row input example, without running the model (that costs a Python worker)."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = inputs.select(*cfg.features.model_inputs).limit(5).toPandas()
    return infer_signature(example, pd.DataFrame({"prediction": [0.0, 1.0]})), example


def _pip_requirements() -> list[str]:
    """Pinned model requirements, so MLflow does not infer them (which reloads the model: slow)."""
    from flightdeck.model.training import library_versions

    wanted = ("pyspark", "xgboost", "mlflow", "scikit-learn", "pandas", "numpy")
    return [f"{k}=={v}" for k, v in library_versions().items() if k in wanted and v != "missing"]


if __name__ == "__main__":
    sys.exit(run(main, None))
