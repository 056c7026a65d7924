"""
### flightdeck_monitor — drift checks and the retrain policy (on each predictions partition)

Triggered once per `predictions` partition D. **detect_drift** (one Spark job, two passes)
compares day D's features and scores with the champion's training reference (PSI per
feature and on the predicted probability) and, once labels have arrived, day D-1's
predictions with their outcomes (AUC drop and log-loss rise vs the holdout). It writes
`monitoring/drift_daily/date=D` (one row per statistic), an HTML drift report
(`monitoring/drift_reports/D.html`, also in MLflow) and the report the policy reads.
**wait_for_earlier_decisions** (a sensor in reschedule mode, no worker slot held) waits
until the earlier days the policy reads (its windows, cooldown and request expiry) have
their decision, at most `timeouts.upstream_wait_hours`: runs do not arrive in day order,
and a decision must not depend on that order. **decide_retrain** applies the drift
policy — k breaches in the last n windows, cooldown, at most one open request of an
earlier day — a pure decision with a reason, recorded for the later days. When it says so,
**request_retrain** records the request, sends an alert, and emits a `retrain_request`
asset event whose extra names what breached; that event starts `flightdeck_train`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, PartitionedAssetTimetable, PokeReturnValue, task

from flightdeck.monitoring import retrain
from flightdeck.ops.dagkit import CFG, DEFAULT_ARGS, PREDICTIONS, RETRAIN_REQUEST, START, run_limits, spark_job

PARTITION = "{{ dag_run.partition_key }}"
EARLIER_WAIT = dt.timedelta(hours=CFG.timeouts.upstream_wait_hours)
# A run waits for the runs of earlier days, which Airflow starts in arrival order: with one
# active run, a later day arriving first would hold the only slot while it waits. More active
# runs than a backfill's days in flight (Airflow's backfill default is 10); the waits hold no
# worker slot, and detect_drift still runs one at a time.
ACTIVE_RUNS = 16

with DAG(
    dag_id="flightdeck_monitor",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=PREDICTIONS),
    start_date=START,
    catchup=False,
    max_active_runs=ACTIVE_RUNS,
    default_args=DEFAULT_ARGS,
    **run_limits(wait_hours=CFG.timeouts.upstream_wait_hours),
    tags=["flightdeck", "monitoring"],
):

    @task
    def scored_by(*, triggering_asset_events=None) -> str:
        """The model version that scored this partition (from the predictions event)."""
        events = [e for evs in triggering_asset_events.values() for e in evs]
        return str(events[-1].extra["model_version"])

    version = scored_by()
    detect = spark_job(
        "detect_drift",
        "detect_drift",
        [
            "--partition",
            PARTITION,
            "--model-version",
            "{{ ti.xcom_pull(task_ids='scored_by') }}",
            "--run-key",
            "{{ run_id }}",
        ],
        max_active_tis_per_dag=1,
    )

    @task.sensor(
        poke_interval=CFG.arrival.poke_seconds, timeout=EARLIER_WAIT + dt.timedelta(hours=1), mode="reschedule"
    )
    def wait_for_earlier_decisions(*, dag_run=None) -> PokeReturnValue:
        """Wait (rescheduling) until the earlier days the policy reads are decided; past the deadline, go on."""
        done, status = retrain.poke_decisions(dag_run.partition_key, dag_run.start_date or dag_run.run_after)
        return PokeReturnValue(is_done=done, xcom_value=status)

    @task.short_circuit
    def decide_retrain(waited: dict, *, dag_run=None, run_id=None) -> dict | None:
        """Apply the drift policy; continue to request_retrain only when it says retrain."""
        decision = retrain.decide_retrain(dag_run.partition_key, run_id, waited)
        return decision if decision["retrain"] else None

    @task(outlets=[RETRAIN_REQUEST])
    def request_retrain(decision: dict, *, dag_run=None, run_id=None, outlet_events=None) -> dict:
        """Record the request and emit it as an asset event carrying the reason."""
        request = retrain.record_retrain_request(dag_run.partition_key, decision, run_id)
        outlet_events[RETRAIN_REQUEST].extra = request
        return request

    decision = decide_retrain(wait_for_earlier_decisions())
    version >> detect >> decision
    request_retrain(decision)
