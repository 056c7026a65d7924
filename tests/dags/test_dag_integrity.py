"""DAG integrity: every DAG imports, parses fast, and carries the house defaults."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {
    "flightdeck_bootstrap",
    "flightdeck_ingest",
    "flightdeck_inbox",
    "flightdeck_features",
    "flightdeck_score",
    "flightdeck_monitor",
    "flightdeck_train",
    "flightdeck_rollback",
    "flightdeck_reproduce",
    "flightdeck_maintenance",
}
HEAVY = {"pyspark", "mlflow", "xgboost", "pandas", "great_expectations", "sklearn", "numpy"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_every_flightdeck_dag_is_there(dagbag) -> None:
    assert set(dagbag.dag_ids) == EXPECTED


def test_each_file_parses_well_under_a_second(dagbag) -> None:
    """CPU seconds to parse each file once its shared imports are loaded (the best of three),
    so other work on the machine does not count; the dag-processor re-parses every file often."""
    import time

    from airflow.dag_processing.dagbag import DagBag

    cost = {}
    for path in sorted(DAGS_DIR.glob("*.py")):
        runs = []
        for _ in range(3):
            t0 = time.process_time()
            DagBag(dag_folder=str(path))
            runs.append(time.process_time() - t0)
        cost[path.name] = min(runs)
    slow = {name: round(seconds, 3) for name, seconds in cost.items() if seconds > 0.5}
    assert not slow, f"DAG files too slow to parse (CPU seconds): {slow}"
    assert all(s.duration < dt.timedelta(seconds=30) for s in dagbag.dagbag_stats)  # Airflow's import timeout


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_house_defaults(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md) > 80, "doc_md=__doc__ explains the DAG"
    assert "flightdeck" in dag.tags
    assert dag.catchup is False
    assert dag.start_date is not None and dag.start_date.tzinfo is not None
    assert dag.default_args.get("retries", 0) >= 1
    # The monitor's runs wait for earlier days' runs (wait_for_earlier_decisions): more than one active.
    assert dag.max_active_runs == (16 if dag_id == "flightdeck_monitor" else 1)


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_heavy_imports_at_top_level(path: Path) -> None:
    tree = ast.parse(path.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert not (top & HEAVY), f"{path.name} imports {top & HEAVY} at parse time"


def test_manual_dags_explain_their_params(dagbag) -> None:
    for dag_id in ("flightdeck_train", "flightdeck_bootstrap", "flightdeck_rollback", "flightdeck_reproduce"):
        params = dagbag.dags[dag_id].params
        assert params, dag_id
        for name in params:
            param = params.get_param(name)
            assert param.schema.get("title") and param.schema.get("type") and param.description, (dag_id, name)


def test_data_dags_are_linked_by_assets(dagbag) -> None:
    def outlets(dag_id: str) -> set[str]:
        return {o.name for t in dagbag.dags[dag_id].tasks for o in t.outlets}

    assert "bronze_flights" in outlets("flightdeck_ingest")
    assert "features_flights" in outlets("flightdeck_features")
    assert "predictions_flights" in outlets("flightdeck_score")
    assert "retrain_request" in outlets("flightdeck_monitor")
    assert "champion_model" in outlets("flightdeck_train")
    assert "bronze_flights" in outlets("flightdeck_inbox")


def test_calendar_comes_from_the_config(dagbag) -> None:
    from flightdeck.core.config import load_config

    cal = load_config().calendar
    ingest = dagbag.dags["flightdeck_ingest"]
    assert ingest.start_date.date() == cal.start
    assert (ingest.end_date.date() if ingest.end_date else None) == cal.end
    assert ingest.catchup == cal.catchup
    assert {d.start_date.date() for d in dagbag.dags.values()} == {cal.start}


def test_ingest_waits_for_files_without_holding_a_slot(dagbag) -> None:
    ingest = dagbag.dags["flightdeck_ingest"]
    sensor = ingest.get_task("wait_for_files")
    assert type(sensor).__name__ == "DayFilesSensor"  # defers to the triggerer after its first look
    assert [t.task_id for t in ingest.topological_sort()][:2] == ["wait_for_files", "ingest"]


def test_inbox_dag_is_scheduled_by_the_inbox_watcher(dagbag) -> None:
    from flightdeck.ops.inbox_watch import InboxTrigger

    inbox = dagbag.dags["flightdeck_inbox"]
    assets = list(inbox.timetable.asset_condition.objects)
    assert [a.name for a in assets] == ["landing_inbox"]
    (watcher,) = assets[0].watchers
    assert isinstance(watcher.trigger, InboxTrigger)


def test_daily_dags_are_bounded_and_watched_by_a_deadline(dagbag) -> None:
    from flightdeck.core.config import load_config

    cfg = load_config()
    for dag_id in ("flightdeck_ingest", "flightdeck_inbox", "flightdeck_features", "flightdeck_score"):
        dag = dagbag.dags[dag_id]
        assert dag.dagrun_timeout is not None, dag_id
        (alert,) = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
        assert alert.interval == dt.timedelta(hours=cfg.timeouts.deadline_hours), dag_id
        for task in dag.tasks:
            assert task.execution_timeout is not None, (dag_id, task.task_id)
    ingest = dagbag.dags["flightdeck_ingest"]
    assert ingest.dagrun_timeout == dt.timedelta(hours=cfg.timeouts.dagrun_hours + cfg.arrival.timeout_hours)
    assert ingest.get_task("ingest").execution_timeout == dt.timedelta(minutes=cfg.timeouts.spark_job_minutes)
