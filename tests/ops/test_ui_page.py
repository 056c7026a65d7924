"""The flightdeck page: pure rendering, and the FastAPI app (as the plugin mounts it) over a small
lake and a real MLflow tracking store (SQLite) with a champion, a challenger and a promotion."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flightdeck.monitoring.drift import monitoring_rows
from flightdeck.ops.readmodel import drift_series
from flightdeck.ops.ui_page import render_page, svg_chart

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "flightdeck_plugin.py"


def _write_partition(root: Path, table: str, date: str, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "monitoring" / table / f"date={date}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")
    (folder / "_SUCCESS").touch()


def _report(date: str, share: float, pred: float) -> dict[str, Any]:
    return {"date": date, "model_version": "1", "status": "ok", "n_rows": 900, "min_rows": 200,
            "psi": {"wx_temp": 2.0 if share > 0.2 else 0.05, "distance": 0.01},
            "drifted": ["wx_temp"] if share > 0.2 else [],
            "excluded": [], "missing": [], "n_features": 2, "drifted_share": share, "prediction_psi": pred,
            "prediction_drifted": pred >= 0.2, "performance": None}  # fmt: skip


@pytest.fixture()
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A lake with two monitored days and an ingest ledger; MLflow with v1 champion, v2 challenger."""
    from mlflow import MlflowClient

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, write_json
    from flightdeck.model import registry

    root = tmp_path / "lake"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("FLIGHTDECK__LAKE__ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("FLIGHTDECK_MLFLOW_UI_URL", "http://mlflow.example:5000")
    cfg = load_config()
    lake = Lake(str(root))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("flightdeck-test", artifact_location=str(tmp_path / "artifacts"))
    client.create_registered_model(cfg.model.name)
    for auc in (0.74, 0.78):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "roc_auc", auc)
        client.log_metric(run.info.run_id, "log_loss", 0.5)
        client.create_model_version(cfg.model.name, source=str(tmp_path / "model"), run_id=run.info.run_id)
    registry.tag_decision(cfg.model.name, "1", {"passed": True, "reasons": ["AUC 0.74 >= floor 0.65"]}, client=client)
    move = registry.Move(cfg.model.name, "1", expected_current=None, decision_ref="manual__1", who="t")
    registry.promote(move, lake=lake, client=client)
    registry.set_challenger(cfg.model.name, "2", why="retrain", who="t", lake=lake, client=client)
    registry.tag_decision(cfg.model.name, "2", {"passed": False, "reasons": ["AUC regression 0.09"]}, client=client)

    for date, share, pred in (("2013-07-01", 0.5, 0.31), ("2013-07-02", 0.0, 0.05)):
        _write_partition(root, "drift_daily", date, monitoring_rows(_report(date, share, pred), cfg.drift))
        _write_partition(root, "ingest_ledger", date, [{"source": "flights", "rows_in": 1000, "rows_valid": 970,
                                                        "rows_quarantined": 30}])  # fmt: skip
    request = {"partition": "2013-07-01", "reason": "1 of 2 features drifted", "monitoring_run": "asset__1"}
    write_json(lake.path("monitoring", "retrain_requests", "2013-07-01.json"), request)
    return {"cfg": cfg, "client": client, "lake": lake, "lake_root": root}


def test_plugin_page_answers_and_shows_the_champion(stack: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    spec = importlib.util.spec_from_file_location("flightdeck_plugin_under_test", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.FlightdeckPlugin
    (app_spec,) = plugin.fastapi_apps
    assert set(app_spec) == {"app", "url_prefix", "name"} and app_spec["url_prefix"] == "/flightdeck"
    nav = plugin.external_views[0]
    assert nav["destination"] == "nav" and not nav["href"].startswith("/")

    # Only a logged-in Airflow user gets the page; here the login is Airflow's user lookup, overridden.
    from airflow.api_fastapi.core_api.security import get_user

    for path in ("/", "/api/state", "/reports/2013-07-02"):
        assert TestClient(app_spec["app"]).get(path).status_code == 401, path
    app_spec["app"].dependency_overrides[get_user] = lambda: SimpleNamespace(get_name=lambda: "admin")

    response = TestClient(app_spec["app"]).get("/")
    assert response.status_code == 200
    body = response.text
    assert "champion <b>v1</b> (holdout AUC 0.74)" in body, body[body.find("<h1>") :][:3000]
    assert "challenger <b>v2</b>" in body
    assert "<span class='pass'>PASS</span>" in body and "<span class='fail'>FAIL</span>" in body
    assert "<td>champion</td><td>none &rarr; v1</td>" in body  # the promotion, from the alias ledger
    assert "<svg" in body and "Drift over time" in body
    assert "2013-07-01" in body and "1 of 2 features drifted" in body
    assert "http://mlflow.example:5000/#/models/" in body
    assert "flightdeck_monitor/runs/asset__1" in body
    assert "3.00%" in body  # quarantine share per day

    assert "<a href='reports/2013-07-02'>2013-07-02</a>" in body
    (stack["lake_root"] / "monitoring/drift_reports").mkdir(parents=True)
    (stack["lake_root"] / "monitoring/drift_reports/2013-07-02.html").write_text("<h1>Drift report 2013-07-02</h1>")
    client = TestClient(app_spec["app"])
    assert client.get("/reports/2013-07-02").text == "<h1>Drift report 2013-07-02</h1>"
    assert client.get("/reports/2013-07-03").status_code == 404
    assert client.get("/reports/..%2Fsecrets").status_code in {400, 404}

    state = TestClient(app_spec["app"]).get("/api/state").json()
    assert [v["version"] for v in state["versions"]] == ["2", "1"]


def test_page_degrades_when_parts_are_unreachable() -> None:
    data = {"model_name": "m", "versions": {"error": "ConnectionError: down"}, "ledger": [], "drift": [],
            "ingest": {"error": "no lake"}, "requests": [], "policy": {}}  # fmt: skip
    body = render_page(data)
    assert "no champion yet" in body
    assert "MLflow registry unavailable: ConnectionError: down" in body
    assert "ingest ledger unavailable: no lake" in body


def test_svg_chart_places_points_and_thresholds() -> None:
    svg = svg_chart({"share": [("2013-07-01", 0.0), ("2013-07-02", 1.0)]}, {"limit": 0.5}, width=200, height=100)
    # x: 50 .. 200-140=60; y: top=1.1, bottom=0: 20 + 40*(1 - v/1.1)
    assert "points='50.0,60.0 60.0,23.6'" in svg
    assert "stroke-dasharray" in svg and "limit 0.5" in svg
    assert "no data yet" in svg_chart({}, title="empty")


def test_drift_series_from_monitoring_rows(stack: dict[str, Any]) -> None:
    rows = [
        {**r}
        for d, s, p in (("2013-07-01", 0.5, 0.31), ("2013-07-02", 0.0, 0.05))
        for r in monitoring_rows(_report(d, s, p), stack["cfg"].drift)
    ]
    series = drift_series(rows)
    assert series["drifted share"] == [("2013-07-01", 0.5), ("2013-07-02", 0.0)]
    assert series["prediction PSI"] == [("2013-07-01", 0.31), ("2013-07-02", 0.05)]
    assert "AUC drop" not in series


def test_page_shows_rmse_for_a_regression_model() -> None:
    from flightdeck.core.config import Drift
    from flightdeck.monitoring.drift import regression_performance_report

    policy = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=50, cooldown_days=7, bootstrap_samples=0)
    labels = [float(i % 7) for i in range(300)]
    perf = regression_performance_report(labels, [y + 3.0 for y in labels], {"rmse": 2.0, "mae": 1.5}, policy,
                                         data_date="2013-07-01", model_version="1")  # fmt: skip
    report = {**_report("2013-07-02", 0.0, 0.05), "prediction_column": "prediction", "performance": perf}
    rows = monitoring_rows(report, policy)
    versions = [{"version": "1", "aliases": ["champion"], "metrics": {"rmse": 2.0, "mae": 1.5, "r2": 0.91},
                 "tags": {"gate_passed": "true"}}]  # fmt: skip
    data = {"model_name": "m", "task": "regression", "versions": versions, "ledger": [], "drift": rows,
            "ingest": [], "requests": [], "policy": policy.model_dump(mode="json")}  # fmt: skip
    body = render_page(data)
    assert "champion <b>v1</b> (holdout RMSE 2)" in body and "holdout AUC" not in body
    assert "<th>holdout RMSE</th><th>MAE</th><th>R²</th>" in body
    assert "<td>2</td><td>1.5</td><td>0.91</td>" in body
    series = drift_series(rows)
    assert series["RMSE rise"] == [("2013-07-02", pytest.approx(0.5))] and "AUC drop" not in series
    assert series["prediction PSI"] == [("2013-07-02", 0.05)]  # the prediction column's rows, named "prediction"
    assert "RMSE rise 0.1" in body  # the chart's threshold line
