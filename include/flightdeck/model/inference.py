"""Inference: the model's input frame, its score, and scoring a features partition.

One place applies a fitted pipeline to rows, for training's validation, evaluation on the
holdout and batch scoring alike; every prediction row carries the model version that made it.
A model's score is the positive-class probability of a binary classifier or the predicted
value of a regressor (``model.task``); :func:`with_score` tells them apart by the fitted
pipeline's last stage.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flightdeck.core.columns import (
    EVENT_TS,
    EXPLAIN_BASE,
    EXPLAIN_CONTRIBUTIONS,
    EXPLAIN_FEATURES,
    FEATURE_PARTITION,
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTION,
    PROBABILITY,
    SCORING_RUN,
)
from flightdeck.core.config import ModelTask, PipelineConfig
from flightdeck.core.errors import FlightdeckError
from flightdeck.core.lake import Lake

if TYPE_CHECKING:
    import numpy as np
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from flightdeck.model.saved import Scorer

log = logging.getLogger(__name__)


class ModelInputError(FlightdeckError):
    """The rows lack what the model needs (feature or key columns): rebuild the features."""


INDEX_SUFFIX = "__idx"


def label_type(cfg: PipelineConfig) -> str:
    """The label's Spark type for the task: ``int`` (0/1) for binary, ``double`` for regression."""
    return "double" if cfg.model.task == "regression" else "int"


def model_input_frame(df: DataFrame, cfg: PipelineConfig, *, require_label: bool = True) -> DataFrame:
    """The model inputs (numerics as double, categoricals as string) and label, other columns kept."""
    from pyspark.sql import functions as F

    label = cfg.label.name
    needed = [*cfg.features.model_inputs, *([label] if require_label else [])]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ModelInputError(f"feature columns {missing} missing from the features zone; rebuild the features")
    has_label = label in df.columns
    return df.select(
        *[F.col(c).cast("double").alias(c) for c in cfg.features.numeric],
        *[F.col(c).cast("string").alias(c) for c in cfg.features.categorical],
        *([F.col(label).cast(label_type(cfg)).alias(label)] if has_label else []),
        *[c for c in df.columns if c not in {*cfg.features.model_inputs, label}],
    )


def scorer(model: PipelineModel | Scorer) -> Scorer | None:
    """The scoring form of ``model`` (itself when it is one), or None for a pipeline flightdeck
    does not train (which is then applied with ``model.transform``)."""
    from flightdeck.model.saved import Scorer, from_model

    return model if isinstance(model, Scorer) else from_model(model)


def feature_names(model: PipelineModel | Scorer) -> list[str]:
    """Booster feature order (f0, f1, ...) mapped back to config feature names."""
    parts = scorer(model)
    if parts is None:
        raise ModelInputError("the pipeline has no VectorAssembler producing 'features'; was it trained by flightdeck?")
    return [c.removesuffix(INDEX_SUFFIX) for c in parts.inputs]


def positive_probability(scored: DataFrame) -> Any:
    """The positive-class probability (element 1 of xgboost.spark's probability vector) as a Column."""
    from pyspark.ml.functions import vector_to_array

    return vector_to_array(scored[PROBABILITY]).getItem(1).cast("double")


def _transformed(model: PipelineModel | Scorer, df: DataFrame, what: str) -> DataFrame:
    """``model.transform(df)``: the fallback for a pipeline that is not in the scoring form."""
    if not hasattr(model, "transform"):
        raise ModelInputError(f"a {model_task(model)} model has no {what}")
    return model.transform(df)


def _booster_inputs(parts: Scorer, df: DataFrame) -> tuple[DataFrame, Any]:
    """``df`` with the categorical indexes added, and the struct of the booster's inputs (doubles)."""
    from pyspark.sql import functions as F

    return parts.indexed(df), F.struct(*[F.col(c).cast("double") for c in parts.inputs])


def with_probability(model: PipelineModel | Scorer, df: DataFrame, column: str) -> DataFrame:
    """``df`` plus ``column``: the model's positive-class probability, as ``model.transform`` gives it.

    For the pipelines flightdeck trains (indexers -> VectorAssembler -> SparkXGBClassifierModel)
    the indexes are a map lookup and the booster runs on the assembler's input columns in one
    vectorised pandas UDF: no vector column, no per-row arrays, only the feature columns cross
    to Python. The values are the model's own (margins over the early-stopped tree range, then
    the logistic function, as xgboost.spark computes them); its prediction is ``probability >
    0.5``. Any other pipeline falls back to ``model.transform``.
    """
    from flightdeck.model.predict import probability_udf

    parts = scorer(model)
    if parts is None or parts.task != "binary":
        scored = _transformed(model, df, "a probability")
        return scored.withColumn(column, positive_probability(scored)).select(*df.columns, column)
    indexed, features = _booster_inputs(parts, df)
    predict = probability_udf(parts.booster, len(parts.inputs))
    return indexed.withColumn(column, predict(features)).select(*df.columns, column)


def model_task(model: PipelineModel | Scorer) -> ModelTask:
    """The task a fitted pipeline was trained for, from its last stage: ``regression`` for a
    SparkXGBRegressorModel, else ``binary``."""
    from flightdeck.model.saved import Scorer

    if isinstance(model, Scorer):
        return model.task
    from xgboost.spark import SparkXGBRegressorModel

    stages = list(model.stages)
    return "regression" if stages and isinstance(stages[-1], SparkXGBRegressorModel) else "binary"


def with_value(model: PipelineModel | Scorer, df: DataFrame, column: str) -> DataFrame:
    """``df`` plus ``column``: a regressor's predicted value, as ``model.transform`` gives it.

    The booster runs on the assembler's input columns in one vectorised pandas UDF, as
    :func:`with_probability` does for a classifier; any other pipeline falls back to
    ``model.transform``'s ``prediction``.
    """
    from flightdeck.model.predict import value_udf

    parts = scorer(model)
    if parts is None or parts.task != "regression":
        scored = _transformed(model, df, "a predicted value")
        return scored.withColumn(column, scored[PREDICTION].cast("double")).select(*df.columns, column)
    indexed, features = _booster_inputs(parts, df)
    predict = value_udf(parts.booster, len(parts.inputs))
    return indexed.withColumn(column, predict(features)).select(*df.columns, column)


def with_score(model: PipelineModel | Scorer, df: DataFrame, column: str) -> DataFrame:
    """``df`` plus ``column``: the model's score (a classifier's positive-class probability, a
    regressor's predicted value)."""
    if model_task(model) == "regression":
        return with_value(model, df, column)
    return with_probability(model, df, column)


def with_explained_score(model: PipelineModel | Scorer, df: DataFrame, column: str, top_k: int) -> DataFrame:
    """``df`` plus ``column`` (the score, as :func:`with_score` gives it) and the row's explanation:
    ``explain_features``/``explain_contributions`` (the ``top_k`` largest SHAP contributions by
    absolute value, in margin units) and ``explain_base``, from XGBoost's ``pred_contribs``.

    Raises:
        ModelInputError: the pipeline is not one flightdeck trains (no booster to explain).
    """
    from pyspark.sql import functions as F

    from flightdeck.model.predict import explained_udf

    parts = scorer(model)
    if parts is None:
        raise ModelInputError("scoring.explain needs a pipeline trained by flightdeck (indexers, assembler, XGBoost)")
    output = "value" if parts.task == "regression" else "probability"
    udf = explained_udf(parts.booster, feature_names(parts), top_k, output)
    indexed, features = _booster_inputs(parts, df)
    packed = indexed.withColumn("__explained", udf(features))
    return packed.select(
        *df.columns,
        F.col("__explained.score").alias(column),
        F.col("__explained.features").alias(EXPLAIN_FEATURES),
        F.col("__explained.contributions").alias(EXPLAIN_CONTRIBUTIONS),
        F.col("__explained.base").alias(EXPLAIN_BASE),
    )


def check_task(model: PipelineModel | Scorer, cfg: PipelineConfig, what: str) -> None:
    """Refuse a model trained for another task than ``model.task`` (``what`` names it in the message)."""
    task = model_task(model)
    if task != cfg.model.task:
        raise ModelInputError(
            f"{what} is a {task} model but model.task is {cfg.model.task}: a task change needs a new "
            f"model.name (the registry of {cfg.model.name!r} holds {task} models), or set model.task back to {task}"
        )


def collect_scores(
    model: PipelineModel | Scorer, holdout_df: DataFrame, cfg: PipelineConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Score ``holdout_df`` and collect only (label, score) to the driver.

    Binary: labels as int64 and positive-class probabilities; regression: labels and
    predicted values as float64.
    """
    import numpy as np

    scored = with_score(model, model_input_frame(holdout_df, cfg), "p")
    pdf: Any = scored.select(scored[cfg.label.name].cast(label_type(cfg)).alias("y"), "p").toPandas()
    y_type = np.float64 if cfg.model.task == "regression" else np.int64
    return pdf["y"].to_numpy(dtype=y_type), pdf["p"].to_numpy(dtype=np.float64)


def collect_keyed_scores(
    model: PipelineModel | Scorer, holdout_df: DataFrame, cfg: PipelineConfig, key: str, extra: Sequence[str] = ()
) -> Any:
    """Score ``holdout_df``; a pandas frame of ``key``, label ``y``, score ``p`` (probability or
    predicted value) and ``extra`` columns, sorted by ``key`` (so two models' scores of the same
    holdout line up row by row)."""
    scored = with_score(model, model_input_frame(holdout_df, cfg), "p")
    cols = [scored[key], *(scored[c].cast("string").alias(c) for c in extra if c != key)]
    pdf: Any = scored.select(*cols, scored[cfg.label.name].cast(label_type(cfg)).alias("y"), "p").toPandas()
    return pdf.sort_values(key, kind="stable").reset_index(drop=True)


def shadow_table(entity: str) -> str:
    """The predictions table of shadow scoring: ``predictions/<entity>_shadow``."""
    return f"{entity}_shadow"


def shadow_version(cfg: PipelineConfig, champion: str | None) -> str:
    """The version to shadow-score with (``challenger``), or "" when shadow scoring is off, there is
    no challenger, or it is the champion itself. Shadow predictions are written, never served."""
    if not cfg.scoring.shadow:
        return ""
    from flightdeck.model import registry

    version = registry.alias_version(cfg.model.name, registry.CHALLENGER)
    return "" if version is None or version == champion else str(version)


def key_columns(cfg: PipelineConfig) -> list[str]:
    """Columns carried from features to predictions: the passthrough columns and ``event_ts``."""
    return list(dict.fromkeys([*cfg.features.passthrough, EVENT_TS]))


def score(
    model: PipelineModel | Scorer,
    features_df: DataFrame,
    *,
    model_name: str,
    model_version: str,
    run_key: str | None,
    cfg: PipelineConfig,
    feature_partition: str | None = None,
) -> DataFrame:
    """Predictions for ``features_df``: keys, the score columns and lineage.

    Binary (``model.task``): ``probability`` (positive class) and ``prediction`` (0/1, int);
    regression: ``prediction`` (the predicted value, double) and no ``probability`` column.
    With ``scoring.explain.enabled`` also each row's top-k SHAP contributions
    (:func:`with_explained_score`).
    ``feature_partition`` defaults to the ``date`` column added by
    :func:`flightdeck.data.sparkio.read_partitions`.
    """
    from pyspark.sql import functions as F

    keys = key_columns(cfg)
    missing = [c for c in keys if c not in features_df.columns]
    if missing:
        raise ModelInputError(f"features are missing key/passthrough columns {missing}; rebuild the features partition")
    if feature_partition is None and "date" not in features_df.columns:
        raise ValueError("features have no 'date' column; pass feature_partition= or read with read_partitions")
    partition_col = F.lit(feature_partition) if feature_partition is not None else F.col("date").cast("string")
    # keys that are also model inputs (carrier, origin, dest) keep their original form
    carried = features_df.select(
        *[F.col(c).alias(f"__key_{i}") for i, c in enumerate(keys)],
        partition_col.alias("__partition"),
        *features_df.columns,
    )
    check_task(model, cfg, f"{model_name} v{model_version}")
    frame = model_input_frame(carried, cfg, require_label=False)
    if cfg.model.task == "regression":
        scores = [F.col("__score").alias(PREDICTION)]
    else:
        # xgboost.spark's prediction: the argmax of (1 - p, p)
        scores = [F.col("__score").alias(PROBABILITY), (F.col("__score") > 0.5).cast("int").alias(PREDICTION)]
    explain = cfg.scoring.explain
    if explain.enabled:
        scored = with_explained_score(model, frame, "__score", explain.top_k)
        explained = [F.col(c) for c in (EXPLAIN_FEATURES, EXPLAIN_CONTRIBUTIONS, EXPLAIN_BASE)]
    else:
        scored, explained = with_score(model, frame, "__score"), []
    return scored.select(
        *[F.col(f"__key_{i}").alias(c) for i, c in enumerate(keys)],
        *scores,
        *explained,
        F.lit(model_name).alias(MODEL_NAME),
        F.lit(str(model_version)).alias(MODEL_VERSION),
        F.lit(run_key).cast("string").alias(SCORING_RUN),
        F.col("__partition").alias(FEATURE_PARTITION),
    )


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model with the registered version it was loaded from (predictions carry the version)."""

    version: str
    model: PipelineModel | Scorer


def score_partitions(
    spark: SparkSession,
    cfg: PipelineConfig,
    lake: Lake,
    dates: Sequence[dt.date],
    served: ScoringModel,
    *,
    shadow: ScoringModel | None = None,
    run_key: str | None = None,
) -> dict[str, int]:
    """Score each features partition into ``predictions/<entity>`` (and the shadow table); rows per day.

    The shadow model's predictions go to ``predictions/<entity>_shadow``: written beside the
    served ones for comparison, never announced.
    """
    from flightdeck.data.sparkio import read_partitions, write_partition

    name, entity = cfg.model.name, cfg.dataset.entity.name
    written: dict[str, int] = {}
    for day in dates:
        features = read_partitions(spark, lake, "features", entity, [day])
        if shadow is not None:
            features = features.cache()
        rows = features.count()
        predictions = score(
            served.model, features, model_name=name, model_version=served.version, run_key=run_key, cfg=cfg
        )
        write_partition(predictions, lake, "predictions", entity, day)
        written[day.isoformat()] = rows
        log.info("scored %s: %d rows with %s v%s", day, rows, name, served.version)
        if shadow is not None:
            shadowed = score(
                shadow.model, features, model_name=name, model_version=shadow.version, run_key=run_key, cfg=cfg
            )
            write_partition(shadowed, lake, "predictions", shadow_table(entity), day)
            log.info(
                "shadow-scored %s with %s v%s into predictions/%s", day, name, shadow.version, shadow_table(entity)
            )
            features.unpersist()
    return written
