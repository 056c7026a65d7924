"""End to end: the whole loop through a real Airflow scheduler, MLflow server and Spark.

The stack and the short demo run come from ``conftest.py`` (Airflow metadata and MLflow
backend on the machine's PostgreSQL). Two weeks of January train the first champion,
the second half of June is history, and one July day flows through ingest, features,
scoring and monitoring, where seasonal drift must trigger retraining.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_champion_alias_exists(stack, demo_result) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.model import registry

    cfg = load_config()
    assert registry.champion_version(cfg.model.name) is not None


def test_predictions_carry_the_model_version(stack, demo_result) -> None:
    import pyarrow.dataset as ds

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake

    cfg = load_config()
    lake = Lake(cfg.lake.root)
    assert lake.is_committed("predictions", "flights", demo_result["day"])
    table = ds.dataset(lake.partition("predictions", "flights", demo_result["day"]), format="parquet").to_table()
    assert table.num_rows > 500
    versions = set(table.column("model_version").to_pylist())
    assert None not in versions and len(versions) == 1, versions
    assert set(table.column("model_name").to_pylist()) == {cfg.model.name}
    probs = table.column("probability").to_pylist()
    assert all(0.0 <= p <= 1.0 for p in probs)


def test_quarantine_counts_reconcile(stack, demo_result) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.ops import status

    lake_state = status.lake_status(load_config())
    q = lake_state["quarantine"]
    assert q["partitions"] >= 29  # 28 days of history + the July day
    assert q["rows_in"] == q["rows_valid"] + q["rows_quarantined"]
    assert q["reconciled"] is True


def test_july_day_is_marked_degraded_naming_the_missing_days(stack, demo_result, alert_hook) -> None:
    """July 1's 28-day windows read June 3..30; the history starts on June 17 and the wait is 0."""
    import datetime as dt

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake, read_json

    lake = Lake(load_config().lake.root)
    status = read_json(lake.feature_status(demo_result["day"]))
    missing = [(dt.date(2013, 6, 3) + dt.timedelta(days=i)).isoformat() for i in range(14)]  # June 3..16
    assert status["degraded"] is True, status
    assert sorted(status["missing"]) == missing, status
    assert "features_degraded" in {r["event"] for r in alert_hook.events()}
    decision = read_json(lake.retrain_decision(demo_result["day"]))
    assert decision["retrain"] is True and decision["went_without"] == []  # June's history never blocks


def test_lineage_follows_a_prediction_back_to_its_landing_file_and_model_version(stack, demo_result) -> None:
    """The OpenLineage events Airflow's provider wrote (file transport) for the short loop."""
    import pyarrow.dataset as ds

    from flightdeck.core.config import load_config
    from flightdeck.core.lake import Lake
    from flightdeck.monitoring import lineage

    cfg = load_config()
    lake = Lake(cfg.lake.root)
    day = demo_result["day"]
    events = lineage.read_events(str(stack.lineage_file))
    # Airflow's own events: every DAG of the loop has its runs and tasks in the file.
    jobs = {e["job"]["name"].split(".")[0] for e in events if e.get("job", {}).get("namespace") == "flightdeck"}
    assert {"flightdeck_ingest", "flightdeck_features", "flightdeck_score", "flightdeck_train"} <= jobs, jobs
    # One prediction row of the day names its model version ...
    row = ds.dataset(lake.partition("predictions", "flights", day), format="parquet").head(1).to_pylist()[0]
    model = lineage.model_dataset(cfg.model.name, str(row["model_version"]))
    predictions = lineage.dataset(lake.partition("predictions", "flights", day))
    ancestry = lineage.trace_back(events, predictions)
    # ... and its partition leads back to that version, the day's features, bronze and landing file,
    assert model in ancestry
    assert lineage.dataset(lake.partition("features", "flights", day)) in ancestry
    assert lineage.dataset(lake.partition("bronze", "flights", day)) in ancestry
    assert lineage.dataset(f"{cfg.lake.root}/landing/flights/flights_{day}.csv") in ancestry
    # and the version to the features it was trained on (the training run's inputs).
    trained_on = lineage.inputs_of(lineage.producers_of(events, model)[-1])
    assert lineage.dataset(lake.partition("features", "flights", "2013-01-02")) in trained_on
    # The picture of that day's lineage, beside the browser tests' screenshots (README, Operations).
    shots = Path(os.environ.get("FLIGHTDECK_SCREENSHOTS") or Path(__file__).parents[2] / ".flightdeck" / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    graph = lineage.lineage_graph(events, predictions)
    lineage.plot_lineage(graph, cfg.lake.root, str(shots / f"lineage-{day}.png"))


def test_drift_triggered_a_training_run(stack, demo_result) -> None:
    api = demo_result["api"]
    runs = [r for r in api.runs("flightdeck_train") if r.get("run_type") == "asset_triggered"]
    assert runs, "seasonal drift on 2013-07-01 should have requested a retrain"
    assert runs[0]["partition_key"] == demo_result["day"]
    assert runs[0]["state"] == "success"
    window = api.get(
        f"/api/v2/dags/flightdeck_train/dagRuns/{runs[0]['dag_run_id']}/taskInstances/plan_window/xcomEntries/return_value"
    )["value"]
    assert "drifted" in str(window), window


def test_status_reports_the_loop(stack, demo_result) -> None:
    from flightdeck.core.config import load_config
    from flightdeck.ops import status

    report = status.collect(load_config(), demo_result["api"])
    assert report["airflow"]["reachable"]
    assert report["airflow"]["drift_triggered_trainings"] >= 1
    assert report["model"]["champion"]["version"]
    assert report["lake"]["scoring"]["last_partition"] == demo_result["day"]
    assert report["lake"]["retrain_requests"][0]["partition"] == demo_result["day"]
