"""One training run, end to end: split the window, search, score the holdout, log, register as ``challenger``.

The committed features partitions in the window are split by time: the last
``model.holdout_days`` partitions are the frozen holdout, the ``model.validation_days``
before them validate (early stopping and the choice among the search's trials), the rest
train. One MLflow run holds a nested run per trial, the holdout metrics, the three splits as
dataset inputs, the model (registered, alias ``challenger``), plots, the reference profile
and the :class:`~flightdeck.model.documents.Manifest`.

The reference profile belongs to the monitoring plane, above this one: the caller passes the
function that builds it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flightdeck.core import tracking
from flightdeck.core.config import PipelineConfig
from flightdeck.core.errors import FlightdeckError, MissingPartition
from flightdeck.core.lake import Lake
from flightdeck.core.redact import redact
from flightdeck.model import registry
from flightdeck.model.documents import DataFingerprint, Manifest, TrainResult

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SPARK_CONF_OF_INTEREST = (
    "spark.master",
    "spark.default.parallelism",
    "spark.sql.shuffle.partitions",
    "spark.executor.memory",
    "spark.executor.cores",
    "spark.driver.memory",
    "spark.task.cpus",
)
PINNED_REQUIREMENTS = ("pyspark", "xgboost", "mlflow", "scikit-learn", "pandas", "numpy")

ProfileBuilder = Callable[["DataFrame", "np.ndarray"], dict[str, Any]]


class TrainingWindowError(FlightdeckError):
    """The training window asked for is not a window (the message says how to fix it)."""


@dataclass(frozen=True)
class TrainRequest:
    """What to train on and why: the window, the reason and the actor recorded with the model."""

    start: dt.date
    end: dt.date
    reason: str = "manual"
    actor: str | None = None
    run_key: str | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise TrainingWindowError(f"--train-end {self.end} is before --train-start {self.start}")


@dataclass(frozen=True)
class Split:
    """The window's rows and its partitions by role, with per-partition row counts and hashes."""

    df: DataFrame
    train: list[str]
    validation: list[str]
    holdout: list[str]
    stats: dict[str, dict[str, Any]]
    # With dataset.labels: rows left out per partition, their outcome not arrived by the window's end.
    unlabelled: dict[str, int] = field(default_factory=dict)
    labels_known_by: str | None = None

    def rows(self, keys: list[str]) -> int:
        return sum(self.stats.get(k, {}).get("rows", 0) for k in keys)

    def fingerprint(self) -> DataFingerprint:
        from flightdeck.model.training import data_fingerprint

        def of(keys: list[str]) -> dict[str, Any]:
            return data_fingerprint({k: self.stats[k] for k in keys if k in self.stats})

        return DataFingerprint(
            train=of(self.train), validation=of(self.validation), holdout=of(self.holdout), partitions=self.stats
        )


def spark_settings(spark: SparkSession) -> dict[str, Any]:
    """The Spark settings that shape training (recorded in the manifest)."""
    from flightdeck.model.training import free_task_slots

    slots, _ = free_task_slots(spark)
    conf = {k: spark.conf.get(k, None) for k in SPARK_CONF_OF_INTEREST}
    return {**conf, "task_slots": slots, "spark_version": spark.version}


def _with_arrived_labels(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, df: DataFrame, dates: list[dt.date], request: TrainRequest
) -> tuple[DataFrame, dict[str, int], list[dt.date]]:
    """The window's rows labelled by the outcomes arrived by its end; the rows left out; the days still labelled.

    A day none of whose outcomes had arrived by the end leaves the window (it would be an empty
    holdout day otherwise).

    Raises:
        MissingPartition: no row of the window has an outcome yet.
    """
    from pyspark.sql import functions as F

    from flightdeck.data.labels import arrived_labels

    labelled, unlabelled = arrived_labels(spark, cfg, lake, df, request.start, request.end)
    labelled = labelled.persist()
    present = {str(r[0]) for r in labelled.select(F.to_date(F.col("date"))).distinct().collect()}
    kept = [d for d in dates if d.isoformat() in present]
    if not kept:
        labels = cfg.dataset.labels
        raise MissingPartition(
            f"no outcome of {labels.name if labels else 'the label source'} arrived by {request.end} for the "
            f"events of {request.start}..{request.end}; ingest the label source's days or train on an earlier window"
        )
    return labelled, unlabelled, kept


def split_window(spark: SparkSession, cfg: PipelineConfig, lake: Lake, request: TrainRequest) -> Split:
    """Read the window's committed features and split them into train, validation and holdout partitions.

    Raises:
        MissingPartition: no committed features partition in the window.
    """
    from flightdeck.data.sparkio import read_available_partitions
    from flightdeck.model.training import check_rows, partition_stats, split_partitions, split_validation

    entity = cfg.dataset.entity.name
    df, dates = read_available_partitions(spark, lake, "features", entity, request.start, request.end)
    if df is None:
        raise MissingPartition(
            f"no committed features partitions for {entity} between {request.start} and {request.end} "
            f"in {lake.table('features', entity)}; build the features first"
        )
    unlabelled: dict[str, int] = {}
    known_by = None
    if cfg.dataset.labels is not None:
        df, unlabelled, dates = _with_arrived_labels(spark, cfg, lake, df, dates, request)
        known_by = request.end.isoformat()
    train_dates, holdout_dates = split_partitions(dates, cfg.model.holdout_days)
    _, validation_dates = split_validation(train_dates, cfg.model.validation_days)
    split = Split(
        df=df,
        train=[d.isoformat() for d in train_dates],
        validation=[d.isoformat() for d in validation_dates],
        holdout=[d.isoformat() for d in holdout_dates],
        stats=partition_stats(df, [*cfg.features.model_inputs, cfg.label.name]),
        unlabelled=unlabelled,
        labels_known_by=known_by,
    )
    check_rows(split.rows(split.train), split.rows(split.holdout))
    log.info(
        "training on %d partitions (%d rows) %s..%s (validation: %s), holdout %d partitions (%d rows) %s..%s",
        len(split.train), split.rows(split.train), split.train[0], split.train[-1], split.validation or "none",
        len(split.holdout), split.rows(split.holdout), split.holdout[0], split.holdout[-1],
    )  # fmt: skip
    return split


def build_manifest(spark: SparkSession, cfg: PipelineConfig, split: Split, request: TrainRequest) -> Manifest:
    """The manifest before fitting: data, code, configuration, seeds, search space, environment."""
    from flightdeck.model.training import git_commit, library_versions, search_trials

    search = {"max_trials": cfg.model.search.max_trials, "space": cfg.model.search.space, "trials": search_trials(cfg)}
    manifest = Manifest(
        model_name=cfg.model.name,
        train_start=request.start.isoformat(),
        train_end=request.end.isoformat(),
        train_partitions=split.train,
        validation_partitions=split.validation,
        holdout_partitions=split.holdout,
        data_fingerprint=split.fingerprint(),
        git_commit=git_commit(),
        config_hash=cfg.fingerprint(),
        config=redact(cfg.model_dump(mode="json")),  # no webhook URL or password in an MLflow artifact
        seeds={"model": cfg.model.seed, "search": cfg.model.seed, "bootstrap": cfg.model.seed},
        params=dict(cfg.model.params),
        search=search,
        features={"numeric": cfg.features.numeric, "categorical": cfg.features.categorical},
        label=cfg.label.name,
        library_versions=library_versions(),
        spark=spark_settings(spark),
        num_workers=cfg.model.num_workers,
        threads_per_worker=cfg.model.threads_per_worker,
        reason=request.reason,
        run_key=request.run_key,
    )
    if split.labels_known_by:  # set only with a label source: manifests without one keep their shape
        manifest.labels_known_by = split.labels_known_by
        manifest.unlabelled_rows = split.unlabelled
    return manifest


def _log_datasets(cfg: PipelineConfig, lake: Lake, split: Split, fingerprint: DataFingerprint) -> None:
    """Training, validation and holdout rows as dataset inputs of the open run (digest: the data fingerprint)."""
    from pyspark.sql import functions as F

    entity = cfg.dataset.entity.name
    parts = {
        "training": ([k for k in split.train if k not in split.validation], fingerprint.train),
        "validation": (split.validation, fingerprint.validation),
        "evaluation": (split.holdout, fingerprint.holdout),
    }
    for context, (keys, fp) in parts.items():
        if not keys:
            continue
        tracking.log_dataset(
            split.df.filter(F.col("date").isin(keys)).select(*cfg.features.model_inputs, cfg.label.name),
            path=lake.table("features", entity),
            name=f"{entity} features {keys[0]}..{keys[-1]}",
            targets=cfg.label.name,
            digest=fp["sha256"],
            context=context,
            partitions=f"{keys[0]}..{keys[-1]} ({len(keys)})",
        )


def _run_params(
    cfg: PipelineConfig, split: Split, request: TrainRequest, chosen: dict[str, Any], trials: int
) -> dict[str, Any]:
    return {
        **{f"xgb_{k}": v for k, v in chosen["params"].items()},
        "task": cfg.model.task,
        "seed": cfg.model.seed,
        "num_workers": cfg.model.num_workers,
        "threads_per_worker": cfg.model.threads_per_worker,
        "train_start": request.start.isoformat(),
        "train_end": request.end.isoformat(),
        "holdout_days": cfg.model.holdout_days,
        "validation_days": len(split.validation),
        "early_stopping_rounds": cfg.model.early_stopping_rounds,
        "search_trials": trials,
        "chosen_trial": chosen["trial"],
        "train_rows": split.rows(split.train),
        "holdout_rows": split.rows(split.holdout),
        **(
            {"labels_known_by": split.labels_known_by, "unlabelled_rows": sum(split.unlabelled.values())}
            if split.labels_known_by
            else {}
        ),
        "config_hash": cfg.fingerprint(),
    }


def _version_tags(manifest: Manifest, request: TrainRequest, run_id: str) -> dict[str, str]:
    train = manifest.train_partitions
    return {
        "train_start": manifest.train_start,
        "train_end": manifest.train_end,
        "train_partitions": f"{train[0]}..{train[-1]} ({len(train)})",
        "holdout_partitions": ",".join(manifest.holdout_partitions),
        "data_fingerprint": manifest.data_fingerprint.train["sha256"],
        "reason": request.reason[: tracking.TAG_LIMIT],
        "config_hash": manifest.config_hash,
        "git_commit": manifest.git_commit,
        "seed": str(manifest.seeds["model"]),
        "run_key": request.run_key or "",
        "manifest": f"runs:/{run_id}/{Manifest.ARTIFACT}",
    }


def _pip_requirements() -> list[str]:
    """Pinned model requirements, so MLflow does not infer them (which reloads the model: slow)."""
    from flightdeck.model.training import library_versions

    return [f"{k}=={v}" for k, v in library_versions().items() if k in PINNED_REQUIREMENTS and v != "missing"]


def _fit_and_log(
    cfg: PipelineConfig, lake: Lake, split: Split, manifest: Manifest, request: TrainRequest, profile: ProfileBuilder
) -> tuple[str, str, dict[str, float], dict[str, Any], int]:
    """Inside one MLflow run: search, score the holdout, log everything, register the model.

    Returns the new version, the run id, the holdout metrics, the chosen trial and the number of trials.
    """
    from pyspark.sql import functions as F

    from flightdeck.model.evaluation import feature_importance, task_metrics, write_task_plots
    from flightdeck.model.inference import collect_scores, model_input_frame
    from flightdeck.model.training import fit_search

    train_df = split.df.filter(F.col("date").isin(split.train)).persist()
    holdout_df = split.df.filter(F.col("date").isin(split.holdout))
    tags = {
        "flightdeck.run_key": request.run_key or "",
        "flightdeck.reason": request.reason[: tracking.TAG_LIMIT],
        "flightdeck.job": "train",
        "flightdeck.git_commit": manifest.git_commit,
    }
    with tracking.training_run(cfg.model.name, f"train {request.start}..{request.end}", tags) as run_id:
        t_fit = time.monotonic()
        model, results = fit_search(
            train_df,
            cfg,
            trials=manifest.search["trials"],
            validation_dates=split.validation,
            on_trial=tracking.log_trial,
        )
        fit_seconds = time.monotonic() - t_fit
        chosen = next(r for r in results if r["chosen"])
        manifest.search["results"] = results
        manifest.chosen_params = chosen["params"]
        manifest.best_iteration = chosen.get("best_iteration")
        y, scores = collect_scores(model, holdout_df, cfg)
        holdout_metrics = task_metrics(cfg.model.task, y, scores)
        reference = profile(train_df, scores)
        importance = feature_importance(model)

        tracking.log_params(_run_params(cfg, split, request, chosen, len(results)))
        tracking.log_metrics(holdout_metrics)
        tracking.log_metrics({"fit_seconds": fit_seconds})
        if chosen.get("best_iteration") is not None:
            tracking.log_metrics({"best_iteration": chosen["best_iteration"]})
        if chosen.get("validation"):
            tracking.log_metrics({f"val_{k}": v for k, v in chosen["validation"].items()})
        _log_datasets(cfg, lake, split, manifest.data_fingerprint)
        tracking.log_dicts(
            {
                "reference_profile.json": reference,
                Manifest.ARTIFACT: manifest.to_json(),
                "feature_importance.json": importance,
            }
        )
        tracking.log_plots(lambda folder: write_task_plots(cfg.model.task, y, scores, importance, folder))
        example = model_input_frame(holdout_df, cfg).select(*cfg.features.model_inputs).limit(5).toPandas()
        version = tracking.log_spark_model(
            model, name=cfg.model.name, example=example, requirements=_pip_requirements()
        )
    train_df.unpersist()
    return version, run_id, holdout_metrics, chosen, len(results)


def train_candidate(
    spark: SparkSession, cfg: PipelineConfig, lake: Lake, request: TrainRequest, profile: ProfileBuilder
) -> TrainResult:
    """Train, log and register a candidate on the request's window; point ``challenger`` at it.

    ``profile(train_df, holdout_scores)`` builds the drift reference profile logged with the model
    (the scores are probabilities, or predicted values for ``model.task: regression``).
    """
    from flightdeck.model.training import check_task_slots

    t0 = time.monotonic()
    check_task_slots(spark, cfg.model.num_workers, cfg.model.threads_per_worker)
    split = split_window(spark, cfg, lake, request)
    manifest = build_manifest(spark, cfg, split, request)
    version, run_id, holdout_metrics, chosen, trials = _fit_and_log(cfg, lake, split, manifest, request, profile)
    split.df.unpersist()  # persisted only when labelled from the label source; a no-op otherwise
    c = tracking.client()
    tracking.tag_version(cfg.model.name, version, _version_tags(manifest, request, run_id), c=c)
    registry.set_challenger(cfg.model.name, version, why=request.reason, who=request.actor, lake=lake, client=c)
    return TrainResult(
        model_name=cfg.model.name,
        version=version,
        run_id=run_id,
        train_partitions=split.train,
        validation_partitions=split.validation,
        holdout_partitions=split.holdout,
        metrics=holdout_metrics,
        chosen_params=chosen["params"],
        trials=trials,
        reason=request.reason,
        seconds=round(time.monotonic() - t0, 1),
        labels_known_by=split.labels_known_by,
        unlabelled_rows=sum(split.unlabelled.values()),
    )
