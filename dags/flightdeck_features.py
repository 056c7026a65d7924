"""
### flightdeck_features — build and validate features (on each bronze partition)

Triggered once per `bronze` partition. **wait_for_upstream** (a sensor in reschedule
mode: no worker slot held while it waits) waits until every bronze day the partition's
rolling windows read is committed, at most `timeouts.upstream_wait_hours`; past that it
lets the build go ahead without them. It then writes
`monitoring/feature_status/D.json` for the build about to run: complete, or degraded
with the missing days named (and a `features_degraded` alert); when a missing day is
ingested later, this partition is announced again and its rebuild clears the mark.
When the partition's last valid build read exactly the bronze commits there are now
(an out-of-order backfill announces a day once per earlier day it reads), it skips
the rest of the run: nothing to rebuild, nothing announced.
**build_features** joins each flight with the weather observed at its origin at or
before its scheduled departure (never after), the plane's attributes and calendar
features, and computes the label.
**validate_features** runs the Great Expectations suite on the partition and
fails the batch, naming every broken expectation, when the data breaks the
contract. Only a valid partition is marked built and announced as `features`, by
the same task (the event's extra says whether it is degraded, and which days it
went without).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, PartitionedAssetTimetable, PokeReturnValue, task

from flightdeck.data import feature_run
from flightdeck.ops.dagkit import BRONZE, CFG, DEFAULT_ARGS, FEATURES, START, run_limits, spark_job

PARTITION = "{{ dag_run.partition_key }}"
UPSTREAM_WAIT = dt.timedelta(hours=CFG.timeouts.upstream_wait_hours)

with DAG(
    dag_id="flightdeck_features",
    doc_md=__doc__,
    schedule=PartitionedAssetTimetable(assets=BRONZE),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **run_limits(wait_hours=CFG.timeouts.upstream_wait_hours),
    tags=["flightdeck", "data"],
):

    @task.sensor(
        poke_interval=CFG.arrival.poke_seconds, timeout=UPSTREAM_WAIT + dt.timedelta(hours=1), mode="reschedule"
    )
    def wait_for_upstream(*, dag_run=None, run_id=None) -> PokeReturnValue:
        """Wait (rescheduling) for the bronze days the windows read; past the deadline, go ahead degraded.
        Then mark the partition about to be built complete, or degraded naming the missing days (and
        alert); skip the rest when its last valid build read the same bronze commits (nothing changed)."""
        done, upstream = feature_run.poke_upstream(dag_run.partition_key, dag_run.start_date or dag_run.run_after)
        if not done:
            return PokeReturnValue(is_done=False)
        status = feature_run.record_feature_status(dag_run.partition_key, upstream, run_id)
        if status is None:
            from airflow.sdk.exceptions import AirflowSkipException  # not at parse time: slow to import

            raise AirflowSkipException("its last valid build read the same bronze commits: nothing to rebuild")
        return PokeReturnValue(is_done=True, xcom_value=status)

    def publish_features(context) -> str:
        """Once valid: mark the build valid and announce the features partition, degraded or not."""
        partition = context["dag_run"].partition_key
        status = context["ti"].xcom_pull(task_ids="wait_for_upstream")
        feature_run.mark_built(partition, context["run_id"])
        events = context["outlet_events"][FEATURES]
        events.add_partitions(partition)
        events.extra = {
            "partition": partition,
            "degraded": status["degraded"],
            "missing_days": sorted(status["missing"]),
        }
        return partition

    build = spark_job("build_features", "build_features", ["--partition", PARTITION, "--run-key", "{{ run_id }}"])
    validate = spark_job(
        "validate_features",
        "validate_features",
        ["--partition", PARTITION, "--run-key", "{{ run_id }}"],
        outlets=[FEATURES],
        announce=publish_features,
    )

    wait_for_upstream() >> build >> validate
