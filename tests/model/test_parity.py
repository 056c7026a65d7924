"""Parity: the Spark estimator (xgboost.spark) and native ``xgboost.train`` on the same rows,
features and parameters reach the same holdout ROC AUC (within 0.005)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_model import START, small_config, synthetic_features

pytestmark = pytest.mark.spark

DAYS = 8
ROWS_PER_DAY = 400
TOLERANCE = 0.005


def _matrix(frame: Any, label: str) -> tuple[np.ndarray, np.ndarray]:
    rows = frame.select("features", label).collect()
    x = np.array([r["features"].toArray() for r in rows], dtype=np.float64)
    y = np.array([r[label] for r in rows], dtype=np.float64)
    return x, y


def test_spark_and_native_xgboost_reach_the_same_auc(spark: Any, tmp_path: Path) -> None:
    import xgboost as xgb
    from pyspark.sql import functions as F
    from sklearn.metrics import roc_auc_score

    from flightdeck.model.inference import model_input_frame, positive_probability
    from flightdeck.model.training import build_classifier, build_featurizer, xgb_params

    cfg = small_config(tmp_path, FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS="40")
    label = cfg.label.name
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    df = model_input_frame(synthetic_features(spark, cfg, days, ROWS_PER_DAY), cfg)
    holdout_keys = [d.isoformat() for d in days[-cfg.model.holdout_days :]]
    featurizer = build_featurizer(cfg).fit(df.filter(~F.col("date").isin(holdout_keys)))
    # One partition in a fixed order: xgboost.spark (num_workers=1) then sees the rows in the
    # order native xgboost gets them, so even row subsampling draws the same rows.
    ordered = featurizer.transform(df).orderBy("date", "event_ts", "carrier", "flight", "dest")
    prepared = ordered.coalesce(1).localCheckpoint()  # barrier stages refuse a coalesce in their lineage
    train = prepared.filter(~F.col("date").isin(holdout_keys)).persist()
    holdout = prepared.filter(F.col("date").isin(holdout_keys)).persist()

    spark_model = build_classifier(cfg).fit(train)
    scored = spark_model.transform(holdout)
    pdf: Any = scored.select(F.col(label).cast("int").alias("y"), positive_probability(scored).alias("p")).toPandas()
    spark_auc = roc_auc_score(pdf["y"], pdf["p"])

    params = xgb_params(cfg)
    native_params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": params["max_depth"],
        "eta": params["learning_rate"],
        "subsample": params["subsample"],
        "colsample_bytree": params["colsample_bytree"],
        "min_child_weight": params["min_child_weight"],
        "seed": params["random_state"],
        "nthread": 1,
    }
    x_train, y_train = _matrix(train, label)
    x_hold, y_hold = _matrix(holdout, label)
    booster = xgb.train(
        native_params,
        xgb.DMatrix(x_train, label=y_train, missing=np.nan),
        num_boost_round=int(params["n_estimators"]),
    )
    native_auc = roc_auc_score(y_hold, booster.predict(xgb.DMatrix(x_hold, missing=np.nan)))
    train.unpersist()
    holdout.unpersist()

    print(f"parity: spark AUC {spark_auc:.6f}, native AUC {native_auc:.6f}, diff {spark_auc - native_auc:+.6f}")
    assert spark_auc > 0.7  # both learned the signal
    assert abs(spark_auc - native_auc) <= TOLERANCE, (spark_auc, native_auc)
