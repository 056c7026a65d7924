"""The monitoring tasks over a lake: history from the lake, a request stays open until the training
DAG consumes it (``consume_retrain_request``), and a recorded request raises an alert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flightdeck.core.lake import Lake, read_json, write_json
from flightdeck.monitoring import retrain

PSIS = {"wx_temp": 1.9, "wx_dewp": 0.8, "distance": 0.01, "dep_hour": 0.02}


def _report(day: str) -> dict[str, Any]:
    return {"date": day, "status": "ok", "n_rows": 900, "min_rows": 200, "psi": PSIS, "n_features": 4,
            "drifted": ["wx_temp", "wx_dewp"], "drifted_share": 0.5, "prediction_psi": 0.05}  # fmt: skip


def _summary(day: str) -> dict[str, Any]:
    """The run document jobs/detect_drift.py hands on (runs/<key>/detect_drift.json), every key."""
    return {**_report(day), "partition": day, "model_name": "flight_delay", "model_version": "1",
            "n_predictions": 900, "psi_threshold": 0.2, "missing": [], "excluded": [],
            "prediction_threshold": 0.2, "prediction_drifted": False, "performance": None,
            "report_html": f"/lake/monitoring/drift_reports/{day}.html", "mlflow_run_id": "r2"}  # fmt: skip


@pytest.fixture()
def env(lake_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("FLIGHTDECK__DRIFT__COOLDOWN_DAYS", "0")
    lake = Lake(str(lake_root))
    write_json(lake.drift_report("2013-07-01"), _report("2013-07-01"))
    write_json(lake.run_doc("mon-2", "detect_drift"), _summary("2013-07-02"))
    return {"lake": lake, "root": lake_root}


def test_request_is_open_until_the_training_dag_consumes_it(env: dict[str, Any]) -> None:
    request = retrain.record_retrain_request(
        "2013-07-01", {"reason": "2 of 4 features drifted", "features": {}}, "mon-1"
    )
    assert request["partition"] == "2013-07-01"
    keys = {"partition", "reason", "features", "breaches", "monitoring_run"}  # the asset event's extra
    assert set(request) == keys and set(read_json(env["lake"].retrain_request("2013-07-01"))) == keys
    alert = json.loads(Path(env["lake"].alerts_file("alerts.jsonl")).read_text().splitlines()[-1])
    assert alert["event"] == "retrain_requested" and "2013-07-01" in alert["summary"]

    blocked = retrain.decide_retrain("2013-07-02", "mon-2")
    assert not blocked["retrain"] and "request for 2013-07-01 is still open" in blocked["reason"]

    assert retrain.consume_retrain_request(None, "manual") is None
    assert retrain.consume_retrain_request("2013-06-30", "train-run-8") is None  # no request for that day
    consumed = retrain.consume_retrain_request("2013-07-01", "airflow:flightdeck_train/run-9")
    assert consumed is not None and consumed["consumed_by"] == "airflow:flightdeck_train/run-9"
    stored = read_json(env["lake"].retrain_request("2013-07-01"))
    assert stored["consumed_by"] == "airflow:flightdeck_train/run-9"
    assert stored["reason"] == "2 of 4 features drifted" and stored["monitoring_run"] == "mon-1"

    allowed = retrain.decide_retrain("2013-07-02", "mon-2")
    assert allowed["retrain"], allowed["reason"]
    assert allowed["reason"].startswith("2 of 4 features drifted (share 0.50 >= 0.20): wx_temp PSI 1.90")
