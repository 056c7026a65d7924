"""The training DAG's wiring: evaluate, gate and promote are separate tasks; human approval is a config switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["flightdeck_train"]
print(json.dumps({t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}))
"""


def _graph(require_approval: bool) -> dict[str, list[str]]:
    env = {**os.environ, "FLIGHTDECK__GATE__REQUIRE_APPROVAL": "true" if require_approval else "false"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS_DIR / "flightdeck_train.py")],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    graph: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return graph


def test_default_wiring_is_gate_then_promote() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_DIR / "flightdeck_train.py")).dags["flightdeck_train"]
    graph = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert graph["plan_window"] == ["train"] and graph["train"] == ["evaluate"] and graph["evaluate"] == ["gate"]
    assert "approve" not in graph and graph["gate"] == ["promote"]


def test_approval_switch_puts_a_human_between_gate_and_promote() -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator  # exists in the installed Airflow

    assert ApprovalOperator
    graph = _graph(require_approval=True)  # a fresh interpreter: the config is read at parse time
    assert graph["gate"] == ["approve", "promote"] and graph["approve"] == ["promote"]
