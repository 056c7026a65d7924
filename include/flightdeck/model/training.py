"""Training: time-based split, the Spark ML pipeline (indexers -> assembler -> XGBoost), reference profile.

The fitted :class:`pyspark.ml.PipelineModel` takes raw feature columns (as in the
features zone) and adds ``probability`` (vector) and ``prediction`` (a classifier,
``model.task: binary``) or ``prediction`` (a regressor, ``model.task: regression``); it is
what MLflow stores and what scoring loads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.core.columns import FEATURE_VECTOR
from flightdeck.core.config import PROJECT_ROOT, PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.model.inference import INDEX_SUFFIX, model_input_frame, positive_probability

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FEATURES_COL = FEATURE_VECTOR
VALIDATION_COL = "_is_validation"
ORDER_COL = "_row_hash"
MIN_TRAIN_ROWS = 100
MIN_HOLDOUT_ROWS = 20
# A regressor's objective unless model.params names another; the task's validation metric:
# what early stopping watches (EVAL_METRIC) and the trial search ranks on (SEARCH_METRIC,
# an error negated so that higher is always better).
REGRESSION_OBJECTIVE = "reg:squarederror"
EVAL_METRIC = {"binary": "auc", "regression": "rmse"}
SEARCH_METRIC = {"binary": "roc_auc", "regression": "rmse"}


# How long to wait for a cluster's executors to register before the slot check fails.
SLOT_WAIT_SECONDS = 90.0


class TrainingError(FlightdeckError):
    """Training cannot start or its data is unusable (the message says what to fix)."""


# --- pure helpers -------------------------------------------------------------------------------


def split_partitions(dates: Sequence[dt.date], holdout_days: int) -> tuple[list[dt.date], list[dt.date]]:
    """Time-based split: the last ``holdout_days`` partitions are the holdout, the rest train."""
    ordered = sorted(set(dates))
    if len(ordered) < holdout_days + 1:
        raise TrainingError(
            f"need at least {holdout_days + 1} feature partitions (holdout_days={holdout_days} plus one to train on); "
            f"found {len(ordered)}: {[d.isoformat() for d in ordered]}. "
            "Build features for more dates or widen the window"
        )
    return ordered[:-holdout_days], ordered[-holdout_days:]


def data_fingerprint(partitions: Mapping[str, Any]) -> dict[str, Any]:
    """Rows plus a hash of the per-partition statistics: evidence of exactly what was trained on.

    ``partitions`` maps a partition to its row count, or to :func:`partition_stats`' entry
    (rows and an order-independent content hash), so a changed value changes the fingerprint.
    """

    def rows(v: Any) -> int:
        return int(v["rows"]) if isinstance(v, Mapping) else int(v)

    payload = json.dumps({str(k): partitions[k] for k in sorted(partitions)}, sort_keys=True, default=str)
    return {
        "rows": int(sum(rows(v) for v in partitions.values())),
        "partitions": len(partitions),
        "sha256": hashlib.sha256(payload.encode()).hexdigest()[:16],
    }


def git_commit() -> str:
    """The code version: $FLIGHTDECK_GIT_COMMIT, else ``git rev-parse HEAD``, else "unknown"."""
    if os.environ.get("FLIGHTDECK_GIT_COMMIT"):
        return os.environ["FLIGHTDECK_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the model."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for name in ("pyspark", "xgboost", "mlflow", "scikit-learn", "pandas", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


# --- Spark ----------------------------------------------------------------------------------------


def free_task_slots(spark: SparkSession) -> tuple[int, int]:
    """(tasks Spark can run at once, CPUs per task): what a barrier stage of XGBoost workers needs."""
    sc = spark.sparkContext
    cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    try:  # the same probe xgboost.spark uses (cores of live executors / spark.task.cpus)
        jsc = sc._jsc.sc()  # type: ignore[union-attr]
        slots = int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().resourceProfileFromId(0)))
    except Exception:
        slots = int(sc.defaultParallelism) // max(cpus, 1)
    return slots, cpus


def check_task_slots(
    spark: SparkSession,
    num_workers: int,
    threads_per_worker: int | None = None,
    wait_seconds: float = SLOT_WAIT_SECONDS,
) -> None:
    """Fail fast when the cluster cannot run ``num_workers`` XGBoost tasks at once.

    XGBoost on Spark runs a barrier stage; with too few free slots Spark waits (about ten
    minutes) before failing with an obscure error. xgboost.spark also ignores any thread
    setting and uses ``spark.task.cpus`` threads per worker, so a mismatch with
    ``model.threads_per_worker`` is reported here too.

    On a cluster, executors register after the session starts (seconds on a busy machine),
    so the slots are polled for up to ``wait_seconds`` before the check fails; local mode
    has all its slots at once and fails at once.
    """
    slots, cpus = free_task_slots(spark)
    local = str(spark.sparkContext.master or "").startswith("local")
    deadline = time.monotonic() + (0.0 if local else wait_seconds)
    while slots < num_workers and time.monotonic() < deadline:
        time.sleep(1.0)
        slots, cpus = free_task_slots(spark)
    if threads_per_worker is not None and cpus != threads_per_worker:
        raise TrainingError(
            f"model.threads_per_worker={threads_per_worker} but spark.task.cpus={cpus}: xgboost.spark runs "
            "spark.task.cpus threads per worker. Start the training session with "
            f"spark.task.cpus={threads_per_worker} (jobs/train.py does) or change model.threads_per_worker"
        )
    if slots < num_workers:
        raise TrainingError(
            f"model.num_workers={num_workers} but Spark offers only {slots} task slot(s) "
            f"(executor cores / spark.task.cpus={cpus} on master {spark.sparkContext.master!r}"
            f"{'' if local else f', after waiting {wait_seconds:.0f}s for executors to register'}); "
            "lower model.num_workers (FLIGHTDECK__MODEL__NUM_WORKERS) or model.threads_per_worker, "
            "or give Spark more cores"
        )


def split_validation(train_dates: Sequence[dt.date], validation_days: int) -> tuple[list[dt.date], list[dt.date]]:
    """The last ``validation_days`` training partitions validate (early stopping, trial choice).

    Without validation days, or with too few partitions to spare them, nothing validates.
    """
    ordered = sorted(set(train_dates))
    if validation_days <= 0 or len(ordered) <= validation_days:
        return ordered, []
    return ordered[:-validation_days], ordered[-validation_days:]


def search_trials(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """The parameter sets of the bounded search: the base params first, then seeded grid draws.

    Pure and deterministic (``model.seed``): at most ``model.search.max_trials`` distinct sets.
    """
    import itertools
    import random

    base: dict[str, Any] = dict(cfg.model.params)
    trials = [base]
    space = cfg.model.search.space
    if cfg.model.search.max_trials <= 1 or not space:
        return trials
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]
    random.Random(cfg.model.seed).shuffle(grid)
    for point in grid:
        candidate = {**base, **point}
        if candidate not in trials:
            trials.append(candidate)
        if len(trials) >= cfg.model.search.max_trials:
            break
    return trials


def build_featurizer(cfg: PipelineConfig) -> Pipeline:
    """StringIndexers for categoricals -> VectorAssembler (NaN for nulls), from the config."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    categorical = list(cfg.features.categorical)
    indexed = [f"{c}{INDEX_SUFFIX}" for c in categorical]
    stages: list[Any] = []
    if categorical:
        stages.append(StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"))
    stages.append(
        VectorAssembler(inputCols=[*cfg.features.numeric, *indexed], outputCol=FEATURES_COL, handleInvalid="keep")
    )
    return Pipeline(stages=stages)


def xgb_params(cfg: PipelineConfig, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The booster parameters of a fit: ``params`` (default ``model.params``) plus the fixed seed
    (and, for a regressor, ``objective: reg:squarederror`` unless the params name another)."""
    out: dict[str, Any] = dict(cfg.model.params if params is None else params)
    out.setdefault("random_state", cfg.model.seed)
    if cfg.model.task == "regression":
        out.setdefault("objective", REGRESSION_OBJECTIVE)
    return out


def build_classifier(cfg: PipelineConfig, params: Mapping[str, Any] | None = None, *, validate: bool = False) -> Any:
    """The SparkXGBClassifier; with ``validate``, early stopping on the rows flagged in VALIDATION_COL."""
    from xgboost.spark import SparkXGBClassifier

    extra: dict[str, Any] = {}
    if validate:
        extra["validation_indicator_col"] = VALIDATION_COL
        if cfg.model.early_stopping_rounds:
            extra["early_stopping_rounds"] = cfg.model.early_stopping_rounds
            extra["eval_metric"] = "auc"
    return SparkXGBClassifier(
        features_col=FEATURES_COL,
        label_col=cfg.label.name,
        num_workers=cfg.model.num_workers,
        missing=float("nan"),
        **xgb_params(cfg, params),
        **extra,
    )


def build_regressor(cfg: PipelineConfig, params: Mapping[str, Any] | None = None, *, validate: bool = False) -> Any:
    """The SparkXGBRegressor; with ``validate``, early stopping on the RMSE of the rows flagged in VALIDATION_COL."""
    from xgboost.spark import SparkXGBRegressor

    extra: dict[str, Any] = {}
    if validate:
        extra["validation_indicator_col"] = VALIDATION_COL
        if cfg.model.early_stopping_rounds:
            extra["early_stopping_rounds"] = cfg.model.early_stopping_rounds
            extra["eval_metric"] = EVAL_METRIC["regression"]
    return SparkXGBRegressor(
        features_col=FEATURES_COL,
        label_col=cfg.label.name,
        num_workers=cfg.model.num_workers,
        missing=float("nan"),
        **xgb_params(cfg, params),
        **extra,
    )


def build_estimator(cfg: PipelineConfig, params: Mapping[str, Any] | None = None, *, validate: bool = False) -> Any:
    """The task's XGBoost estimator (``model.task``): a classifier or a regressor."""
    build = build_regressor if cfg.model.task == "regression" else build_classifier
    return build(cfg, params, validate=validate)


def validation_score(cfg: PipelineConfig, validation: Mapping[str, float]) -> float:
    """How good a trial is on the validation rows, higher better: AUC, or minus the RMSE."""
    value = float(validation[SEARCH_METRIC[cfg.model.task]])
    return -value if cfg.model.task == "regression" else value


def fit(
    train_df: DataFrame,
    cfg: PipelineConfig,
    *,
    params: Mapping[str, Any] | None = None,
    validation_dates: Sequence[dt.date | str] = (),
) -> PipelineModel:
    """Fit the pipeline on the training rows (checks task slots first).

    With ``validation_dates`` (values of the ``date`` column) those rows only validate:
    XGBoost stops early on their AUC, or RMSE for a regressor (``model.early_stopping_rounds``).
    """
    return fit_search(train_df, cfg, trials=[xgb_params(cfg, params)], validation_dates=validation_dates)[0]


def _validation_metrics(cfg: PipelineConfig, booster_model: Any, validation_rows: DataFrame) -> dict[str, float]:
    """The task's metrics of a fitted booster stage on the validation rows (collected: one window is small)."""
    from pyspark.sql import functions as F

    from flightdeck.model.evaluation import task_metrics

    label = cfg.label.name
    scored = booster_model.transform(validation_rows)
    if cfg.model.task == "regression":
        pdf: Any = scored.select(F.col(label).cast("double").alias("y"), F.col("prediction").alias("p"))
    else:
        pdf = scored.select(F.col(label).cast("int").alias("y"), positive_probability(scored).alias("p"))
    pdf = pdf.toPandas()
    return task_metrics(cfg.model.task, pdf["y"].to_numpy(), pdf["p"].to_numpy())


def fit_search(
    train_df: DataFrame,
    cfg: PipelineConfig,
    *,
    trials: Sequence[Mapping[str, Any]] | None = None,
    validation_dates: Sequence[dt.date | str] = (),
    on_trial: Any = None,
) -> tuple[PipelineModel, list[dict[str, Any]]]:
    """Fit one model per parameter set (default :func:`search_trials`); keep the best on validation.

    The featurizer (indexers, assembler) is fitted once on all training rows. Each trial's
    validation AUC, or lowest RMSE for a regressor (rows of ``validation_dates``), picks the
    winner; without validation rows only the first trial is fitted. ``on_trial(index, params,
    result)`` is called after each fit (e.g. to log a nested MLflow run). Returns the best
    pipeline and every trial's result.
    """
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    check_task_slots(train_df.sparkSession, cfg.model.num_workers)
    sets = list(trials if trials is not None else search_trials(cfg))
    validation = sorted({str(d) for d in validation_dates})
    if not validation:
        sets = sets[:1]
    frame = model_input_frame(train_df, cfg)
    featurizer = build_featurizer(cfg).fit(frame)
    label = cfg.label.name
    # Reproducible input: each XGBoost worker gets the same rows in the same order on every run
    # (hash-partitioned and sorted on a hash of the row), whatever order the files were read in;
    # xgboost.spark then does not repartition (partitions == num_workers).
    row_hash = F.xxhash64(*[F.col(c) for c in [*cfg.features.model_inputs, label, "date"]])
    prepared = (
        featurizer.transform(frame.withColumn(ORDER_COL, row_hash))
        .withColumn(VALIDATION_COL, F.col("date").cast("string").isin(validation) if validation else F.lit(False))
        .select(FEATURES_COL, label, VALIDATION_COL, "date", ORDER_COL)
        .repartition(cfg.model.num_workers, ORDER_COL)
        .sortWithinPartitions(ORDER_COL)
        .persist()
    )
    validation_rows = prepared.filter(F.col(VALIDATION_COL)) if validation else None
    results: list[dict[str, Any]] = []
    best: tuple[float, int, Any] | None = None
    try:
        for i, trial in enumerate(sets):
            t0 = time.monotonic()
            estimator = build_estimator(cfg, trial, validate=bool(validation))
            booster_model = estimator.fit(prepared)
            model = PipelineModel(stages=[*featurizer.stages, booster_model])
            result: dict[str, Any] = {"trial": i, "params": dict(trial), "fit_seconds": time.monotonic() - t0}
            booster = booster_model.get_booster()
            best_iteration = getattr(booster, "best_iteration", None)
            result["best_iteration"] = int(best_iteration) if best_iteration is not None else None
            result["num_trees"] = int(booster.num_boosted_rounds())
            if validation_rows is not None:
                result["validation"] = _validation_metrics(cfg, booster_model, validation_rows)
                score = validation_score(cfg, result["validation"])
            else:
                score = 0.0
            results.append(result)
            metric = SEARCH_METRIC[cfg.model.task]
            log.info("trial %d %s: %s %s", i, dict(trial), metric, result.get("validation", {}).get(metric))
            if on_trial is not None:
                on_trial(i, dict(trial), result)
            if best is None or score > best[0]:
                best = (score, i, model)
    finally:
        prepared.unpersist()
    assert best is not None
    for result in results:
        result["chosen"] = result["trial"] == best[1]
    log.info("chose trial %d of %d", best[1], len(results))
    return best[2], results


def partition_stats(df: DataFrame, columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per ``date`` partition: rows and an order-independent content hash of ``columns`` (one aggregation)."""
    from pyspark.sql import functions as F

    content = F.sum(F.xxhash64(*[F.col(c) for c in columns]).cast("decimal(38,0)"))
    rows = df.groupBy("date").agg(F.count("*").alias("rows"), content.alias("content")).collect()
    return {str(r["date"]): {"rows": int(r["rows"]), "content": str(r["content"])} for r in rows}


def check_rows(train_rows: int, holdout_rows: int) -> None:
    if train_rows < MIN_TRAIN_ROWS:
        raise TrainingError(f"only {train_rows} training rows (minimum {MIN_TRAIN_ROWS}); widen the training window")
    if holdout_rows < MIN_HOLDOUT_ROWS:
        raise TrainingError(
            f"only {holdout_rows} holdout rows (minimum {MIN_HOLDOUT_ROWS}); "
            "widen the window or lower model.holdout_days"
        )
