"""Model behaviour on synthetic features with a real signal: train, evaluate, score, profile, drift.

The features mimic the features zone (passthrough columns, numeric and categorical
features, the label, ``event_ts``, and the ``date`` column that ``read_partitions``
adds). The label depends on ``dep_hour`` and ``wx_precip`` (and a little on carrier),
so a working pipeline must reach a holdout AUC well above chance.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flightdeck.core.config import PipelineConfig, load_config

pytestmark = pytest.mark.spark

START = dt.date(2013, 3, 1)
DAYS = 8
ROWS_PER_DAY = 320
CARRIERS = ["AA", "B6", "DL", "EV", "UA", "US", "WN", "9E"]
ORIGINS = ["EWR", "JFK", "LGA"]
DESTS = ["ATL", "BOS", "CLT", "DCA", "DEN", "FLL", "LAX", "MCO", "MIA", "ORD", "SFO"]


def small_config(lake_root: Path | str, **extra: str) -> PipelineConfig:
    """The flights config, made small: 2 holdout days, 20 trees."""
    environ = {
        "FLIGHTDECK__LAKE__ROOT": str(lake_root),
        "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "2",
        "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "20",
        "FLIGHTDECK__MODEL__PARAMS__MAX_DEPTH": "4",
        **extra,
    }
    return load_config(environ=environ)


def synthetic_features_pandas(
    cfg: PipelineConfig, day: dt.date, rows: int, *, seed: int, shift: bool = False
) -> pd.DataFrame:
    """One day of feature rows (without the ``date`` column) with a learnable signal."""
    rng = np.random.default_rng(seed)
    n = rows
    dep_hour = rng.integers(5, 23, n)
    minute = rng.integers(0, 60, n)
    precip = np.where(rng.random(n) < (0.7 if shift else 0.2), rng.exponential(0.3, n), 0.0)
    carrier = rng.choice(CARRIERS, n, p=[0.1, 0.15, 0.15, 0.2, 0.15, 0.05, 0.1, 0.1])
    dests = rng.choice(DESTS[:3] if shift else DESTS, n)
    base = {
        "distance": rng.uniform(200, 2500, n),
        "dep_hour": dep_hour.astype(float),
        "dep_minute_of_day": (dep_hour * 60 + minute).astype(float),
        "day_of_week": np.full(n, float(day.isoweekday() % 7 + 1)),
        "month_of_year": np.full(n, 7.0 if shift else float(day.month)),
        "wx_temp": rng.normal(75.0 if shift else 40.0, 10.0, n),
        "wx_dewp": rng.normal(60.0 if shift else 30.0, 8.0, n),
        "wx_humid": rng.uniform(20, 100, n),
        "wx_wind_dir": rng.uniform(0, 360, n),
        "wx_wind_speed": rng.gamma(2.0, 5.0, n),
        "wx_wind_gust": rng.gamma(2.0, 7.0, n),
        "wx_precip": precip,
        "wx_pressure": rng.normal(1015, 8, n),
        "wx_visib": rng.uniform(1, 10, n),
        "plane_seats": rng.choice([50.0, 150.0, 200.0], n),
        "plane_engines": rng.choice([2.0, 2.0, 4.0], n),
        "plane_age": rng.uniform(0, 25, n),
    }
    numeric = {name: base.get(name, rng.normal(0, 1, n)) for name in cfg.features.numeric}
    for name in ("wx_wind_gust", "plane_seats", "plane_age"):
        if name in numeric:
            numeric[name] = np.where(rng.random(n) < 0.1, np.nan, numeric[name])
    logit = -1.0 + 0.25 * (dep_hour - 14) + 5.0 * precip + np.where(carrier == "EV", 0.6, 0.0)
    late = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int32")
    time_hour = pd.to_datetime([dt.datetime(day.year, day.month, day.day, int(h)) for h in dep_hour])
    arr_delay = np.where(late == 1, rng.uniform(15, 120, n), rng.uniform(-30, 14, n))
    frame = pd.DataFrame(
        {
            "carrier": carrier,
            "flight": rng.integers(1, 5000, n).astype("int32"),
            "origin": rng.choice(ORIGINS, n),
            "dest": dests,
            "time_hour": time_hour,
            "minute": minute.astype("int32"),
            "arr_delay": arr_delay,
            "dep_time": (dep_hour * 100 + minute).astype("int32"),
            **numeric,
            cfg.label.name: late,
            "event_ts": time_hour + pd.to_timedelta(minute, unit="m"),
        }
    )
    return frame


def synthetic_features(spark: Any, cfg: PipelineConfig, days: list[dt.date], rows: int, *, shift: bool = False) -> Any:
    """Feature rows for ``days`` as a Spark DataFrame with the ``date`` column, like read_partitions."""
    frames = []
    for i, day in enumerate(days):
        pdf = synthetic_features_pandas(cfg, day, rows, seed=1000 * (2 if shift else 1) + i, shift=shift)
        pdf["date"] = day.isoformat()
        frames.append(pdf)
    return spark.createDataFrame(pd.concat(frames, ignore_index=True))


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    return small_config(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="module")
def data(spark: Any, cfg: PipelineConfig) -> Iterator[dict[str, Any]]:
    from pyspark.sql import functions as F

    from flightdeck.model.training import split_partitions

    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    df = synthetic_features(spark, cfg, days, ROWS_PER_DAY).persist()
    train_days, holdout_days = split_partitions(days, cfg.model.holdout_days)
    train = df.filter(F.col("date").isin([d.isoformat() for d in train_days])).persist()
    holdout = df.filter(F.col("date").isin([d.isoformat() for d in holdout_days])).persist()
    yield {"all": df, "train": train, "holdout": holdout, "train_days": train_days, "holdout_days": holdout_days}
    for frame in (train, holdout, df):
        frame.unpersist()


@pytest.fixture(scope="module")
def model(data: dict[str, Any], cfg: PipelineConfig) -> Any:
    from flightdeck.model.training import fit

    return fit(data["train"], cfg)


# --- training and evaluation ---------------------------------------------------------------------


def test_time_split_uses_last_days_as_holdout(data: dict[str, Any]) -> None:
    assert data["holdout_days"] == [dt.date(2013, 3, 7), dt.date(2013, 3, 8)]
    assert max(data["train_days"]) < min(data["holdout_days"])


def test_split_needs_enough_partitions() -> None:
    from flightdeck.model.training import TrainingError, split_partitions

    with pytest.raises(TrainingError, match="need at least 3 feature partitions"):
        split_partitions([START, START + dt.timedelta(days=1)], 2)


def test_too_few_rows_fails_clearly() -> None:
    from flightdeck.model.training import TrainingError, check_rows

    with pytest.raises(TrainingError, match="only 10 training rows"):
        check_rows(10, 100)


def test_task_slot_check_fails_fast(spark: Any) -> None:
    from flightdeck.model.training import TrainingError, check_task_slots

    with pytest.raises(TrainingError, match="num_workers=64 but Spark offers only 2"):
        check_task_slots(spark, 64)


def test_model_learns_the_signal(model: Any, data: dict[str, Any], cfg: PipelineConfig) -> None:
    from flightdeck.model.evaluation import metrics
    from flightdeck.model.inference import collect_scores

    m = metrics(*collect_scores(model, data["holdout"], cfg))
    assert m["roc_auc"] > 0.7
    assert m["n_rows"] == 2 * ROWS_PER_DAY
    assert 0 < m["positive_rate"] < 1
    assert 0 < m["brier"] < 0.25
    assert m["log_loss"] > 0 and 0 < m["pr_auc"] <= 1


def test_training_is_deterministic(model: Any, data: dict[str, Any], cfg: PipelineConfig) -> None:
    from flightdeck.model.inference import collect_scores
    from flightdeck.model.training import fit

    again = fit(data["train"], cfg)
    _, p1 = collect_scores(model, data["holdout"], cfg)
    _, p2 = collect_scores(again, data["holdout"], cfg)
    np.testing.assert_allclose(np.sort(p1), np.sort(p2), rtol=0, atol=1e-7)


def test_feature_importance_names_and_signal(model: Any, cfg: PipelineConfig, tmp_path: Path) -> None:
    from flightdeck.model.evaluation import feature_importance, write_plots

    importance = feature_importance(model)
    assert set(importance) == set(cfg.features.model_inputs)
    top = sorted(importance, key=lambda k: -importance[k])[:3]
    assert "wx_precip" in top and ("dep_hour" in top or "dep_minute_of_day" in top)
    paths = write_plots([0, 1, 0, 1, 1, 0], [0.1, 0.8, 0.3, 0.6, 0.9, 0.2], importance, tmp_path)
    assert {Path(p).name for p in paths} == {
        "roc_curve.png", "precision_recall_curve.png", "calibration.png", "feature_importance.png"
    }  # fmt: skip


# --- scoring -------------------------------------------------------------------------------------


def test_score_carries_version_and_probabilities(model: Any, data: dict[str, Any], cfg: PipelineConfig) -> None:
    from pyspark.sql import functions as F

    from flightdeck.model.inference import score

    out = score(model, data["holdout"], model_name=cfg.model.name, model_version="7", run_key="run-1", cfg=cfg)
    assert out.columns == [
        *cfg.features.passthrough, "event_ts", "probability", "prediction",
        "model_name", "model_version", "scoring_run", "feature_partition",
    ]  # fmt: skip
    stats = out.agg(
        F.count("*").alias("n"),
        F.min("probability").alias("pmin"),
        F.max("probability").alias("pmax"),
        F.sum(F.when(F.col("model_version") == "7", 1).otherwise(0)).alias("v7"),
        F.countDistinct("feature_partition").alias("parts"),
        F.sum(F.when(F.col("prediction").isin(0, 1), 1).otherwise(0)).alias("binary"),
    ).first()
    assert stats["n"] == 2 * ROWS_PER_DAY == stats["v7"] == stats["binary"]
    assert 0.0 <= stats["pmin"] <= stats["pmax"] <= 1.0
    assert stats["parts"] == 2
    assert dict(out.dtypes)["probability"] == "double" and dict(out.dtypes)["prediction"] == "int"
    # keys are carried unchanged (carrier is also a model input that the pipeline indexes)
    first = data["holdout"].orderBy("event_ts", "flight").select("carrier", "flight").first()
    match = out.filter((F.col("flight") == first["flight"]) & (F.col("carrier") == first["carrier"])).count()
    assert match >= 1


def test_fast_probability_equals_the_models_own_transform(
    model: Any, data: dict[str, Any], cfg: PipelineConfig
) -> None:
    """Scoring runs the booster on the raw feature columns (no vector column); its probabilities and
    predictions must be the ones model.transform gives, with nulls, an unseen category and an
    early-stopped tree range (best_iteration) in play."""
    from pyspark.sql import functions as F

    from flightdeck.model.inference import model_input_frame, positive_probability, with_probability

    rows = (
        data["holdout"]
        .withColumn("carrier", F.when(F.col("flight") % 7 == 0, F.lit("ZZ")).otherwise(F.col("carrier")))
        .withColumn("wx_temp", F.when(F.col("flight") % 5 == 0, F.lit(None)).otherwise(F.col("wx_temp")))
        .withColumn("rid", F.monotonically_increasing_id())
    )
    frame = model_input_frame(rows, cfg, require_label=False).persist()
    booster = model.stages[-1].get_booster()
    spreads = {}
    try:
        for best in (None, "7", "0"):
            booster.set_attr(best_iteration=best)
            scored = model.transform(frame)
            want = scored.select("rid", positive_probability(scored).alias("p"), "prediction").toPandas()
            got = with_probability(model, frame, "p").select("rid", "p").toPandas()
            want, got = want.sort_values("rid"), got.sort_values("rid")
            assert len(got) == len(want) == 2 * ROWS_PER_DAY
            np.testing.assert_array_equal(got["rid"].to_numpy(), want["rid"].to_numpy())
            np.testing.assert_array_equal(got["p"].to_numpy(), want["p"].to_numpy())
            np.testing.assert_array_equal((got["p"].to_numpy() > 0.5).astype(int), want["prediction"].to_numpy())
            spreads[best] = float(np.std(got["p"].to_numpy()))
    finally:
        booster.set_attr(best_iteration=None)
        frame.unpersist()
    # one tree scores differently from twenty: the tree range is really applied
    assert spreads["0"] < spreads[None]


# --- reference profile and drift -----------------------------------------------------------------


@pytest.fixture(scope="module")
def profile(model: Any, data: dict[str, Any], cfg: PipelineConfig) -> dict[str, Any]:
    from flightdeck.model.inference import collect_scores
    from flightdeck.monitoring.profile import prediction_profile, reference_profile

    prof = reference_profile(data["train"], cfg)
    _, p = collect_scores(model, data["holdout"], cfg)
    prof["prediction"] = prediction_profile(p, cfg.drift.bins)
    return prof


def test_reference_profile_shape(profile: dict[str, Any], cfg: PipelineConfig) -> None:
    assert profile["n_rows"] == (DAYS - 2) * ROWS_PER_DAY
    assert set(profile["numeric"]) == set(cfg.features.numeric)
    assert set(profile["categorical"]) == set(cfg.features.categorical)
    for spec in profile["numeric"].values():
        assert spec["edges"][0] == float("-inf") and spec["edges"][-1] == float("inf")
        assert spec["edges"] == sorted(set(spec["edges"]))
        assert sum(spec["proportions"]) + spec["null"] == pytest.approx(1.0)
    wx_dep = profile["numeric"]["dep_hour"]
    assert len(wx_dep["edges"]) - 1 >= 8  # deciles of a spread-out feature
    assert profile["numeric"]["wx_wind_gust"]["null"] == pytest.approx(0.1, abs=0.03)
    carrier = profile["categorical"]["carrier"]
    assert carrier["categories"][-1] == "__other__" and set(carrier["categories"][:-1]) == set(CARRIERS)
    assert sum(carrier["proportions"]) == pytest.approx(1.0)
    assert sum(profile["prediction"]["proportions"]) == pytest.approx(1.0)
    json.loads(json.dumps(profile))  # serialisable (Infinity is Python-JSON)


def test_drift_on_same_data_is_zero(profile: dict[str, Any], data: dict[str, Any], cfg: PipelineConfig) -> None:
    from flightdeck.monitoring.drift import drift_report, profile_counts

    current = profile_counts(data["train"], profile)
    report = drift_report(profile, current, cfg.drift, current["n_rows"])
    assert report["status"] == "ok" and report["missing"] == []
    assert max(report["psi"].values()) == pytest.approx(0.0, abs=1e-9)
    assert report["drifted"] == [] and report["drifted_share"] == 0.0


def test_drift_on_shifted_data(
    spark: Any, model: Any, profile: dict[str, Any], data: dict[str, Any], cfg: PipelineConfig
) -> None:
    from flightdeck.model.inference import score
    from flightdeck.monitoring.drift import drift_report, profile_counts
    from flightdeck.monitoring.retrain import History, should_retrain

    day = dt.date(2013, 7, 1)
    shifted = synthetic_features(spark, cfg, [day], 600, shift=True)
    scored = score(model, shifted, model_name="m", model_version="1", run_key=None, cfg=cfg)
    current = profile_counts(shifted, profile)
    current["prediction"] = profile_counts(scored.select("probability"), profile)["prediction"]
    report = drift_report(profile, current, cfg.drift, current["n_rows"])
    assert {"wx_temp", "wx_dewp", "wx_precip", "dest"} <= set(report["drifted"])
    assert report["psi"]["month_of_year"] > cfg.drift.psi_threshold  # reported, but excluded by config
    assert "month_of_year" in report["excluded"] and "month_of_year" not in report["drifted"]
    assert report["psi"]["wx_temp"] > cfg.drift.psi_threshold
    assert report["psi"]["dep_hour"] < cfg.drift.psi_threshold
    assert report["prediction_psi"] > 0.1  # the score distribution moves with wx_precip
    decision = should_retrain(History(day=day, windows=[{**report, "date": day.isoformat()}]), cfg.drift)
    assert decision.retrain
    assert "wx_temp" in json.dumps(decision.details, default=str)  # named among the drifted features
