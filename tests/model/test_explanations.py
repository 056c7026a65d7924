"""Explanations: per-prediction SHAP contributions beside the predictions (scoring.explain) add up, with the
base value, to the model's margin, the top k are the k largest by absolute value, and an evaluated
version gets its SHAP summary and per-slice table logged to a real MLflow store."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_model import START, small_config, synthetic_features

from flightdeck.core.config import Explain, PipelineConfig

pytestmark = pytest.mark.spark

ROWS = 150


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    return small_config(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="module")
def trained(spark: Any, cfg: PipelineConfig) -> Any:
    from pyspark.sql import functions as F

    from flightdeck.model.training import fit

    days = [START + dt.timedelta(days=i) for i in range(4)]
    rows = synthetic_features(spark, cfg, days, ROWS).withColumn("rid", F.monotonically_increasing_id()).persist()
    train = rows.filter(F.col("date") < days[-1].isoformat())
    holdout = rows.filter(F.col("date") == days[-1].isoformat()).persist()
    model = fit(train, cfg)
    yield model, holdout
    holdout.unpersist()
    rows.unpersist()


def _explaining(cfg: PipelineConfig, top_k: int) -> PipelineConfig:
    return cfg.model_copy(
        update={"scoring": cfg.scoring.model_copy(update={"explain": Explain(enabled=True, top_k=top_k)})}
    )


def test_explanations_are_off_by_default(cfg: PipelineConfig) -> None:
    assert cfg.scoring.explain.enabled is False and cfg.scoring.explain.top_k == 3


def test_contributions_sum_with_the_base_to_the_margin(trained: Any, cfg: PipelineConfig) -> None:
    """With every feature kept (top_k = all), base + contributions = logit(probability) for each scored row;
    the probability is the one scoring without explanations gives."""
    from flightdeck.model.inference import feature_names, score

    model, holdout = trained
    n_features = len(feature_names(model))
    everything = _explaining(cfg, n_features)
    out = score(model, holdout, model_name="m", model_version="3", run_key="r", cfg=everything)
    assert out.columns[-7:] == [
        "explain_features", "explain_contributions", "explain_base",
        "model_name", "model_version", "scoring_run", "feature_partition",
    ]  # fmt: skip
    types = dict(out.dtypes)
    assert types["explain_features"] == "array<string>" and types["explain_contributions"] == "array<double>"
    assert types["explain_base"] == "double"
    pdf = out.toPandas()
    assert len(pdf) == ROWS
    margin = np.log(pdf["probability"] / (1 - pdf["probability"]))
    total = pdf["explain_base"] + pdf["explain_contributions"].map(sum)
    np.testing.assert_allclose(total.to_numpy(), margin.to_numpy(), atol=1e-4, rtol=0)
    assert all(sorted(f) == sorted(feature_names(model)) for f in pdf["explain_features"])

    plain = score(model, holdout, model_name="m", model_version="3", run_key="r", cfg=cfg).toPandas()
    assert "explain_base" not in plain.columns
    np.testing.assert_array_equal(np.sort(plain["probability"].to_numpy()), np.sort(pdf["probability"].to_numpy()))


def test_top_k_are_the_k_largest_absolute_contributions(trained: Any, cfg: PipelineConfig) -> None:
    from flightdeck.model.inference import feature_names, model_input_frame, with_explained_score

    model, holdout = trained
    frame = model_input_frame(holdout, cfg, require_label=False)
    n_features = len(feature_names(model))
    full = (
        with_explained_score(model, frame, "p", n_features)
        .select("rid", "p", "explain_features", "explain_contributions", "explain_base")
        .toPandas()
    )
    top3 = (
        with_explained_score(model, frame, "p", 3)
        .select("rid", "p", "explain_features", "explain_contributions", "explain_base")
        .toPandas()
    )
    full, top3 = full.sort_values("rid").reset_index(drop=True), top3.sort_values("rid").reset_index(drop=True)
    np.testing.assert_array_equal(full["rid"], top3["rid"])
    np.testing.assert_array_equal(full["p"], top3["p"])
    np.testing.assert_allclose(full["explain_base"], top3["explain_base"])
    nonzero_rows = 0
    for (_, whole), (_, top) in zip(full.iterrows(), top3.iterrows(), strict=True):
        by_feature = dict(zip(whole["explain_features"], whole["explain_contributions"], strict=True))
        magnitudes = sorted((abs(v) for v in by_feature.values()), reverse=True)
        assert len(top["explain_features"]) == 3
        got = [abs(v) for v in top["explain_contributions"]]
        assert got == sorted(got, reverse=True)
        np.testing.assert_allclose(got, magnitudes[:3], rtol=1e-9)
        for name, value in zip(top["explain_features"], top["explain_contributions"], strict=True):
            assert by_feature[name] == pytest.approx(value)
        nonzero_rows += magnitudes[0] > 0
    assert nonzero_rows == len(top3)
    # the signal features (departure hour, precipitation) lead most rows' explanations
    leaders = top3["explain_features"].map(lambda f: f[0])
    assert leaders.isin(["dep_hour", "dep_minute_of_day", "wx_precip"]).mean() > 0.5


def test_an_evaluated_version_logs_its_shap_summary_and_slice_table(
    trained: Any, cfg: PipelineConfig, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from flightdeck.model.documents import Comparison
    from flightdeck.model.evaluation import slice_aucs
    from flightdeck.model.explain import log_explanations
    from flightdeck.model.inference import collect_keyed_scores

    model, holdout = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("explain", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    scores = collect_keyed_scores(model, holdout, cfg, "rid", ["origin"])
    slices = slice_aucs(scores["y"].to_numpy(), scores["p"].to_numpy(), None, {"origin": scores["origin"].to_numpy()})
    logged = log_explanations(model, holdout, cfg, Comparison(slices=slices), run_id=run_id, client=client)
    assert sorted(logged) == [
        "evaluation/shap_importance.json", "evaluation/shap_summary.png", "evaluation/slices.csv",
        "evaluation/slices.png",
    ]  # fmt: skip
    listed = sorted(f.path for f in client.list_artifacts(run_id, "evaluation"))
    assert listed == sorted(logged)

    with mlflow.utils.file_utils.TempDir() as tmp:
        folder = Path(client.download_artifacts(run_id, "evaluation", tmp.path()))
        table = list(csv.DictReader(io.StringIO((folder / "slices.csv").read_text())))
        assert {r["value"] for r in table} == set(holdout.select("origin").distinct().toPandas()["origin"])
        assert sum(int(r["rows"]) for r in table) == ROWS
        assert all(
            r["slice"] == "origin" and r["metric"] == "roc_auc" and 0 <= float(r["candidate"]) <= 1 for r in table
        )
        importance = json.loads((folder / "shap_importance.json").read_text())
        assert importance["rows"] == ROWS
        assert next(iter(importance["mean_abs_shap"])) in {"dep_hour", "dep_minute_of_day", "wx_precip"}
        assert (folder / "shap_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_links_each_versions_explanations() -> None:
    from flightdeck.ops.ui_page import render_page

    versions = [{"version": "2", "aliases": ["champion"], "metrics": {"roc_auc": 0.7}, "tags": {},
                 "run_id": "abc123", "experiment_id": "5"}]  # fmt: skip
    data = {"model_name": "m", "versions": versions, "ledger": [], "drift": [], "ingest": [], "requests": [],
            "policy": {}, "mlflow_url": "http://mlflow:5000"}  # fmt: skip
    body = render_page(data)
    base = "http://mlflow:5000/#/experiments/5/runs/abc123/artifacts/evaluation"
    assert f"<a href='{base}/shap_summary.png'>SHAP</a>" in body
    assert f"<a href='{base}/slices.csv'>slices</a>" in body
