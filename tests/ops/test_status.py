"""The status summary and the demo's plan parsing (pure parts)."""

from __future__ import annotations

import pytest

from flightdeck.core.errors import FlightdeckError
from flightdeck.ops.demo import parse_history
from flightdeck.ops.status import render


def test_render_tells_the_story() -> None:
    status = {
        "airflow": {
            "reachable": True,
            "dags": {"flightdeck_train": {"runs": 2, "last_run": {"state": "success", "partition_key": "2013-07-01"}}},
            "drift_triggered_trainings": 1,
        },
        "model": {
            "reachable": True,
            "name": "m",
            "versions": 2,
            "champion": {"version": "2", "metrics": {"roc_auc": 0.71}},
            "challenger": None,
        },
        "lake": {
            "scoring": {
                "partitions": 1,
                "total_rows": 900,
                "last_partition": "2013-07-01",
                "last_rows": 900,
                "last_model_versions": ["1"],
            },
            "quarantine": {
                "rows_in": 1000,
                "rows_valid": 990,
                "rows_quarantined": 10,
                "partitions": 1,
                "reconciled": True,
            },
            "drift": {"last_partition": "2013-07-01", "last_drifted": {"wx_temp": 16.1}},
            "retrain_requests": [{"partition": "2013-07-01", "reason": "8 of 18 features drifted"}],
            "promotions": [{}, {}],
            "alerts": {
                "file": "/l/monitoring/alerts/alerts.jsonl",
                "count": 2,
                "events": {"promotion": 1, "retrain_requested": 1},
                "last": [{"at": "2026-11-23T15:00:00+00:00", "event": "promotion", "summary": "m champion v1 -> v2"}],
            },
        },
    }
    text = render(status)
    assert "alerts: 2 (promotion 1, retrain_requested 1)" in text
    assert "2026-11-23T15:00:00 promotion: m champion v1 -> v2" in text
    assert "champion   v2  holdout AUC 0.71" in text
    assert "1000 rows in = 990 valid + 10 quarantined" in text and "reconciled" in text
    assert "wx_temp 16.1" in text
    assert "2013-07-01 (open): 8 of 18 features drifted" in text
    assert "training runs triggered by drift: 1" in text


def test_render_survives_unreachable_services() -> None:
    text = render(
        {
            "airflow": {"reachable": False, "error": "down"},
            "model": {"reachable": False, "error": "down"},
            "lake": {"scoring": None, "quarantine": None, "drift": None, "retrain_requests": [], "promotions": []},
        }
    )
    assert text.count("unreachable: down") == 2
    assert "scored: nothing yet" in text


def test_render_names_stopped_services_and_the_ledger_champion() -> None:
    down = "{} not running at http://127.0.0.1:{}: start it with `make up`"
    text = render(
        {
            "airflow": {"reachable": False, "down": True, "error": down.format("Airflow", 8080)},
            "model": {"reachable": False, "down": True, "error": down.format("MLflow", 5000)},
            "lake": {
                "scoring": None,
                "quarantine": None,
                "drift": None,
                "retrain_requests": [],
                "promotions": [{}],
                "ledger_aliases": {"champion": {"version": "3", "at": "2013-07-02T06:00:00+00:00"}, "challenger": None},
            },
        }
    )
    assert "  Airflow not running at http://127.0.0.1:8080: start it with `make up`" in text.splitlines()
    assert "  MLflow not running at http://127.0.0.1:5000: start it with `make up`" in text.splitlines()
    assert "unreachable" not in text
    assert "alias ledger: champion v3 (since 2013-07-02T06:00:00)" in text


def test_history_ranges() -> None:
    assert parse_history(["2013-01-01..2013-01-14", "2013-06-17..2013-06-30"]) == [
        ("2013-01-01", "2013-01-14"),
        ("2013-06-17", "2013-06-30"),
    ]
    with pytest.raises(FlightdeckError, match="one continuous range"):
        parse_history(["2013-01-01,2013-01-03"])


def test_render_speaks_rmse_for_a_regression_model() -> None:
    """The model section and the labelled day of a regression model, from real monitoring rows."""
    from flightdeck.core.config import Drift
    from flightdeck.monitoring.drift import monitoring_rows, regression_performance_report
    from flightdeck.ops.readmodel import drift_state

    policy = Drift(bins=10, psi_threshold=0.2, drifted_share=0.2, min_rows=50, cooldown_days=7, bootstrap_samples=0)
    labels = [float(i % 7) for i in range(300)]
    perf = regression_performance_report(labels, [y + 3.0 for y in labels], {"rmse": 2.0, "mae": 1.5}, policy,
                                         data_date="2013-07-01", model_version="2")  # fmt: skip
    report = {"date": "2013-07-02", "model_version": "2", "status": "ok", "n_rows": 300, "psi": {},
              "drifted_share": 0.0, "performance": perf}  # fmt: skip
    rows = [{**r, "date": "2013-07-02"} for r in monitoring_rows(report, policy)]
    status = {
        "airflow": {"reachable": False, "error": "down"},
        "model": {
            "reachable": True, "task": "regression", "name": "m", "versions": 2,
            "champion": {"version": "2", "metrics": {"rmse": 2.0, "mae": 1.5, "r2": 0.91}}, "challenger": None,
        },
        "lake": {"scoring": None, "quarantine": None, "drift": drift_state(rows), "retrain_requests": [],
                 "promotions": []},
    }  # fmt: skip
    text = render(status)
    assert "m: 2 versions (regression)" in text
    assert "champion   v2  holdout RMSE 2.0  MAE 1.5  R² 0.91" in text and "AUC" not in text
    # every prediction 3 above its label: RMSE 3 vs holdout 2, a 50% rise (point estimate: no bootstrap)
    assert "RMSE on labels of 2013-07-01: 3 (holdout 2, rise +50.0%), MAE 3  BREACHED" in text
