"""Scoring: apply one model version to a features partition; every row carries that version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flightdeck.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame

EVENT_TS = "event_ts"


def shadow_table(entity: str) -> str:
    """The predictions table of shadow scoring: ``predictions/<entity>_shadow``."""
    return f"{entity}_shadow"


def shadow_version(cfg: PipelineConfig, champion: str | None) -> str:
    """The version to shadow-score with (``challenger``), or "" when shadow scoring is off, there is
    no challenger, or it is the champion itself. Shadow predictions are written, never served."""
    if not cfg.scoring.shadow:
        return ""
    from flightdeck.registry import alias_version

    version = alias_version(cfg.model.name, "challenger")
    return "" if version is None or version == champion else str(version)


def key_columns(cfg: PipelineConfig) -> list[str]:
    """Columns carried from features to predictions: the passthrough columns and ``event_ts``."""
    return list(dict.fromkeys([*cfg.features.passthrough, EVENT_TS]))


def score(
    model: PipelineModel,
    features_df: DataFrame,
    *,
    model_name: str,
    model_version: str,
    run_key: str | None,
    cfg: PipelineConfig,
    feature_partition: str | None = None,
) -> DataFrame:
    """Predictions for ``features_df``: keys, ``probability`` (positive class), ``prediction`` and lineage.

    ``feature_partition`` defaults to the ``date`` column added by
    :func:`flightdeck.sparkio.read_partitions`.
    """
    from pyspark.sql import functions as F

    from flightdeck.evaluation import with_probability
    from flightdeck.training import model_input_frame

    keys = key_columns(cfg)
    missing = [c for c in keys if c not in features_df.columns]
    if missing:
        raise ValueError(f"features are missing key/passthrough columns {missing}; rebuild the features partition")
    if feature_partition is None and "date" not in features_df.columns:
        raise ValueError("features have no 'date' column; pass feature_partition= or read with read_partitions")
    partition_col = F.lit(feature_partition) if feature_partition is not None else F.col("date").cast("string")
    # keys that are also model inputs (carrier, origin, dest) keep their original form
    carried = features_df.select(
        *[F.col(c).alias(f"__key_{i}") for i, c in enumerate(keys)],
        partition_col.alias("__partition"),
        *features_df.columns,
    )
    scored = with_probability(model, model_input_frame(carried, cfg, require_label=False), "__probability")
    probability = F.col("__probability")
    return scored.select(
        *[F.col(f"__key_{i}").alias(c) for i, c in enumerate(keys)],
        probability.alias("probability"),
        # xgboost.spark's prediction: the argmax of (1 - p, p)
        (probability > 0.5).cast("int").alias("prediction"),
        F.lit(model_name).alias("model_name"),
        F.lit(str(model_version)).alias("model_version"),
        F.lit(run_key).cast("string").alias("scoring_run"),
        F.col("__partition").alias("feature_partition"),
    )
