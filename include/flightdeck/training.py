"""Training: time-based split, the Spark ML pipeline (indexers -> assembler -> XGBoost), reference profile.

The fitted :class:`pyspark.ml.PipelineModel` takes raw feature columns (as in the
features zone) and adds ``probability`` (vector) and ``prediction``; it is what MLflow
stores and what scoring loads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flightdeck.config import PROJECT_ROOT, PipelineConfig
from flightdeck.drift import NULL_BIN, OTHER, PREDICTION, count_bins

if TYPE_CHECKING:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

INDEX_SUFFIX = "__idx"
FEATURES_COL = "features"
TOP_CATEGORIES = 50
MIN_TRAIN_ROWS = 100
MIN_HOLDOUT_ROWS = 20
_QUANTILE_ACCURACY = 10_000


class TrainingError(ValueError):
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


def data_fingerprint(partition_counts: Mapping[str, int]) -> dict[str, Any]:
    """Row count plus a hash of the per-partition counts: cheap evidence of what was trained on."""
    payload = json.dumps({str(k): int(v) for k, v in sorted(partition_counts.items())}, sort_keys=True)
    return {
        "rows": int(sum(partition_counts.values())),
        "partitions": len(partition_counts),
        "counts_sha256": hashlib.sha256(payload.encode()).hexdigest()[:16],
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


def check_task_slots(spark: SparkSession, num_workers: int) -> None:
    """Fail fast when the cluster cannot run ``num_workers`` XGBoost tasks at once.

    XGBoost on Spark runs a barrier stage; with too few slots Spark waits (about ten
    minutes) before failing with an obscure error.
    """
    slots = int(spark.sparkContext.defaultParallelism)
    if slots < num_workers:
        raise TrainingError(
            f"model.num_workers={num_workers} but Spark offers only {slots} task slot(s) "
            f"(spark.default.parallelism / cores of master {spark.sparkContext.master!r}); "
            "lower model.num_workers (FLIGHTDECK__MODEL__NUM_WORKERS) or give Spark more cores"
        )


def build_pipeline(cfg: PipelineConfig) -> Pipeline:
    """StringIndexers for categoricals -> VectorAssembler -> SparkXGBClassifier, from the config."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from xgboost.spark import SparkXGBClassifier

    categorical = list(cfg.features.categorical)
    indexed = [f"{c}{INDEX_SUFFIX}" for c in categorical]
    stages: list[Any] = []
    if categorical:
        stages.append(StringIndexer(inputCols=categorical, outputCols=indexed, handleInvalid="keep"))
    stages.append(
        VectorAssembler(inputCols=[*cfg.features.numeric, *indexed], outputCol=FEATURES_COL, handleInvalid="keep")
    )
    params: dict[str, Any] = dict(cfg.model.params)
    params.setdefault("random_state", cfg.model.seed)
    stages.append(
        SparkXGBClassifier(
            features_col=FEATURES_COL,
            label_col=cfg.label.name,
            num_workers=cfg.model.num_workers,
            missing=float("nan"),
            **params,
        )
    )
    return Pipeline(stages=stages)


def model_input_frame(df: DataFrame, cfg: PipelineConfig, *, require_label: bool = True) -> DataFrame:
    """The model inputs (numerics as double, categoricals as string) and label, other columns kept."""
    from pyspark.sql import functions as F

    label = cfg.label.name
    needed = [*cfg.features.model_inputs, *([label] if require_label else [])]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise TrainingError(f"feature columns {missing} missing from the features zone; rebuild the features")
    has_label = label in df.columns
    return df.select(
        *[F.col(c).cast("double").alias(c) for c in cfg.features.numeric],
        *[F.col(c).cast("string").alias(c) for c in cfg.features.categorical],
        *([F.col(label).cast("int").alias(label)] if has_label else []),
        *[c for c in df.columns if c not in {*cfg.features.model_inputs, label}],
    )


def fit(train_df: DataFrame, cfg: PipelineConfig) -> PipelineModel:
    """Fit the pipeline on the training rows (checks task slots first)."""
    check_task_slots(train_df.sparkSession, cfg.model.num_workers)
    model = build_pipeline(cfg).fit(model_input_frame(train_df, cfg))
    log.info("fitted pipeline with %d stage(s)", len(model.stages))
    return model


def feature_names(model: PipelineModel) -> list[str]:
    """Booster feature order (f0, f1, ...) mapped back to config feature names."""
    from pyspark.ml.feature import VectorAssembler

    for stage in model.stages:
        if isinstance(stage, VectorAssembler):
            return [c.removesuffix(INDEX_SUFFIX) for c in stage.getInputCols()]
    raise TrainingError("the pipeline has no VectorAssembler producing 'features'; was it built by build_pipeline?")


def partition_counts(df: DataFrame) -> dict[str, int]:
    """Rows per ``date`` partition (one small aggregation)."""
    return {str(r["date"]): int(r["count"]) for r in df.groupBy("date").count().collect()}


def check_rows(train_rows: int, holdout_rows: int) -> None:
    if train_rows < MIN_TRAIN_ROWS:
        raise TrainingError(f"only {train_rows} training rows (minimum {MIN_TRAIN_ROWS}); widen the training window")
    if holdout_rows < MIN_HOLDOUT_ROWS:
        raise TrainingError(
            f"only {holdout_rows} holdout rows (minimum {MIN_HOLDOUT_ROWS}); "
            "widen the window or lower model.holdout_days"
        )


def numeric_edges(quantiles: Sequence[float | None], low: float | None, high: float | None) -> list[float]:
    """Bin edges from training quantiles, fenced by the observed range, with -inf/+inf ends.

    Besides the (deduplicated) quantile cut points, the training minimum and the value just
    above the training maximum are edges, so values outside the range seen in training land
    in bins that were empty at training time; a feature that was constant in training (or
    mostly one value) still shows drift when it moves.
    """
    cuts = {float(q) for q in quantiles if q is not None}
    if low is not None and high is not None:
        cuts |= {float(low), math.nextafter(float(high), math.inf)}
    return [-math.inf, *sorted(c for c in cuts if math.isfinite(c)), math.inf]


def reference_profile(train_df: DataFrame, cfg: PipelineConfig) -> dict[str, Any]:
    """Bins and proportions of the training data for every model input, in two Spark passes.

    Pass 1: approximate quantiles, min and max of every numeric feature in one aggregation
    (see :func:`numeric_edges`). Pass 2: every feature's bin counts and
    every category's count in one aggregation (:func:`flightdeck.drift.count_bins`).
    The score distribution is added by :func:`prediction_profile`.
    """
    from pyspark.sql import functions as F

    bins = cfg.drift.bins
    probs = [i / bins for i in range(1, bins)]
    numeric = list(cfg.features.numeric)
    edges: dict[str, list[float]] = {}
    if numeric:
        aggs = []
        for i, name in enumerate(numeric):
            x = F.col(name).cast("double")
            clean = F.when(~F.isnan(x), x)
            aggs += [
                F.percentile_approx(clean, probs, _QUANTILE_ACCURACY).alias(f"q{i}"),
                F.min(clean).alias(f"lo{i}"),
                F.max(clean).alias(f"hi{i}"),
            ]
        row = train_df.agg(*aggs).collect()[0]
        for i, name in enumerate(numeric):
            edges[name] = numeric_edges(row[f"q{i}"] or [], row[f"lo{i}"], row[f"hi{i}"])
    total, counts = count_bins(train_df, edges, dict.fromkeys(cfg.features.categorical))
    if total == 0:
        raise TrainingError("the training data is empty; cannot build a reference profile")
    profile: dict[str, Any] = {"n_rows": total, "bins": bins, "numeric": {}, "categorical": {}, "prediction": None}
    for name, e in edges.items():
        c = counts.get(name, {})
        profile["numeric"][name] = {
            "edges": e,
            "proportions": [c.get(str(i), 0) / total for i in range(len(e) - 1)],
            "null": c.get(NULL_BIN, 0) / total,
        }
    for name in cfg.features.categorical:
        c = counts.get(name, {})
        top = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
        kept = [k for k, _ in top]
        other = total - sum(v for _, v in top)
        profile["categorical"][name] = {
            "categories": [*kept, OTHER],
            "proportions": [*(c[k] / total for k in kept), other / total],
        }
    return profile


def prediction_profile(probabilities: Sequence[float], bins: int) -> dict[str, Any]:
    """Quantile bins of the holdout's predicted probabilities and the share per bin (pure, numpy)."""
    import numpy as np

    values = np.asarray(probabilities, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise TrainingError("no predicted probabilities to profile")
    cuts = sorted({float(v) for v in np.quantile(values, [i / bins for i in range(1, bins)])})
    edges = [float("-inf"), *cuts, float("inf")]
    # searchsorted(side="right") is drift.bin_index's rule: edges[i] <= x < edges[i+1]
    counts = np.bincount(np.searchsorted(np.asarray(cuts), values, side="right"), minlength=len(edges) - 1)
    return {"column": PREDICTION, "edges": edges, "proportions": [float(c) / values.size for c in counts]}
