"""Regression (``model.task: regression``) through the library and the jobs, on synthetic rows
with a known relation: label = 3 (dep_hour - 14) + 20 wx_precip + 6 [carrier = EV] + N(0, 2²).

A working regressor must find it (holdout R² high, RMSE near the noise level); the gate judges
RMSE (a candidate trained on shuffled labels is rejected, the bootstrap interval of the relative
RMSE difference named); scoring writes ``prediction`` doubles with the model version and no
``probability``; the reference profile and drift use the ``prediction`` column; a labelled day
breaches only when the bootstrap interval of its RMSE rise clears ``drift.max_rmse_rise``.
Expected values come from the relation and the noise level, never from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_model import START, synthetic_features_pandas

from flightdeck.core.config import ConfigError, Drift, Gate, PipelineConfig, load_config
from flightdeck.model.gate import decide, decide_regression
from flightdeck.monitoring.drift import monitoring_rows, regression_performance_report
from flightdeck.monitoring.drift_html import render_report
from flightdeck.monitoring.retrain import History, should_retrain, window_breaches

NOISE = 2.0
DAYS = 6
ROWS_PER_DAY = 500
LABEL = "delay_minutes"
REGRESSION_ENV = {
    "FLIGHTDECK__MODEL__TASK": "regression",
    "FLIGHTDECK__LABEL__NAME": LABEL,
    "FLIGHTDECK__LABEL__EXPRESSION": "coalesce(arr_delay, 0.0)",
    "FLIGHTDECK__MODEL__HOLDOUT_DAYS": "2",
    "FLIGHTDECK__MODEL__PARAMS__N_ESTIMATORS": "60",
    "FLIGHTDECK__MODEL__PARAMS__MAX_DEPTH": "4",
    "FLIGHTDECK__MODEL__PARAMS__LEARNING_RATE": "0.3",
}


def true_relation(frame: pd.DataFrame) -> np.ndarray:
    """The noiseless label of each row."""
    return (
        3.0 * (frame["dep_hour"].to_numpy() - 14)
        + 20.0 * frame["wx_precip"].to_numpy()
        + np.where(frame["carrier"].to_numpy() == "EV", 6.0, 0.0)
    )


def regression_day(cfg: PipelineConfig, day: dt.date, rows: int, *, seed: int, noise: float = NOISE) -> pd.DataFrame:
    """One day of feature rows whose label follows :func:`true_relation` plus Gaussian noise."""
    frame = synthetic_features_pandas(cfg, day, rows, seed=seed)
    frame[LABEL] = true_relation(frame) + np.random.default_rng(seed + 99).normal(0.0, noise, rows)
    return frame


def regression_config(lake_root: Path | str, **extra: str) -> PipelineConfig:
    return load_config(environ={"FLIGHTDECK__LAKE__ROOT": str(lake_root), **REGRESSION_ENV, **extra})


# --- configuration ----------------------------------------------------------------------------


def test_binary_is_the_default_task_and_needs_its_auc_thresholds() -> None:
    cfg = load_config(environ={})
    assert cfg.model.task == "binary" and cfg.gate.min_auc == 0.62 and cfg.gate.max_auc_regression == 0.01
    with pytest.raises(ConfigError, match=r"model\.task is binary: gate\.min_auc must be set"):
        load_config(environ={"FLIGHTDECK__GATE__MIN_AUC": "null"})
    with pytest.raises(ConfigError, match=r"gate\.min_auc, gate\.max_auc_regression must be set"):
        load_config(environ={"FLIGHTDECK__GATE__MIN_AUC": "null", "FLIGHTDECK__GATE__MAX_AUC_REGRESSION": "null"})


def test_regression_needs_no_auc_threshold_and_has_rmse_defaults() -> None:
    cfg = load_config(
        environ={"FLIGHTDECK__MODEL__TASK": "regression", "FLIGHTDECK__GATE__MIN_AUC": "null",
                 "FLIGHTDECK__GATE__MAX_AUC_REGRESSION": "null"}
    )  # fmt: skip
    assert cfg.model.task == "regression"
    assert cfg.gate.max_rmse is None and cfg.gate.max_rmse_regression == 0.05
    assert cfg.gate.max_slice_rmse_regression is None and cfg.drift.max_rmse_rise == 0.1
    assert Gate().missing_for("regression") == [] and Gate().missing_for("binary") == [
        "gate.min_auc", "gate.max_auc_regression"
    ]  # fmt: skip


def test_unknown_task_and_bad_rmse_thresholds_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.task"):
        load_config(environ={"FLIGHTDECK__MODEL__TASK": "multiclass"})
    with pytest.raises(ConfigError, match=r"gate\.max_rmse"):
        load_config(environ={"FLIGHTDECK__MODEL__TASK": "regression", "FLIGHTDECK__GATE__MAX_RMSE": "0"})
    with pytest.raises(ConfigError, match=r"drift\.max_rmse_rise"):
        load_config(environ={"FLIGHTDECK__DRIFT__MAX_RMSE_RISE": "-0.1"})


# --- the gate on RMSE (pure) ------------------------------------------------------------------

GATE = Gate(max_rmse_regression=0.05, min_slice_rows=100)


def test_first_regression_model_is_judged_on_the_optional_ceiling_only() -> None:
    d = decide({"rmse": 2.1}, None, GATE, task="regression")
    assert d.passed and set(d.checks) == {"max_rmse", "max_rmse_regression"}
    assert "no absolute ceiling: gate.max_rmse is not set" in d.reasons[0]
    capped = decide({"rmse": 2.1}, None, GATE.model_copy(update={"max_rmse": 2.0}), task="regression")
    assert not capped.passed and capped.reasons[0] == "candidate RMSE 2.1 > ceiling 2"
    assert not decide({"roc_auc": 0.7}, None, GATE, task="regression").passed  # no rmse: cannot judge


def test_rmse_worse_than_the_allowed_share_fails_with_numbers() -> None:
    d = decide_regression({"rmse": 2.2}, {"rmse": 2.0}, GATE)  # 10% worse, 5% allowed
    assert not d.passed
    check = d.checks["max_rmse_regression"]
    assert check["value"] == pytest.approx(0.10) and check["ceiling"] == pytest.approx(2.1)
    assert "candidate RMSE 2.2 vs champion 2 (change +10.0%): > ceiling 2.1" in d.reasons[-1]
    assert decide_regression({"rmse": 2.08}, {"rmse": 2.0}, GATE).passed  # 4% worse: within 5%
    assert decide_regression({"rmse": 1.5}, {"rmse": 2.0}, GATE).passed  # better


def test_rmse_interval_wholly_above_the_allowed_share_fails() -> None:
    # point estimate within 5%, but the paired bootstrap says worse by more than 5% with 95% confidence
    d = decide_regression({"rmse": 2.09}, {"rmse": 2.0}, GATE, rmse_diff_ci=(0.051, 0.07))
    assert not d.passed and d.checks["max_rmse_regression"]["passed"]
    assert d.checks["rmse_diff_ci"] == {"low": 0.051, "high": 0.07, "confidence": 0.95, "threshold": 0.05,
                                        "passed": False}  # fmt: skip
    assert "relative RMSE difference (candidate / champion - 1) [+5.1%, +7.0%] lies wholly above +5.0%" in d.reasons[-1]
    assert decide_regression({"rmse": 2.09}, {"rmse": 2.0}, GATE, rmse_diff_ci=(0.02, 0.07)).passed


def test_rmse_slices_fail_only_when_their_interval_clears_the_threshold() -> None:
    slices = {
        "carrier": {
            # 20% worse point estimate, but the interval reaches below 5%: noise, not judged worse
            "AA": {"n": 300, "candidate": 2.4, "champion": 2.0, "low": -0.02, "high": 0.45},
            # the whole interval above 5%: this slice is worse
            "EV": {"n": 400, "candidate": 3.0, "champion": 2.0, "low": 0.30, "high": 0.70},
            "B6": {"n": 20, "candidate": 9.0, "champion": 2.0, "low": None, "high": None},  # too small
        }
    }
    d = decide_regression({"rmse": 2.0}, {"rmse": 2.0}, GATE, slices=slices)
    assert not d.passed
    assert [f["slice"] for f in d.checks["slices"]["failed"]] == ["carrier=EV"]
    assert d.checks["slices"]["judged"] == 2 and d.checks["slices"]["skipped"] == 1
    assert "carrier=EV RMSE 3 vs 2 (+50.0%, interval [+30.0%, +70.0%], n=400)" in d.reasons[-1]
    looser = GATE.model_copy(update={"max_slice_rmse_regression": 0.35})
    assert decide_regression({"rmse": 2.0}, {"rmse": 2.0}, looser, slices=slices).passed


def test_bootstrap_rmse_interval_brackets_a_known_worsening() -> None:
    from flightdeck.model.evaluation import bootstrap_rmse_diff, slice_rmses

    rng = np.random.default_rng(0)
    y = rng.normal(0, 5, 4000)
    good = y + rng.normal(0, 1.0, y.size)
    worse = y + rng.normal(0, 1.5, y.size)  # RMSE 1.5 vs 1.0: 50% worse
    ci = bootstrap_rmse_diff(y, worse, good, samples=200, confidence=0.95, seed=1)
    assert 0.35 < ci["low"] < 0.5 < ci["high"] < 0.65
    assert bootstrap_rmse_diff(y, good, good, samples=50, confidence=0.95, seed=1)["high"] == 0.0
    assert bootstrap_rmse_diff(y, worse, good, samples=200, confidence=0.95, seed=1) == ci  # seeded
    keys = np.where(np.arange(y.size) % 4 == 0, "small", "big")
    from flightdeck.model.evaluation import Resampling

    out = slice_rmses(y, worse, good, {"k": keys}, min_rows=2000, resampling=Resampling(100, 0.95, 3))
    assert out["k"]["big"]["n"] == 3000 and out["k"]["big"]["candidate"] == pytest.approx(1.5, rel=0.05)
    assert 0.3 < out["k"]["big"]["low"] < out["k"]["big"]["high"] < 0.7  # type: ignore[operator]
    assert "low" not in out["k"]["small"]  # 1000 rows < min_rows: no interval


# --- live performance once labels arrive (pure) -----------------------------------------------------

POLICY = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=50, cooldown_days=7, max_rmse_rise=0.1)
HOLDOUT = {"rmse": 2.0, "mae": 1.6}


def _labelled(seed: int, n: int, noise: float) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 10, n)
    return truth.tolist(), (truth + rng.normal(0, noise, n)).tolist()


def test_a_day_like_the_holdout_holds() -> None:
    labels, preds = _labelled(1, 800, 2.0)
    perf = regression_performance_report(labels, preds, HOLDOUT, POLICY, data_date="2013-07-01", model_version="1")
    assert perf["status"] == "ok" and perf["task"] == "regression"
    assert perf["rmse"] == pytest.approx(2.0, rel=0.08) and perf["mae"] == pytest.approx(1.6, rel=0.08)
    low, high = perf["rmse_rise_interval"]
    assert low < 0.0 < high or abs(perf["rmse_rise"]) < 0.05
    assert not perf["rmse_breach"]
    verdict = window_breaches({"status": "ok", "drifted_share": 0.0, "performance": perf}, POLICY)
    assert verdict["breaches"] == [] and "breach only when all of it >= 10.0%" in verdict["notes"][-1]


def test_a_noisy_rise_whose_interval_straddles_the_threshold_is_no_breach() -> None:
    for seed in range(60):  # a small day (60 rows) whose point rise is past 10% by chance
        labels, preds = _labelled(seed, 60, 2.1)
        perf = regression_performance_report(labels, preds, HOLDOUT, POLICY.model_copy(update={"min_labeled_rows": 50}))
        if perf["rmse_rise"] >= 0.1:
            break
    else:
        pytest.fail("no seed gave a point rise past the threshold")
    low, high = perf["rmse_rise_interval"]
    assert perf["status"] == "ok" and low < POLICY.max_rmse_rise <= perf["rmse_rise"] < high
    assert not perf["rmse_breach"]


def test_clearly_worse_predictions_breach_and_ask_for_a_retrain() -> None:
    labels, preds = _labelled(4, 900, 3.0)  # RMSE 3 vs holdout 2: 50% worse
    perf = regression_performance_report(labels, preds, HOLDOUT, POLICY, data_date="2013-07-01", model_version="1")
    low, high = perf["rmse_rise_interval"]
    assert POLICY.max_rmse_rise <= low <= perf["rmse_rise"] <= high
    assert perf["rmse_rise"] == pytest.approx(0.5, abs=0.08) and perf["rmse_breach"]
    assert regression_performance_report(labels, preds, HOLDOUT, POLICY)["rmse_rise_interval"] == [low, high]
    report = {"date": "2013-07-02", "status": "ok", "drifted_share": 0.0, "psi": {}, "performance": perf}
    decision = should_retrain(History(dt.date(2013, 7, 2), [report]), POLICY)
    assert decision.retrain and decision.reason.startswith("RMSE ") and "labels of 2013-07-01" in decision.reason
    assert "95% interval" in decision.reason and ">= 10.0%" in decision.reason
    rows = {r["name"]: r for r in monitoring_rows(report, POLICY) if r["kind"] == "performance"}
    assert set(rows) == {"rmse", "mae"}
    assert rows["rmse"]["breached"] and rows["rmse"]["statistic"] == "rmse_rise" and rows["rmse"]["threshold"] == 0.1
    assert rows["rmse"]["observed"] == pytest.approx(perf["rmse"]) and rows["rmse"]["reference"] == 2.0
    assert not rows["mae"]["breached"] and rows["mae"]["threshold"] is None
    page = render_report(report)
    assert "<th>RMSE</th><th>holdout RMSE</th><th>rise</th>" in page and "<th>AUC</th>" not in page
    assert f"<td class='bad'>{perf['rmse_rise']:+.1%}</td>" in page
    assert "bootstrap interval (500 resamples of the labelled rows) of the RMSE rise" in page


def test_too_few_labels_or_no_reference_is_not_judged() -> None:
    labels, preds = _labelled(5, 100, 6.0)
    perf = regression_performance_report(labels, preds, HOLDOUT, POLICY)  # min_labeled_rows 200
    assert perf["status"] == "insufficient_rows" and perf["rmse_rise"] > 1.0 and not perf["rmse_breach"]
    labels, preds = _labelled(5, 300, 6.0)
    perf = regression_performance_report(labels, preds, {}, POLICY, model_version="3")
    assert perf["status"] == "no_reference" and perf["reason"] == "no holdout RMSE for model v3"
    assert not perf["rmse_breach"]


# --- Spark: train, score, profile -----------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    return regression_config(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="module")
def data(spark: Any, cfg: PipelineConfig) -> Any:
    from pyspark.sql import functions as F

    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    frames = []
    for i, day in enumerate(days):
        frame = regression_day(cfg, day, ROWS_PER_DAY, seed=500 + i)
        frame["date"] = day.isoformat()
        frames.append(frame)
    df = spark.createDataFrame(pd.concat(frames, ignore_index=True)).persist()
    holdout_days = [d.isoformat() for d in days[-2:]]
    train = df.filter(~F.col("date").isin(holdout_days)).persist()
    holdout = df.filter(F.col("date").isin(holdout_days)).persist()
    yield {"train": train, "holdout": holdout}
    for frame in (train, holdout, df):
        frame.unpersist()


@pytest.fixture(scope="module")
def model(data: dict[str, Any], cfg: PipelineConfig) -> Any:
    from flightdeck.model.training import fit

    return fit(data["train"], cfg)


@pytest.mark.spark
def test_regressor_learns_the_relation(model: Any, data: dict[str, Any], cfg: PipelineConfig) -> None:
    from xgboost.spark import SparkXGBRegressorModel

    from flightdeck.model.evaluation import regression_metrics
    from flightdeck.model.inference import collect_scores, model_task
    from flightdeck.model.training import build_estimator

    assert isinstance(model.stages[-1], SparkXGBRegressorModel) and model_task(model) == "regression"
    assert build_estimator(cfg).getOrDefault("objective") == "reg:squarederror"
    y, pred = collect_scores(model, data["holdout"], cfg)
    assert y.dtype == np.float64 and y.size == 2 * ROWS_PER_DAY
    m = regression_metrics(y, pred)
    # label sd about 16 (3 x dep_hour's 5.2, plus precip and carrier), noise 2: R² near 0.98
    assert m["r2"] > 0.95
    assert NOISE * 0.9 < m["rmse"] < NOISE * 1.3  # near the noise level: the relation is learned
    assert m["mae"] < m["rmse"] and abs(m["mean_error"]) < 0.5 and m["n_rows"] == 2 * ROWS_PER_DAY


@pytest.mark.spark
def test_fast_value_equals_the_models_own_transform(model: Any, data: dict[str, Any], cfg: PipelineConfig) -> None:
    """Scoring runs the booster on the raw feature columns; its values must be model.transform's
    prediction, with nulls, an unseen category and an early-stopped tree range in play."""
    from pyspark.sql import functions as F

    from flightdeck.model.inference import model_input_frame, with_value

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
        for best in (None, "5", "0"):
            booster.set_attr(best_iteration=best)
            want = model.transform(frame).select("rid", "prediction").toPandas().sort_values("rid")
            got = with_value(model, frame, "v").select("rid", "v").toPandas().sort_values("rid")
            np.testing.assert_array_equal(got["rid"].to_numpy(), want["rid"].to_numpy())
            np.testing.assert_array_equal(got["v"].to_numpy(), want["prediction"].to_numpy())
            spreads[best] = float(np.std(got["v"].to_numpy()))
    finally:
        booster.set_attr(best_iteration=None)
        frame.unpersist()
    assert spreads["0"] < spreads[None]  # one tree predicts a narrower range than sixty


@pytest.mark.spark
def test_scoring_writes_prediction_doubles_with_the_version(
    model: Any, data: dict[str, Any], cfg: PipelineConfig
) -> None:
    from pyspark.sql import functions as F

    from flightdeck.model.inference import ModelInputError, score

    rows = data["holdout"].withColumn("flight", F.monotonically_increasing_id())  # a unique key to join back on
    out = score(model, rows, model_name=cfg.model.name, model_version="3", run_key="r", cfg=cfg)
    assert out.columns == [
        *cfg.features.passthrough, "event_ts", "prediction", "model_name", "model_version", "scoring_run",
        "feature_partition",
    ]  # fmt: skip
    assert dict(out.dtypes)["prediction"] == "double"
    joined = out.select("flight", "prediction", "model_version").join(
        rows.select("flight", "dep_hour", "wx_precip", F.col("carrier").alias("carrier")), "flight"
    )
    pdf = joined.toPandas()
    assert set(pdf["model_version"]) == {"3"} and len(pdf) == out.count() == 2 * ROWS_PER_DAY
    # the predictions follow the relation (not a class, not a probability)
    assert np.sqrt(np.mean((pdf["prediction"] - true_relation(pdf)) ** 2)) < 1.5
    assert pdf["prediction"].min() < -10 and pdf["prediction"].max() > 10
    # a binary config refuses the regressor, naming the fix
    binary = cfg.model_copy(update={"model": cfg.model.model_copy(update={"task": "binary"})})
    with pytest.raises(ModelInputError, match=r"is a regression model but model\.task is binary"):
        score(model, data["holdout"], model_name="m", model_version="3", run_key=None, cfg=binary)
    assert out.filter(F.col("prediction").isNull()).count() == 0


@pytest.mark.spark
def test_profile_holds_the_prediction_distribution_and_drift_uses_it(
    spark: Any, model: Any, data: dict[str, Any], cfg: PipelineConfig
) -> None:
    from flightdeck.model.inference import collect_scores, score
    from flightdeck.monitoring.drift import drift_report, profile_counts
    from flightdeck.monitoring.profile import prediction_profile, reference_profile

    _, pred = collect_scores(model, data["holdout"], cfg)
    profile = {**reference_profile(data["train"], cfg), "prediction": prediction_profile(pred, cfg.drift.bins,
                                                                                          "prediction")}  # fmt: skip
    spec = profile["prediction"]
    assert spec["column"] == "prediction" and len(spec["edges"]) == cfg.drift.bins + 1
    assert spec["edges"][1] < -5 and spec["edges"][-2] > 5  # the value range, not [0, 1]
    assert sum(spec["proportions"]) == pytest.approx(1.0) and max(spec["proportions"]) < 0.2
    json.loads(json.dumps(profile))

    same = score(model, data["holdout"], model_name="m", model_version="1", run_key=None, cfg=cfg)
    current = profile_counts(data["holdout"], profile, predictions=same)
    assert current["n_predictions"] == 2 * ROWS_PER_DAY and current["prediction"]["column"] == "prediction"
    report = drift_report(profile, current, cfg.drift, current["n_rows"])
    assert report["prediction_column"] == "prediction"
    assert report["prediction_psi"] == pytest.approx(0.0, abs=1e-9) and not report["prediction_drifted"]
    rows = {(r["kind"], r["name"]) for r in monitoring_rows({**report, "date": "2013-03-07"}, cfg.drift)}
    assert ("prediction", "prediction") in rows and ("prediction", "probability") not in rows

    later = data["holdout"].withColumn("dep_hour", data["holdout"]["dep_hour"] + 6)  # later departures: higher values
    shifted = score(model, later, model_name="m", model_version="1", run_key=None, cfg=cfg)
    moved = drift_report(profile, profile_counts(later, profile, predictions=shifted), cfg.drift, 2 * ROWS_PER_DAY)
    assert moved["prediction_drifted"] and moved["prediction_psi"] > 0.5


# --- the jobs end to end: train, evaluate, gate, promote, score, detect drift (MLflow on SQLite) ----


def _write_days(spark: Any, cfg: PipelineConfig, days: list[dt.date], *, shuffle: bool = False) -> None:
    from flightdeck.core.lake import Lake
    from flightdeck.data.sparkio import write_partition

    lake = Lake(cfg.lake.root)
    for i, day in enumerate(days):
        frame = regression_day(cfg, day, ROWS_PER_DAY, seed=700 + i)
        if shuffle:
            frame[LABEL] = np.random.default_rng(11 + i).permutation(frame[LABEL].to_numpy())
        write_partition(spark.createDataFrame(frame), lake, "features", cfg.dataset.entity.name, day)


@dataclass(frozen=True)
class Jobs:
    """The jobs test's configuration, lake, MLflow client and training window."""

    cfg: PipelineConfig
    lake: Any
    client: Any
    days: list[dt.date]

    @property
    def window(self) -> list[str]:
        return ["--train-start", self.days[0].isoformat(), "--train-end", self.days[-1].isoformat()]


def _jobs_setup(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    from mlflow import MlflowClient

    from flightdeck.core.lake import Lake

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) goes under tmp
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        **REGRESSION_ENV,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "FLIGHTDECK__LAKE__ROOT": str(tmp_path / "lake"),
        "FLIGHTDECK__MODEL__NAME": "flightdeck-regression-test",
        "FLIGHTDECK__MODEL__VALIDATION_DAYS": "1",
        "FLIGHTDECK__MODEL__EARLY_STOPPING_ROUNDS": "5",
        "FLIGHTDECK__MODEL__SEARCH__MAX_TRIALS": "1",
        "FLIGHTDECK__GATE__MIN_SLICE_ROWS": "100",
        "FLIGHTDECK__GATE__BOOTSTRAP_SAMPLES": "100",
        "FLIGHTDECK__GATE__MAX_RMSE": "4.0",
        "FLIGHTDECK_ACTOR": "pytest",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config()
    jobs = Jobs(cfg, Lake(cfg.lake.root), MlflowClient(tracking_uri=uri, registry_uri=uri),
                [START + dt.timedelta(days=i) for i in range(DAYS)])  # fmt: skip
    _write_days(spark, cfg, jobs.days)
    return jobs


def _first_model_learns_and_is_promoted(jobs: Jobs) -> dict[str, Any]:
    """The first model: learned, logged under the regression metrics with the residual plots, promoted."""
    from flightdeck.core.jobargs import load_job
    from flightdeck.model import promotion

    first = load_job("train").main([*jobs.window, "--run-key", "r1"])
    assert first["version"] == "1" and NOISE * 0.9 < first["metrics"]["rmse"] < NOISE * 1.3
    assert first["metrics"]["r2"] > 0.95 and "roc_auc" not in first["metrics"]
    run = jobs.client.get_run(first["run_id"])
    assert {"rmse", "mae", "r2", "val_rmse"} <= set(run.data.metrics) and run.data.params["task"] == "regression"
    plots = {Path(a.path).name for a in jobs.client.list_artifacts(first["run_id"], "plots")}
    assert plots == {"predicted_vs_actual.png", "residuals_by_decile.png", "feature_importance.png"}
    load_job("evaluate").main(["--run-key", "r1"])
    decision = promotion.gate_candidate("r1")
    assert decision["passed"] and decision["metric"] == "rmse" and decision["task"] == "regression"
    assert decision["checks"]["max_rmse"]["value"] == pytest.approx(first["metrics"]["rmse"])
    assert decision["checks"]["max_rmse"]["threshold"] == 4.0 and decision["checks"]["max_rmse"]["passed"]
    promotion.promote_candidate("r1", decision, who="pytest")
    return first


def _worse_candidate_is_rejected(spark: Any, jobs: Jobs) -> None:
    """A candidate trained on shuffled labels: rejected on RMSE, the interval named; the champion stays."""
    from flightdeck.core.jobargs import load_job
    from flightdeck.model import promotion, registry

    _write_days(spark, jobs.cfg, jobs.days[:4], shuffle=True)  # the same holdout days, training labels shuffled
    load_job("train").main([*jobs.window, "--run-key", "r2"])
    comparison = load_job("evaluate").main(["--run-key", "r2"])["comparison"]
    assert comparison["metric"] == "rmse" and comparison["rmse_diff_ci"]["low"] > 1.0  # more than twice the error
    assert comparison["slices"]["carrier"]["EV"]["low"] > 0.5
    worse = promotion.gate_candidate("r2")
    assert not worse["passed"] and worse["metric"] == "rmse"
    assert worse["candidate_rmse"] > 2 * worse["champion_rmse"] and worse["candidate_roc_auc"] is None
    failed = {k for k, v in worse["checks"].items() if not v["passed"]}
    assert {"max_rmse", "max_rmse_regression", "slices", "rmse_diff_ci"} == failed
    named = [r for r in worse["reasons"] if "bootstrap interval of the relative RMSE difference" in r]
    assert len(named) == 1 and "lies wholly above +5.0%" in named[0]
    assert registry.champion_version(jobs.cfg.model.name, client=jobs.client) == "1"


def _scores_and_monitors(spark: Any, jobs: Jobs, first: dict[str, Any]) -> None:
    """Scoring with the champion, then drift of the second holdout day and the first one's labels."""
    from flightdeck.core.jobargs import load_job
    from flightdeck.data.sparkio import read_partitions

    _write_days(spark, jobs.cfg, jobs.days)  # the true labels back
    holdout = [d.isoformat() for d in jobs.days[-2:]]
    load_job("score").main(["--partition", ",".join(holdout), "--model-version", "champion"])
    predictions = read_partitions(spark, jobs.lake, "predictions", jobs.cfg.dataset.entity.name, holdout)
    assert "probability" not in predictions.columns and dict(predictions.dtypes)["prediction"] == "double"
    assert {r[0] for r in predictions.select("model_version").distinct().collect()} == {"1"}
    args = ["--partition", holdout[1], "--model-version", "champion", "--run-key", "d1"]
    summary = load_job("detect_drift").main(args)
    assert summary["prediction_column"] == "prediction" and summary["prediction_psi"] is not None
    perf = summary["performance"]
    assert perf["task"] == "regression" and perf["status"] == "ok" and perf["date"] == holdout[0]
    assert perf["reference"]["rmse"] == pytest.approx(first["metrics"]["rmse"])
    assert abs(perf["rmse_rise"]) < 0.15 and not perf["rmse_breach"]  # a day like the holdout: no breach
    low, high = perf["rmse_rise_interval"]
    assert low < perf["rmse_rise"] < high and low < jobs.cfg.drift.max_rmse_rise
    assert not math.isnan(perf["mae"])


@pytest.mark.spark
def test_regression_jobs_train_gate_score_and_monitor(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _jobs_setup(spark, tmp_path, monkeypatch)
    first = _first_model_learns_and_is_promoted(jobs)
    _worse_candidate_is_rejected(spark, jobs)
    _scores_and_monitors(spark, jobs, first)
