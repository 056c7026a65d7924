"""
### flightdeck_train — train, evaluate, gate, promote

Runs on every `retrain_request` asset event (its partition key is the day that
drifted; the event's extra carries the reason) or by hand with the Params below.

1. **plan_window** — the training window: the `retrain_window_days` days ending
   at the request's partition (the request is marked consumed by this run), or
   the Params of a manual run.
2. **train** — XGBoost on Spark over the window's features partitions (the last
   `holdout_days` are the frozen holdout), logged to MLflow and registered as the
   `challenger`, with the reason of the request.
3. **evaluate** — candidate and current champion scored on the same holdout.
4. **gate** — the pure gate decision (absolute AUC floor; against the champion:
   maximum regression overall and per slice, and the bootstrap interval of the
   AUC difference), recorded as tags on the candidate's model version and
   returned (XCom) with its reasons.
5. **approve** (only with `gate.require_approval: true`) — a human approves or
   rejects the promotion in the Airflow UI (human-in-the-loop); reject skips promote.
6. **promote** — moves the `champion` alias, only when the gate passed and the
   champion is still the one the candidate was compared with (compare-and-set
   through the alias ledger in the lake: otherwise it fails and says why).
   Skipped when the gate failed.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, PartitionedAssetTimetable, task
from airflow.sdk.exceptions import AirflowSkipException

from flightdeck.model import promotion
from flightdeck.monitoring import retrain
from flightdeck.ops import dagkit
from flightdeck.ops.dagkit import CFG, CHAMPION, DEFAULT_ARGS, RETRAIN_REQUEST, START, spark_job

WINDOW = "{{ ti.xcom_pull(task_ids='plan_window') }}"

with DAG(
    dag_id="flightdeck_train",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=RETRAIN_REQUEST),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "model"],
    params={
        "train_start": Param(
            CFG.model.train_start.isoformat(),
            type="string",
            format="date",
            title="Training window start",
            description="First day of features to train on (manual runs only; a retrain request sets its own).",
        ),
        "train_end": Param(
            CFG.model.train_end.isoformat(),
            type="string",
            format="date",
            title="Training window end",
            description=f"Last day, inclusive. Its last {CFG.model.holdout_days} days form the holdout.",
        ),
        "reason": Param(
            "manual training run",
            type="string",
            title="Reason",
            description="Why this model is trained; recorded on the MLflow model version.",
        ),
    },
):

    @task
    def plan_window(*, dag_run=None, params=None, triggering_asset_events=None) -> dict:
        """Decide the training window from the retrain request or the Params."""
        events = [e for evs in (triggering_asset_events or {}).values() for e in evs]
        request = events[-1].extra if events else None
        window = retrain.training_window(dag_run.partition_key, params or {}, request, CFG)
        if request is not None:  # this run takes the request: the drift policy may ask again
            retrain.consume_retrain_request(dag_run.partition_key, f"airflow:{dag_run.dag_id}/{dag_run.run_id}")
        return window

    window = plan_window()
    train = spark_job(
        "train",
        "train",
        [
            "--train-start",
            "{{ ti.xcom_pull(task_ids='plan_window')['train_start'] }}",
            "--train-end",
            "{{ ti.xcom_pull(task_ids='plan_window')['train_end'] }}",
            "--reason",
            "{{ ti.xcom_pull(task_ids='plan_window')['reason'] }}",
            "--run-key",
            "{{ run_id }}",
            "--actor",
            "{{ dag_run.triggering_user_name or ('airflow:' ~ dag_run.run_type) }}",
        ],
    )
    evaluate = spark_job("evaluate", "evaluate", ["--run-key", "{{ run_id }}"])

    @task
    def gate(*, run_id=None) -> dict:
        """Compare candidate and champion on the same holdout; return the decision with reasons."""
        return promotion.gate_candidate(run_id)

    @task(outlets=[CHAMPION])
    def promote(decision: dict, *, run_id=None, dag_run=None, outlet_events=None) -> dict:
        """Move the champion alias if the gate passed (compare-and-set against the compared champion)."""
        if not decision["passed"]:
            raise AirflowSkipException("gate failed: " + "; ".join(decision["reasons"]))
        record = promotion.promote_candidate(run_id, decision, who=dagkit.airflow_actor(dag_run))
        outlet_events[CHAMPION].extra = record
        return record

    decision = gate()
    window >> train >> evaluate >> decision
    promoted = promote(decision)
    if CFG.gate.require_approval:
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        approve = ApprovalOperator(
            task_id="approve",
            execution_timeout=None,  # a human has response_timeout to answer, not the task default
            subject="Promote {{ ti.xcom_pull(task_ids='gate')['candidate_version'] }} to champion?",
            body=(
                "Gate {{ 'passed' if ti.xcom_pull(task_ids='gate')['passed'] else 'FAILED' }} for version "
                "{{ ti.xcom_pull(task_ids='gate')['candidate_version'] }} (champion "
                "{{ ti.xcom_pull(task_ids='gate')['champion_version'] or 'none' }}):\n\n"
                "{% for r in ti.xcom_pull(task_ids='gate')['reasons'] %}- {{ r }}\n{% endfor %}"
            ),
            response_timeout=dt.timedelta(days=3),
        )
        decision >> approve >> promoted
